"""Imported by the CLI before anything else imports grpc: keeps grpc's C core from writing to stderr.

grpc's core logs some events at INFO straight to the process's stderr, every failed TLS handshake among
them (grpc/grpc#38058), which would put a second line next to the CLI's one-line error. It reads
GRPC_VERBOSITY once, when grpc is first imported; so grpc is imported here at ERROR unless the user chose
a level, and the variable is removed again so that no child process inherits it.
"""

import os
import sys

if "grpc" not in sys.modules and "GRPC_VERBOSITY" not in os.environ:
    os.environ["GRPC_VERBOSITY"] = "ERROR"
    try:
        import grpc  # noqa: F401
    finally:
        del os.environ["GRPC_VERBOSITY"]
