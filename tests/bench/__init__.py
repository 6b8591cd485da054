"""`make bench`: throughput, concurrency, ring, memory and membership figures of a local dfs mesh.

Run `python -m tests.bench --help`. Every section starts its own peers on 127.0.0.1 under a temp
dir and tears them down (SIGKILL) when it ends, whether it passed or failed.
"""
