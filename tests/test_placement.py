"""Redundancy policies and the Placement object: spelling, owners per policy, write plans around dead
owners, read order, a live ring versus a pinned one, and zones (distinct zones first, evenly, the same
on every peer, exactly the old order without zones, and moving only what a change requires)."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peer.errors import InsufficientReplicas, InvalidRequest
from peer.ring.hashring import HashRing
from peer.ring.placement import Placement, read_order, write_targets
from peer.ring.policy import InvalidPolicy, Policy, PolicyKind

NODES = [f"p{i}" for i in range(6)]
RING = HashRing.build(NODES, vnodes=20)
KEY = "chunk-abc"
PREF = RING.preference(KEY)
REP2 = Policy.replication(2)


def usable_except(*down: str) -> Callable[[str], bool]:
    return lambda node_id: node_id not in down


def placement(*down: str, policy: Policy = REP2) -> Placement:
    return Placement(RING, usable_except(*down), policy)


# --- Policy -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("copies", [1, 2, 3, 10, 9999])
def test_replication_parses_and_formats_to_the_same_spelling(copies: int) -> None:
    text = f"rep:{copies}"
    policy = Policy.parse(text)
    assert policy == Policy.replication(copies)
    assert str(policy) == text
    assert (policy.kind, policy.data, policy.parity, policy.width) == (PolicyKind.REPLICATION, 1, copies - 1, copies)


@pytest.mark.parametrize(
    "text",
    ["", "rep", "rep:", "rep:0", "rep:-1", "rep:02", "rep:+2", "REP:2", " rep:2", "rep:2 ", "rep:1.5", "rep:2+1",
     "rep:10000", "rep:٣", "ec:", "ec:4", "ec:1+1", "ec:17+1", "ec:4+0", "ec:4+9", "ec:04+2", "ec:4+02",
     "EC:4+2", "ec:4+2 ", "ec:4-2", "ec:٤+2", "2", "replicas:2"],
)  # fmt: skip
def test_invalid_policy_strings_are_refused_with_the_text_and_the_expected_form(text: str) -> None:
    with pytest.raises(InvalidPolicy) as caught:
        Policy.parse(text)
    assert isinstance(caught.value, InvalidRequest)  # reaches a client as INVALID_ARGUMENT
    assert repr(text) in str(caught.value) and "rep:R" in str(caught.value) and "ec:K+M" in str(caught.value)
    assert caught.value.text == text


@pytest.mark.parametrize(("data", "parity"), [(2, 1), (4, 2), (10, 4), (16, 8), (3, 8)])
def test_erasure_coding_parses_and_formats_to_the_same_spelling(data: int, parity: int) -> None:
    text = f"ec:{data}+{parity}"
    policy = Policy.parse(text)
    assert policy == Policy.erasure(data, parity)
    assert str(policy) == text
    assert (policy.kind, policy.data, policy.parity, policy.width) == (PolicyKind.ERASURE, data, parity, data + parity)
    assert policy.erasure_coded and not Policy.replication(2).erasure_coded


@pytest.mark.parametrize("copies", [0, -3])
def test_replication_needs_at_least_one_copy(copies: int) -> None:
    with pytest.raises(InvalidPolicy):
        Policy.replication(copies)


def test_a_replication_policy_is_one_data_piece() -> None:
    with pytest.raises(InvalidPolicy):
        Policy(PolicyKind.REPLICATION, 2, 1)


# --- owners -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("copies", [1, 2, 3])
def test_owners_are_the_first_width_peers_clockwise(copies: int) -> None:
    policy = Policy.replication(copies)
    assert placement(policy=policy).owners(KEY) == PREF[:copies]
    assert placement().owners(KEY, policy) == PREF[:copies]


def test_owners_on_a_ring_smaller_than_the_width_are_every_peer() -> None:
    small = Placement(HashRing.build(["only", "other"]), usable_except(), Policy.replication(3))
    assert sorted(small.owners(KEY)) == ["only", "other"]


def test_a_live_ring_is_read_on_every_question_and_a_pinned_one_never() -> None:
    rings = [RING]
    live = Placement(lambda: rings[0], usable_except(), REP2)
    pinned = live.pinned()
    rings[0] = HashRing.build(NODES[:2], vnodes=20)
    assert set(live.owners(KEY)) == set(NODES[:2]) and live.ring is rings[0]
    assert pinned.owners(KEY) == PREF[:2] and pinned.ring is RING


# --- write plan -------------------------------------------------------------------------------------


def test_all_owners_usable_the_plan_is_the_owners_then_the_rest_in_ring_order() -> None:
    plan = placement().write_plan(KEY)
    assert plan.targets == PREF[:2] and plan.fallbacks == PREF[2:] and plan.skipped == ()
    assert plan.policy == REP2 and plan.candidates == PREF


def test_a_dead_owner_is_skipped_and_the_next_usable_peer_stands_in() -> None:
    plan = placement(PREF[0]).write_plan(KEY)
    assert plan.skipped == (PREF[0],)
    assert plan.targets == (PREF[2], PREF[1])  # the stand-in takes the dead owner's place
    assert plan.fallbacks == PREF[3:]


def test_a_dead_peer_is_neither_a_target_nor_a_fallback() -> None:
    plan = placement(PREF[1], PREF[3]).write_plan(KEY, Policy.replication(3))
    assert plan.skipped == (PREF[1],)
    assert plan.targets == (PREF[0], PREF[4], PREF[2])
    assert plan.fallbacks == (PREF[5],)


def test_targets_are_positional_so_fragment_i_goes_to_owner_i_or_its_stand_in() -> None:
    policy = Policy.erasure(2, 2)
    owners = placement(policy=policy).owners(KEY, policy)
    assert placement().write_plan(KEY, policy).targets == owners
    plan = placement(owners[1], owners[3]).write_plan(KEY, policy)
    stand_ins = [n for n in PREF if n not in owners]
    assert plan.targets == (owners[0], stand_ins[0], owners[2], stand_ins[1])
    assert plan.skipped == (owners[1], owners[3])


def test_too_few_usable_peers_give_a_short_plan() -> None:
    plan = placement(*PREF[1:]).write_plan(KEY, Policy.replication(3))
    assert plan.targets == (PREF[0],) and plan.fallbacks == () and plan.skipped == PREF[1:3]


def test_liveness_is_asked_once_per_peer_per_plan() -> None:
    asked: list[str] = []

    def is_usable(node_id: str) -> bool:
        asked.append(node_id)
        return node_id != PREF[0]

    Placement(RING, is_usable, REP2).write_plan(KEY)
    assert sorted(asked) == sorted(NODES)


@settings(max_examples=60, deadline=None)
@given(down=st.sets(st.sampled_from(NODES)), copies=st.integers(min_value=1, max_value=7))
def test_targets_and_skipped_are_those_of_write_targets(down: set[str], copies: int) -> None:
    plan = placement(*down).write_plan(KEY, Policy.replication(copies))
    targets, skipped = write_targets(RING, KEY, copies, usable_except(*down))
    assert (sorted(plan.targets), list(plan.skipped)) == (sorted(targets), skipped)  # targets are positional
    assert set(plan.fallbacks) == set(NODES) - down - set(plan.targets)


def test_require_writable_counts_usable_peers_against_the_width() -> None:
    assert placement(*NODES[:4]).require_writable() == REP2
    with pytest.raises(InsufficientReplicas) as caught:
        placement(*NODES[:5]).require_writable()
    assert (caught.value.required, caught.value.available) == (2, 1)
    with pytest.raises(InsufficientReplicas):
        placement().require_writable(Policy.replication(7))


# --- read order and recorded policies -----------------------------------------------------------------


def test_read_order_puts_recorded_owners_first_under_the_policy() -> None:
    recorded = [PREF[2], PREF[0], "gone"]
    assert placement().read_order(KEY, recorded) == [PREF[0], PREF[2], "gone", PREF[1], *PREF[3:]]
    # Under rep:3 PREF[2] is an owner too, so both recorded owners come first in ring order.
    rep3 = Policy.replication(3)
    assert placement().read_order(KEY, recorded, rep3) == read_order(RING, KEY, 3, recorded, usable_except())


def test_read_order_lists_unusable_peers_last() -> None:
    order = placement(PREF[0]).read_order(KEY, [PREF[0], PREF[1]])
    assert order[0] == PREF[1] and order[-1] == PREF[0]


def test_a_record_without_a_policy_reads_as_the_clusters() -> None:
    assert placement(policy=Policy.replication(3)).policy_of("") == Policy.replication(3)
    assert placement().policy_of("rep:3") == Policy.replication(3)
    with pytest.raises(InvalidPolicy):
        placement().policy_of("rep:x")


# --- zones ------------------------------------------------------------------------------------------

ZONE_NAMES = ["", "a", "b", "c", "d"]
SAMPLE_KEYS = [f"chunk-{i}" for i in range(300)]


@st.composite
def zoned_members(draw: st.DrawFn, min_size: int = 1) -> dict[str, str]:
    """Node id -> zone for a cluster of 1..10 peers; "" is the unnamed zone, which counts as one too."""
    names = draw(st.lists(st.sampled_from(ZONE_NAMES), min_size=min_size, max_size=10))
    return {f"n{i}": zone for i, zone in enumerate(names)}


def zoned_ring(zones: dict[str, str], vnodes: int = 8) -> HashRing:
    return HashRing.build(zones, vnodes, zones)


def survives_losing_any_zone(owners: tuple[str, ...], zones: dict[str, str], policy: Policy) -> bool:
    """Whether the pieces outside every single zone are still enough to read the chunk."""
    held = Counter(zones[o] for o in owners)
    return all(len(owners) - held[zone] >= policy.data for zone in set(zones.values()))


@settings(max_examples=200, deadline=None)
@given(zoned_members(), st.text(min_size=1, max_size=16), st.integers(min_value=1, max_value=10))
def test_pieces_go_to_as_many_zones_as_exist_then_to_distinct_peers_as_evenly_as_sizes_allow(
    zones: dict[str, str], key: str, width: int
) -> None:
    owners = Placement(zoned_ring(zones), usable_except(), Policy.replication(width)).owners(key)
    assert len(owners) == len(set(owners)) == min(width, len(zones))
    sizes = Counter(zones.values())
    held = Counter(zones[o] for o in owners)
    assert len(held) == min(len(owners), len(sizes))  # distinct zones first
    # Even: no zone holds two more pieces than a zone that still had a peer to spare.
    assert all(held[z] <= held[y] + 1 for z in sizes for y in sizes if held[y] < sizes[y])
    cap = math.ceil(len(owners) / len(sizes))
    if all(size >= cap for size in sizes.values()):
        assert max(held.values()) <= cap


@settings(max_examples=100, deadline=None)
@given(zoned_members(), st.text(min_size=1, max_size=16), st.randoms(use_true_random=False),
       st.sampled_from([Policy.replication(2), Policy.replication(3), Policy.erasure(2, 1)]))
def test_every_peer_places_alike_whatever_order_it_learned_the_members_in(
    zones: dict[str, str], key: str, rnd: random.Random, policy: Policy
) -> None:
    ids = list(zones)
    rnd.shuffle(ids)
    here, there = zoned_ring(zones), HashRing.build(ids, 8, {node_id: zones[node_id] for node_id in ids})
    assert here == there and here.digest == there.digest
    down = usable_except(ids[0])
    ours, theirs = Placement(here, down, policy), Placement(there, down, policy)
    assert ours.owners(key) == theirs.owners(key)
    assert ours.write_plan(key) == theirs.write_plan(key)
    assert ours.read_order(key, ids[-1:]) == theirs.read_order(key, ids[-1:])


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=9), st.sampled_from(["", "a"]), st.text(min_size=1, max_size=16),
       st.sets(st.integers(min_value=0, max_value=8)))
def test_one_zone_places_exactly_as_a_ring_without_zones(n: int, zone: str, key: str, down: set[int]) -> None:
    """Peers that set no zone, or all the same one, keep today's placement: no data moves on upgrade."""
    ids = [f"n{i}" for i in range(n)]
    plain, one = HashRing.build(ids, 8), HashRing.build(ids, 8, dict.fromkeys(ids, zone))
    assert one.spread(key) == plain.preference(key) and not one.zoned
    is_usable = usable_except(*(f"n{i}" for i in down))
    for width in range(1, 5):
        policy = Policy.replication(width)
        assert Placement(one, is_usable, policy).owners(key) == plain.owners(key, width)
        assert Placement(one, is_usable, policy).write_plan(key) == Placement(plain, is_usable, policy).write_plan(key)
        assert write_targets(one, key, width, is_usable) == write_targets(plain, key, width, is_usable)
    assert Placement(one, is_usable, REP2).read_order(key, ids[:1]) == read_order(plain, key, 2, ids[:1], is_usable)


