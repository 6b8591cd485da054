"""atheris: arbitrary bytes into the gossip decoder (peer.membership.codec.decode).

Invariants (targets.check_gossip_body): only GossipDecodeError is ever raised; an accepted message
re-encodes to one that decodes to the same value; a body over the limit is refused for its size.
Run: python -m tests.fuzz.fuzz_gossip_decode -max_total_time=60
"""

from __future__ import annotations

import atheris

# Only the peer code is instrumented: coverage of the checks in targets would only slow the search.
with atheris.instrument_imports(include=["peer"]):
    from tests.fuzz import targets

from tests.fuzz.harness import main


def test_one_input(data: bytes) -> None:
    targets.check_gossip_body(data)


if __name__ == "__main__":
    main("gossip_decode", test_one_input, targets.gossip_seeds())
