"""Version metadata: the MetadataStore contract and its backends (SQLite embedded, MongoDB shared)."""
