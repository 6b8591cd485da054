"""The gRPC edge: the public FileStore service, the internal PeerChunks service and its client."""
