"""The fault-run checker (`tests/history.py`) on small synthetic histories: it passes a clean run and
catches each violation it claims to, so a green fault run means what it says.

Each test starts from one clean history of one name ("f") on a two-peer cluster and breaks exactly
one thing, then asserts that the matching counter (and only that one, where the fault is isolated)
moves and that the verdict fails.
"""

from __future__ import annotations

import dataclasses
import hashlib

from tests.history import Final, FinalRead, History, Op, Verdict, check

PEERS = (0, 1)
NAME = "f"


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


V1, V2, V3, OTHER = b"first", b"second!", b"third..", b"never uploaded"


class Builder:
    """Numbers ops in order and keeps their times explicit."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def upload(self, content: bytes, start: float, end: float, version: int | None, *, ok: bool = True,
               name: str = NAME, peer: int = 0) -> Op:
        op = Op(len(self.ops), "upload", client=0, peer=peer, name=name, start=start, end=end,
                outcome="ok" if ok else "error", error="" if ok else "ClusterUnavailable UNAVAILABLE",
                version=version if ok else None, sha256=sha(content), size=len(content))
        self.ops.append(op)
        return op

    def download(self, content: bytes | None, start: float, end: float, version: int | None, *,
                 asked: int | None = None, error: str = "", name: str = NAME, peer: int = 1) -> Op:
        ok = content is not None and not error
        op = Op(len(self.ops), "download", client=1, peer=peer, name=name, start=start, end=end,
                outcome="ok" if ok else "error", error=error, asked=asked, version=version if ok else None,
                sha256=sha(content) if content is not None else "", size=len(content) if content is not None else 0)
        self.ops.append(op)
        return op


def final_for(versions: dict[int, bytes], *, name: str = NAME, reads: dict[int, bytes] | None = None) -> Final:
    """Every peer lists `versions` and reads every one of them back (as `reads` says, where given)."""
    listing = {name: {n: (sha(c), len(c)) for n, c in versions.items()}}
    got = {**versions, **(reads or {})}
    return Final(
        listings={p: {k: dict(v) for k, v in listing.items()} for p in PEERS},
        reads=[FinalRead(p, name, n, True, sha(c), len(c)) for p in PEERS for n, c in sorted(got.items())],
    )


def clean() -> tuple[Builder, Final]:
    """Three sequential uploads, reads of the latest and of a given version, all consistent."""
    b = Builder()
    b.upload(V1, 0.0, 1.0, 1)
    b.download(V1, 1.5, 2.0, 1)
    b.upload(V2, 2.0, 3.0, 2, peer=1)
    b.download(V2, 3.5, 4.0, 2, asked=2, peer=0)
    b.upload(V3, 4.0, 5.0, 3)
    b.download(V3, 5.5, 6.0, 3)
    return b, final_for({1: V1, 2: V2, 3: V3})


COUNTERS = ("lost", "wrong_reads", "stale_reads", "order_violations", "duplicated", "skipped", "phantom",
            "listings_disagree")


def failures(verdict: Verdict) -> dict[str, int]:
    return {name: getattr(verdict, name) for name in COUNTERS if getattr(verdict, name)}


def test_a_clean_history_passes() -> None:
    b, final = clean()
    verdict = check(b.ops, final)
    assert verdict.ok, verdict.problems
    assert failures(verdict) == {}
    assert verdict.problems == []
    assert (verdict.acknowledged, verdict.downloads_ok, verdict.final_reads) == (3, 3, 6)
    assert verdict.committed_unacknowledged == 0


def test_concurrent_uploads_may_commit_in_either_order() -> None:
    """Overlapping uploads have no real-time order: either numbering is linearizable."""
    b = Builder()
    b.upload(V1, 0.0, 2.0, 2)
    b.upload(V2, 1.0, 3.0, 1)
    b.download(V1, 3.5, 4.0, 2)
    verdict = check(b.ops, final_for({1: V2, 2: V1}))
    assert verdict.ok, verdict.problems


def test_an_acknowledged_version_missing_from_the_listing_is_lost() -> None:
    b, _ = clean()
    final = final_for({1: V1, 2: V2})  # v3 was acknowledged, and is gone
    verdict = check(b.ops, final)
    assert not verdict.ok
    assert verdict.lost == 1
    assert any("#4 upload f" in p for p in verdict.problems), verdict.problems


def test_an_acknowledged_version_listed_with_other_bytes_is_lost() -> None:
    b, _ = clean()
    final = final_for({1: V1, 2: V2, 3: V3})
    for listing in final.listings.values():
        listing[NAME][3] = (sha(V3), len(V3) + 1)  # same hash, wrong size: not what was acknowledged
    verdict = check(b.ops, final)
    assert not verdict.ok
    assert verdict.lost == 1


def test_an_acknowledged_version_that_downloads_other_bytes_is_lost() -> None:
    b, _ = clean()
    final = final_for({1: V1, 2: V2, 3: V3})
    final.reads = [r if (r.peer, r.version) != (1, 2) else dataclasses.replace(r, sha256=sha(OTHER), size=len(OTHER))
                   for r in final.reads]
    verdict = check(b.ops, final)
    assert not verdict.ok
    assert failures(verdict) == {"lost": 1}


def test_an_acknowledged_version_that_fails_to_download_through_one_peer_is_lost() -> None:
    b, _ = clean()
    final = final_for({1: V1, 2: V2, 3: V3})
    final.reads = [r if (r.peer, r.version) != (0, 1) else FinalRead(0, NAME, 1, False, error="NotFoundError")
                   for r in final.reads]
    verdict = check(b.ops, final)
    assert failures(verdict) == {"lost": 1}


def test_an_acknowledged_version_not_read_through_some_peer_is_lost() -> None:
    b, _ = clean()
    final = final_for({1: V1, 2: V2, 3: V3})
    final.reads = [r for r in final.reads if (r.peer, r.version) != (1, 3)]
    verdict = check(b.ops, final)
    assert failures(verdict) == {"lost": 1}


def test_a_download_of_bytes_no_upload_sent_is_a_wrong_read() -> None:
    b, final = clean()
    b.download(OTHER, 6.5, 7.0, 3)  # reports v3, returns bytes nobody uploaded
    verdict = check(b.ops, final)
    assert not verdict.ok
    assert failures(verdict) == {"wrong_reads": 1}


def test_a_download_of_another_versions_bytes_is_a_wrong_read() -> None:
    b, final = clean()
    b.download(V1, 6.5, 7.0, 3)  # says v3, carries v1's bytes
    verdict = check(b.ops, final)
    assert failures(verdict) == {"wrong_reads": 1}


def test_a_download_reporting_a_version_that_does_not_exist_is_a_wrong_read() -> None:
    b, final = clean()
    b.download(V3, 6.5, 7.0, 4)
    verdict = check(b.ops, final)
    assert failures(verdict) == {"wrong_reads": 1}


def test_an_integrity_error_caught_by_the_sdk_is_a_wrong_read() -> None:
    b, final = clean()
    b.download(None, 6.5, 7.0, None, error="IntegrityError local sha256 mismatch")
    verdict = check(b.ops, final)
    assert failures(verdict) == {"wrong_reads": 1}


def test_two_acknowledgements_of_one_number_are_duplicated() -> None:
    b = Builder()
    b.upload(V1, 0.0, 2.0, 1)
    b.upload(V2, 1.0, 3.0, 1)  # concurrent, so no order violation: only the shared number is wrong
    verdict = check(b.ops, final_for({1: V2}))
    assert not verdict.ok
    assert verdict.duplicated == 1
    assert verdict.order_violations == 0


def test_a_missing_number_is_skipped() -> None:
    b = Builder()
    b.upload(V1, 0.0, 1.0, 1)
    b.upload(V2, 2.0, 3.0, 3)  # v2 never existed
    verdict = check(b.ops, final_for({1: V1, 3: V2}))
    assert not verdict.ok
    assert failures(verdict) == {"skipped": 1}
    assert any("[2]" in p for p in verdict.problems), verdict.problems


def test_numbers_not_starting_at_one_are_skipped() -> None:
    b = Builder()
    b.upload(V1, 0.0, 1.0, 3)
    verdict = check(b.ops, final_for({3: V1}))
    assert failures(verdict) == {"skipped": 2}


def test_a_read_of_the_latest_older_than_an_earlier_acknowledgement_is_stale() -> None:
    b, final = clean()
    b.download(V2, 6.5, 7.0, 2)  # v3 was acknowledged at 5.0, before this read began
    verdict = check(b.ops, final)
    assert not verdict.ok
    assert failures(verdict) == {"stale_reads": 1}


def test_a_read_concurrent_with_the_upload_may_return_the_older_version() -> None:
    """The control for the stale-read test: a read that began before the acknowledgement may see either."""
    b, final = clean()
    b.download(V2, 4.9, 5.5, 2)  # began before v3's acknowledgement at 5.0
    verdict = check(b.ops, final)
    assert verdict.ok, verdict.problems


def test_a_read_of_a_given_version_reporting_another_is_stale() -> None:
    b, final = clean()
    b.download(V3, 6.5, 7.0, 3, asked=2)
    verdict = check(b.ops, final)
    assert failures(verdict) == {"stale_reads": 1}


def test_not_found_after_an_acknowledgement_is_stale() -> None:
    b, final = clean()
    b.download(None, 1.5, 2.0, None, error="NotFoundError NOT_FOUND")  # v1 acknowledged at 1.0
    verdict = check(b.ops, final)
    assert failures(verdict) == {"stale_reads": 1}


def test_not_found_before_any_acknowledgement_is_allowed() -> None:
    b, final = clean()
    b.download(None, 0.5, 0.9, None, error="NotFoundError NOT_FOUND")
    b.download(None, 6.5, 7.0, None, asked=9, error="NotFoundError NOT_FOUND")  # v9 never acknowledged
    verdict = check(b.ops, final)
    assert verdict.ok, verdict.problems


def test_an_upload_begun_after_an_acknowledgement_getting_a_lower_number_violates_order() -> None:
    b = Builder()
    b.upload(V1, 0.0, 1.0, 2)
    b.upload(V2, 2.0, 3.0, 1)  # began after v2 was acknowledged, yet got v1
    verdict = check(b.ops, final_for({1: V2, 2: V1}))
    assert not verdict.ok
    assert failures(verdict) == {"order_violations": 1}


def test_an_upload_begun_after_an_acknowledgement_getting_the_same_number_violates_order() -> None:
    b = Builder()
    b.upload(V1, 0.0, 1.0, 1)
    b.upload(V2, 2.0, 3.0, 1)
    verdict = check(b.ops, final_for({1: V2}))
    assert not verdict.ok
    assert (verdict.order_violations, verdict.duplicated) == (1, 1)


def test_an_upload_begun_at_the_instant_of_an_acknowledgement_is_concurrent_with_it() -> None:
    b = Builder()
    b.upload(V1, 0.0, 1.0, 2)
    b.upload(V2, 1.0, 3.0, 1)
    verdict = check(b.ops, final_for({1: V2, 2: V1}))
    assert verdict.ok, verdict.problems


def test_a_listed_version_no_upload_sent_is_a_phantom() -> None:
    b, _ = clean()
    verdict = check(b.ops, final_for({1: V1, 2: V2, 3: V3, 4: OTHER}))
    assert not verdict.ok
    assert failures(verdict) == {"phantom": 1}


def test_bytes_uploaded_under_another_name_are_a_phantom_here() -> None:
    b, _ = clean()
    b.upload(OTHER, 6.0, 6.5, 1, name="g")
    final = final_for({1: V1, 2: V2, 3: V3, 4: OTHER})
    final_g = final_for({1: OTHER}, name="g")
    for peer in PEERS:
        final.listings[peer]["g"] = final_g.listings[peer]["g"]
    final.reads += final_g.reads
    verdict = check(b.ops, final)
    assert failures(verdict) == {"phantom": 1}


def test_peers_listing_different_versions_disagree() -> None:
    b, final = clean()
    final.listings[1] = {NAME: {1: (sha(V1), len(V1)), 2: (sha(V2), len(V2))}}
    verdict = check(b.ops, final)
    assert not verdict.ok
    assert verdict.listings_disagree == 1


def test_no_listing_at_all_fails() -> None:
    b, final = clean()
    final.listings = {}
    verdict = check(b.ops, final)
    assert not verdict.ok
    assert verdict.listings_disagree == 1


def test_an_upload_that_raised_but_committed_is_counted_not_failed() -> None:
    b, _ = clean()
    b.upload(OTHER, 6.0, 7.0, None, ok=False)  # the reply was lost, the write was not
    verdict = check(b.ops, final_for({1: V1, 2: V2, 3: V3, 4: OTHER}))
    assert verdict.ok, verdict.problems
    assert verdict.committed_unacknowledged == 1
    assert verdict.acknowledged == 3
    assert verdict.phantom == 0


def test_a_failed_attempt_retried_and_acknowledged_is_not_counted_unacknowledged() -> None:
    """The same bytes sent twice, the first call raising: the version they made is acknowledged."""
    b, final = clean()
    b.ops.insert(4, dataclasses.replace(b.ops[4], index=99, start=3.5, end=3.9, outcome="error",
                                        error="ClusterUnavailable UNAVAILABLE", version=None))
    verdict = check(b.ops, final)
    assert verdict.ok, verdict.problems
    assert verdict.committed_unacknowledged == 0


def test_an_upload_that_raised_and_did_not_commit_is_fine_too() -> None:
    b, final = clean()
    b.upload(OTHER, 6.0, 7.0, None, ok=False)
    verdict = check(b.ops, final)
    assert verdict.ok, verdict.problems
    assert verdict.committed_unacknowledged == 0


def test_unfinished_ops_are_ignored() -> None:
    b, final = clean()
    recorder = History()
    recorder.ops = list(b.ops)
    recorder.begin("download", 1, 0, NAME)  # still running when the history was judged
    recorder.begin("upload", 0, 1, NAME, sha256=sha(OTHER), size=len(OTHER))
    verdict = check(recorder.ops, final)
    assert verdict.ok, verdict.problems
    assert (verdict.acknowledged, verdict.downloads_ok) == (3, 3)


def test_the_description_names_every_count() -> None:
    b, _ = clean()
    verdict = check(b.ops, final_for({1: V1, 2: V2}))
    text = verdict.describe()
    assert "3 acknowledged" in text and "1 lost" in text
