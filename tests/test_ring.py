"""The consistent-hash ring and placement rules: determinism, minimal movement, balance, liveness handling."""

from __future__ import annotations

import hashlib
import random
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peer.ring.hashring import HashRing, key_position
from peer.ring.placement import read_order, ring_members, write_targets

FEW = settings(max_examples=40, deadline=None)

node_ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
node_sets = st.sets(node_ids, min_size=1, max_size=12)
keys = st.text(st.characters(codec="utf-8"), max_size=40)
small_vnodes = st.integers(min_value=1, max_value=12)


def spec_position(text: str) -> int:
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:8], "big")


def spec_preference(nodes: set[str], vnodes: int, key: str) -> tuple[str, ...]:
    """The placement rule written out as plainly as possible, to check the fast tables against."""
    points = sorted((spec_position(f"{node}#{i}"), node) for node in nodes for i in range(vnodes))
    start = bisect_left([position for position, _ in points], spec_position(key))
    order: list[str] = []
    for step in range(len(points)):
        node = points[(start + step) % len(points)][1]
        if node not in order:
            order.append(node)
    return tuple(order)


def sample_keys(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [f"chunk-{rng.getrandbits(128):032x}" for _ in range(count)]


# --- HashRing ---------------------------------------------------------------------------------------


def test_key_position_is_first_eight_md5_bytes_big_endian() -> None:
    for key in ("", "a", "chunk-1", "ünïcode", "x" * 500):
        assert key_position(key) == spec_position(key)
        assert HashRing.build(["n1"]).key_position(key) == spec_position(key)


def test_placement_is_pinned_across_versions() -> None:
    # Every peer must place keys identically; a change here is a wire-incompatible change.
    ring = HashRing.build(["peer-a", "peer-b", "peer-c"])
    assert ring.digest == "c6cdf7382ace805e"
    assert ring.preference("chunk-1") == ("peer-a", "peer-c", "peer-b")


@FEW
@given(nodes=node_sets, vnodes=small_vnodes, key=keys, r=st.integers(min_value=0, max_value=14))
def test_owners_match_the_plain_rule(nodes: set[str], vnodes: int, key: str, r: int) -> None:
    ring = HashRing.build(nodes, vnodes=vnodes)
    expected = spec_preference(nodes, vnodes, key)
    assert ring.preference(key) == expected
    assert ring.owners(key, r) == expected[:r]
    assert ring.owners(key, r) == expected[:r]  # second call hits the cached table


@FEW
@given(nodes=node_sets, vnodes=small_vnodes, data=st.data())
def test_same_set_in_any_order_gives_identical_ring(
    nodes: set[str], vnodes: int, data: st.DataObject
) -> None:
    ordered = sorted(nodes)
    shuffled = data.draw(st.permutations(ordered))
    duplicated = shuffled + ordered[:2]
    a = HashRing.build(ordered, vnodes=vnodes)
    b = HashRing.build(shuffled, vnodes=vnodes)
    c = HashRing.build(iter(duplicated), vnodes=vnodes)
    assert a.digest == b.digest == c.digest
    assert a == b == c and hash(a) == hash(b)
    for key in data.draw(st.lists(keys, max_size=10)):
        assert a.owners(key, 3) == b.owners(key, 3) == c.owners(key, 3)
        assert a.preference(key) == b.preference(key)


@FEW
@given(a=st.sets(node_ids, max_size=8), b=st.sets(node_ids, max_size=8), vnodes=small_vnodes)
def test_different_sets_give_different_digests(a: set[str], b: set[str], vnodes: int) -> None:
    if a != b:
        assert HashRing.build(a, vnodes=vnodes).digest != HashRing.build(b, vnodes=vnodes).digest
        assert HashRing.build(a, vnodes=vnodes) != HashRing.build(b, vnodes=vnodes)


def test_digest_depends_on_vnodes_and_resists_separator_tricks() -> None:
    assert HashRing.build(["a", "b"], vnodes=10).digest != HashRing.build(["a", "b"], vnodes=11).digest
    assert HashRing.build(["a:b"]).digest != HashRing.build(["a", "b"]).digest
    assert HashRing.build(["1:a"]).digest != HashRing.build(["1", "a"]).digest


@FEW
@given(nodes=node_sets, vnodes=small_vnodes, key=keys, r=st.integers(min_value=0, max_value=14))
def test_owners_are_distinct_and_a_prefix_of_preference(
    nodes: set[str], vnodes: int, key: str, r: int
) -> None:
    ring = HashRing.build(nodes, vnodes=vnodes)
    owners = ring.owners(key, r)
    preference = ring.preference(key)
    assert len(owners) == len(set(owners)) == min(r, len(nodes))
    assert preference[: len(owners)] == owners
    assert sorted(preference) == sorted(nodes)


def test_lookups_on_a_large_ring_match_the_plain_rule() -> None:
    # 20 nodes take both lookup paths: cached tables for small r, the memoised walk for large r.
    nodes = {f"node-{i:02d}" for i in range(20)}
    ring = HashRing.build(nodes, vnodes=30)
    for key in sample_keys(200):
        expected = spec_preference(nodes, 30, key)
        assert ring.preference(key) == expected
        for r in (1, 3, 8, 9, 19, 20, 25):
            assert ring.owners(key, r) == expected[:r]


@FEW
@given(nodes=st.sets(node_ids, min_size=2, max_size=10), vnodes=small_vnodes, data=st.data())
def test_removing_a_node_keeps_everyone_elses_relative_order(
    nodes: set[str], vnodes: int, data: st.DataObject
) -> None:
    removed = data.draw(st.sampled_from(sorted(nodes)))
    before = HashRing.build(nodes, vnodes=vnodes)
    after = HashRing.build(nodes - {removed}, vnodes=vnodes)
    for key in data.draw(st.lists(keys, min_size=1, max_size=10)):
        survivors = tuple(n for n in before.preference(key) if n != removed)
        assert after.preference(key) == survivors
        assert after.owners(key, 3) == survivors[:3]


def test_removing_one_of_ten_moves_about_a_tenth_of_primaries() -> None:
    n = 10
    nodes = [f"node-{i}" for i in range(n)]
    before = HashRing.build(nodes)
    after = HashRing.build(nodes[:3] + nodes[4:])
    moved = 0
    for key in sample_keys(2000):
        old, new = before.owners(key, 1)[0], after.owners(key, 1)[0]
        if old != new:
            moved += 1
            assert old == "node-3"
        else:
            assert old != "node-3"
    assert 0.5 / n <= moved / 2000 <= 2 / n


def test_adding_a_node_only_moves_keys_to_it() -> None:
    nodes = [f"node-{i}" for i in range(10)]
    before = HashRing.build(nodes)
    after = HashRing.build([*nodes, "node-new"])
    moved = 0
    for key in sample_keys(2000):
        old, new = before.owners(key, 1)[0], after.owners(key, 1)[0]
        if old != new:
            moved += 1
            assert new == "node-new"
        assert tuple(x for x in after.preference(key) if x != "node-new") == before.preference(key)
    assert 0.5 / 11 <= moved / 2000 <= 2 / 11


def test_keys_spread_evenly_across_nodes() -> None:
    n = 10
    ring = HashRing.build([f"node-{i}" for i in range(n)], vnodes=150)
    counts = Counter(ring.owners(key, 1)[0] for key in sample_keys(20000))
    assert len(counts) == n
    for node, count in counts.items():
        assert 0.6 / n <= count / 20000 <= 1.4 / n, (node, count)


def test_single_vnode_ring() -> None:
    ring = HashRing.build(["a", "b", "c"], vnodes=1)
    assert ring.vnodes == 1 and len(ring) == 3
    seen = Counter(ring.owners(key, 1)[0] for key in sample_keys(300))
    assert set(seen) <= {"a", "b", "c"}
    for key in sample_keys(50):
        assert sorted(ring.owners(key, 3)) == ["a", "b", "c"]


def test_empty_ring() -> None:
    ring = HashRing.build([])
    assert len(ring) == 0 and ring.nodes == ()
    assert ring.owners("k", 3) == () and ring.owners("k", 0) == ()
    assert ring.preference("k") == ()
    assert ring.digest == HashRing.build(iter(())).digest != HashRing.build(["a"]).digest


def test_accessors_and_bad_arguments() -> None:
    ring = HashRing.build(["c", "a", "b"], vnodes=5)
    assert ring.nodes == ("a", "b", "c") and ring.vnodes == 5 and len(ring) == 3
    assert "a" in ring and "z" not in ring
    assert ring.owners("k", 0) == ()
    assert "nodes=3" in repr(ring) and ring.digest in repr(ring)
    with pytest.raises(ValueError):
        ring.owners("k", -1)
    with pytest.raises(ValueError):
        HashRing.build(["a"], vnodes=0)
    with pytest.raises(TypeError):
        HashRing.build("abc")


def test_ring_is_immutable() -> None:
    ring = HashRing.build(["a"])
    with pytest.raises(AttributeError):
        ring._vnodes = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del ring._nodes
    with pytest.raises(AttributeError):
        ring.extra = 1  # type: ignore[attr-defined]


# --- ring_members -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    node_id: str
    state: str
    state_since: float


class State(StrEnum):
    ALIVE = "alive"
    DEAD = "dead"


def test_ring_members_follows_state_and_dead_grace() -> None:
    members = [
        Member("alive", "alive", 0.0),
        Member("suspect", "suspect", 0.0),
        Member("dead-fresh", "dead", 95.0),
        Member("dead-edge", "dead", 90.0),
        Member("dead-old", "dead", 10.0),
        Member("left", "left", 99.0),
    ]
    assert ring_members(members, now=100.0, dead_grace_s=10.0) == ["alive", "dead-fresh", "suspect"]
    with_edge = ["alive", "dead-edge", "dead-fresh", "suspect"]
    assert ring_members(members, now=100.0, dead_grace_s=10.5) == with_edge
    assert ring_members(members, now=200.0, dead_grace_s=10.0) == ["alive", "suspect"]
    assert ring_members(members, now=100.0, dead_grace_s=0.0) == ["alive", "suspect"]


def test_ring_members_accepts_str_enums_dedupes_and_rejects_unknown_states() -> None:
    members = [Member("b", State.ALIVE, 0.0), Member("a", State.DEAD, 5.0), Member("b", "alive", 1.0)]
    assert ring_members(members, now=6.0, dead_grace_s=2.0) == ["a", "b"]
    assert ring_members([], now=0.0, dead_grace_s=1.0) == []
    with pytest.raises(ValueError, match="zombie"):
        ring_members([Member("x", "zombie", 0.0)], now=0.0, dead_grace_s=1.0)


# --- write_targets / read_order ---------------------------------------------------------------------


RING = HashRing.build([f"p{i}" for i in range(6)], vnodes=20)
KEY = "chunk-abc"
PREF = RING.preference(KEY)


def usable_except(*down: str) -> Callable[[str], bool]:
    return lambda node_id: node_id not in down


def counting(check: Callable[[str], bool], calls: Counter[str]) -> Callable[[str], bool]:
    def wrapped(node_id: str) -> bool:
        calls[node_id] += 1
        return check(node_id)

    return wrapped


def test_write_targets_are_the_owners_when_all_usable() -> None:
    assert write_targets(RING, KEY, 3, usable_except()) == (list(PREF[:3]), [])


def test_write_targets_hand_off_past_unusable_owners() -> None:
    calls: Counter[str] = Counter()
    targets, skipped = write_targets(RING, KEY, 3, counting(usable_except(PREF[0], PREF[2]), calls))
    assert targets == [PREF[1], PREF[3], PREF[4]]
    assert skipped == [PREF[0], PREF[2]]
    assert max(calls.values()) == 1 and PREF[5] not in calls


def test_write_targets_skip_unusable_handoff_candidates_too() -> None:
    targets, skipped = write_targets(RING, KEY, 2, usable_except(PREF[1], PREF[2]))
    assert targets == [PREF[0], PREF[3]] and skipped == [PREF[1]]


def test_write_targets_come_up_short_when_too_few_usable() -> None:
    targets, skipped = write_targets(RING, KEY, 3, usable_except(*PREF[1:5]))
    assert targets == [PREF[0], PREF[5]] and skipped == [PREF[1], PREF[2]]
    assert write_targets(RING, KEY, 3, lambda _: False) == ([], list(PREF[:3]))
    assert write_targets(HashRing.build([]), KEY, 3, usable_except()) == ([], [])
    small = HashRing.build(["only"])
    assert write_targets(small, KEY, 3, usable_except()) == (["only"], [])


def test_read_order_puts_recorded_owners_first_then_other_holders_then_the_rest() -> None:
    recorded = ["gone", PREF[4], PREF[1], PREF[0]]
    order = read_order(RING, KEY, 3, recorded, usable_except())
    assert order == [PREF[0], PREF[1], PREF[4], "gone", PREF[2], PREF[3], PREF[5]]


def test_read_order_moves_unusable_nodes_last_but_keeps_them() -> None:
    recorded = [PREF[4], PREF[1], PREF[0]]
    calls: Counter[str] = Counter()
    order = read_order(RING, KEY, 3, recorded, counting(usable_except(PREF[0], PREF[3]), calls))
    assert order == [PREF[1], PREF[4], PREF[2], PREF[5], PREF[0], PREF[3]]
    assert set(calls.values()) == {1}


def test_read_order_without_records_is_the_preference_list() -> None:
    assert read_order(RING, KEY, 3, [], usable_except()) == list(PREF)
    assert read_order(HashRing.build([]), KEY, 3, ["x"], usable_except()) == ["x"]
    with pytest.raises(ValueError):
        read_order(RING, KEY, -1, [], usable_except())


@FEW
@given(
    recorded=st.lists(st.sampled_from([*PREF, "gone-1", "gone-2"]), max_size=8),
    down=st.sets(st.sampled_from([*PREF, "gone-1"])),
    r=st.integers(min_value=0, max_value=7),
)
def test_read_order_properties(recorded: list[str], down: set[str], r: int) -> None:
    order = read_order(RING, KEY, r, recorded, usable_except(*down))
    assert len(order) == len(set(order))
    assert set(order) == set(PREF) | set(recorded)
    usable_flags = [node not in down for node in order]
    assert usable_flags == sorted(usable_flags, reverse=True)
    usable_order = [node for node in order if node not in down]
    recorded_owners = [n for n in PREF[:r] if n in recorded and n not in down]
    assert usable_order[: len(recorded_owners)] == recorded_owners
    other_recorded = {n for n in recorded if n not in down} - set(recorded_owners)
    rank = {node: i for i, node in enumerate(usable_order)}
    for holder in other_recorded:
        for node in usable_order:
            if node not in recorded:
                assert rank[holder] < rank[node]
