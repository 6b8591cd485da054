"""dfs-peer: one process of the peer-to-peer storage mesh (every peer runs the same code)."""

__version__ = "0.1.0"