def test_a_ring_without_zones_keeps_the_digest_it_always_had() -> None:
    """Peers compare digests before repairing: an upgraded peer must agree with one not yet upgraded."""
    assert HashRing.build(["a", "b", "c"]).digest == "86b7201f6079bdc7"
    assert HashRing.build(["a", "b", "c"], zones={"a": "", "z": "elsewhere"}).digest == "86b7201f6079bdc7"


def test_the_digest_covers_the_zones_so_peers_that_disagree_on_them_do_not_repair_together() -> None:
    zones = {"a": "x", "b": "x", "c": "y"}
    ring = HashRing.build(zones, zones=zones)
    assert ring.digest != HashRing.build(zones).digest
    assert ring.digest != HashRing.build(zones, zones={**zones, "c": "x"}).digest
    assert ring.digest != HashRing.build(zones, zones={**zones, "c": "z"}).digest
    assert ring.digest == HashRing.build(zones, zones={**zones, "gone": "q"}).digest  # off-ring zones ignored


@settings(max_examples=60, deadline=None)
@given(zoned_members(min_size=2), st.data(), st.integers(min_value=1, max_value=5))
def test_a_peer_changing_zone_moves_only_keys_it_is_placed_for(
    zones: dict[str, str], data: st.DataObject, width: int
) -> None:
    mover = data.draw(st.sampled_from(sorted(zones)))
    before = zoned_ring(zones)
    after = zoned_ring({**zones, mover: data.draw(st.sampled_from(ZONE_NAMES))})
    for key in SAMPLE_KEYS[:100]:
        old, new = before.spread_owners(key, width), after.spread_owners(key, width)
        assert set(old) == set(new) or mover in old or mover in new, key


