"""Who may talk to a peer: cluster certificates, peer message signatures, client tokens and roles, S3 access keys."""
