"""The allocator settings peers (`peer.memory.tune_allocator`) and `dfs` (`client.tune_allocator`) apply:
freed chunk-sized buffers stay in the heap for the next, instead of being given back to the OS and
page-faulted in again (what made a transfer's kernel time per MiB several times the copy's).

Each case runs in a fresh interpreter, since the settings are process-wide: it frees and re-allocates
eight 1 MiB buffers per round, as a peer or a downloading client does, and counts the minor page
faults of the later rounds (getrusage). glibc only; elsewhere the functions say they did nothing.
"""

from __future__ import annotations

import ctypes.util
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or not ctypes.util.find_library("c"), reason="the settings are glibc's"
)

ROUNDS = """
import resource, sys
{tune}
def round_():
    held = [bytearray(1 << 20) for _ in range(8)]  # written (zeroed) in full, as received data is
    del held
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(tune: str) -> int:
    out = subprocess.run([sys.executable, "-c", ROUNDS.format(tune=tune)], capture_output=True, text=True,
                         check=True, timeout=60)
    return int(out.stdout.strip())


@pytest.mark.parametrize("tune", [
    "from client import tune_allocator; assert tune_allocator()",
    "from peer.memory import tune_allocator; assert tune_allocator()",
], ids=["client", "peer"])
def test_freed_buffers_are_reused_without_page_faults(tune: str) -> None:
    untuned, tuned = _faults("pass"), _faults(tune)
    # 20 rounds of 8 MiB is 40,960 pages: given back and faulted in again, most of them fault.
    assert untuned > 20_000, f"glibc kept the buffers even untuned ({untuned} faults): the case shows nothing"
    assert tuned < 1_000, f"{tuned} page faults in 20 rounds of re-used buffers (untuned: {untuned})"
