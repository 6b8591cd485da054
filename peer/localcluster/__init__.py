"""`dfs-peer cluster …`: N local peers on 127.0.0.1 that run like a service, for development and demos.

`ports` fixes every listener's port from one base port; `state` keeps what was started in
DIR/cluster.json so any later command (and `cluster down` after the starting command was killed)
finds the peers; `procs` starts, watches and stops one `dfs-peer serve` process; `cluster` composes
them into up, down, status, stop and start. `dfscli` talks to the peers through the `dfs` command
(peer code never imports the client package) for the ring check and the `--demo` of `demo`.
"""
