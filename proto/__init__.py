"""Protocol buffers of the dfs mesh: `dfs.proto` and the modules generated from it (`make proto`)."""
