"""Moving file bytes: cutting uploads into chunks, replicating them, and reassembling downloads."""