@settings(max_examples=60, deadline=None)
@given(zoned_members(), st.sampled_from(ZONE_NAMES), st.integers(min_value=1, max_value=5))
def test_a_peer_or_zone_added_or_removed_moves_only_keys_the_newcomer_owns(
    zones: dict[str, str], zone: str, width: int
) -> None:
    """Read forwards a join (of a peer, possibly in a zone of its own), backwards a departure."""
    before, after = zoned_ring(zones), zoned_ring({**zones, "new": zone})
    for key in SAMPLE_KEYS[:100]:
        old, new = before.spread_owners(key, width), after.spread_owners(key, width)
        assert set(old) == set(new) or "new" in new, key


def test_moving_one_peer_of_six_to_another_zone_moves_a_bounded_share_of_the_keys() -> None:
    zones = {"p0": "a", "p1": "a", "p2": "b", "p3": "b", "p4": "c", "p5": "c"}
    before, after = HashRing.build(zones, zones=zones), HashRing.build(zones, zones={**zones, "p5": "a"})
    moved = [k for k in SAMPLE_KEYS if set(before.spread_owners(k, 2)) != set(after.spread_owners(k, 2))]
    placed = [k for k in SAMPLE_KEYS if "p5" in before.spread_owners(k, 2) + after.spread_owners(k, 2)]
    assert set(moved) <= set(placed) and len(placed) < 0.5 * len(SAMPLE_KEYS)


@pytest.mark.parametrize(
    ("policy", "zone_sizes", "survives"),
    [
        (Policy.replication(2), (2, 2), True),
        (Policy.replication(3), (2, 2), True),
        (Policy.replication(3), (1, 3), True),
        (Policy.replication(3), (1, 1, 1), True),
        (Policy.replication(2), (4,), False),  # one zone: no zone can be lost
        (Policy.erasure(4, 2), (2, 3, 3), True),
        (Policy.erasure(4, 2), (2, 2, 2), True),  # 2 fragments per zone, 4 left after any zone
        (Policy.erasure(4, 2), (3, 3), False),  # 3 per zone: 3 left < 4
        (Policy.erasure(4, 2), (4, 1, 1), False),  # the big zone must hold 4
    ],
)
def test_what_each_policy_survives_is_a_property_of_placement_alone(
    policy: Policy, zone_sizes: tuple[int, ...], survives: bool
) -> None:
    """The table in docs/ARCHITECTURE.md ("Zones"): every chunk, not just most of them."""
    zones = {f"{'abc'[z]}{i}": "abc"[z] for z, size in enumerate(zone_sizes) for i in range(size)}
    placement = Placement(HashRing.build(zones, vnodes=50, zones=zones), usable_except(), policy)
    outcomes = {survives_losing_any_zone(placement.owners(k), zones, policy) for k in SAMPLE_KEYS}
    assert outcomes == {survives}


TWO_ZONES = {"a0": "a", "a1": "a", "b0": "b", "b1": "b"}
TWO_ZONE_RING = HashRing.build(TWO_ZONES, vnodes=20, zones=TWO_ZONES)


def test_the_stand_in_for_a_down_owner_comes_from_the_zone_that_lost_it() -> None:
    for key in SAMPLE_KEYS[:50]:
        owners = Placement(TWO_ZONE_RING, usable_except(), REP2).owners(key)
        plan = Placement(TWO_ZONE_RING, usable_except(owners[1]), REP2).write_plan(key)
        assert plan.skipped == (owners[1],)
        assert {TWO_ZONES[t] for t in plan.targets} == {"a", "b"}, (owners, plan)
        assert plan.targets[0] == owners[0]  # positional: the stand-in takes the down owner's place
        assert write_targets(TWO_ZONE_RING, key, 2, usable_except(owners[1]))[0] == list(plan.targets)


def test_with_a_whole_zone_down_writes_still_reach_the_width_in_the_zones_left() -> None:
    down = usable_except("b0", "b1")
    for key in SAMPLE_KEYS[:50]:
        plan = Placement(TWO_ZONE_RING, down, REP2).write_plan(key)
        assert sorted(plan.targets) == ["a0", "a1"] and plan.fallbacks == ()
        assert [TWO_ZONES[s] for s in plan.skipped] == ["b"]


def test_reads_try_the_recorded_owners_first_then_the_zone_spread_order() -> None:
    for key in SAMPLE_KEYS[:50]:
        spread_order = TWO_ZONE_RING.spread(key)
        order = Placement(TWO_ZONE_RING, usable_except(), REP2).read_order(key, [spread_order[1]])
        assert order == [spread_order[1], spread_order[0], *spread_order[2:]]
        assert {TWO_ZONES[n] for n in spread_order[:2]} == {"a", "b"}


def test_a_pinned_placement_keeps_the_zones_of_its_moment() -> None:
    rings = [TWO_ZONE_RING]
    live = Placement(lambda: rings[0], usable_except(), REP2)
    pinned = live.pinned()
    rings[0] = HashRing.build(TWO_ZONES, vnodes=20, zones={**TWO_ZONES, "a1": "b", "b1": "a"})
    assert dict(pinned.ring.zones) == TWO_ZONES and pinned.ring.digest == TWO_ZONE_RING.digest != live.ring.digest
    assert all(pinned.owners(k) == TWO_ZONE_RING.spread_owners(k, 2) for k in SAMPLE_KEYS[:50])
    assert any(live.owners(k) != pinned.owners(k) for k in SAMPLE_KEYS[:50])
