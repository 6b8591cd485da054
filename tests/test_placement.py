"""Redundancy policies and the Placement object: spelling, owners per policy, write plans around dead
owners, read order, and a live ring versus a pinned one."""

from __future__ import annotations

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
     "rep:10000", "rep:٣", "ec:4+2", "ec:", "2", "replicas:2"],
)  # fmt: skip
def test_invalid_policy_strings_are_refused_with_the_text_and_the_expected_form(text: str) -> None:
    with pytest.raises(InvalidPolicy) as caught:
        Policy.parse(text)
    assert isinstance(caught.value, InvalidRequest)  # reaches a client as INVALID_ARGUMENT
    assert repr(text) in str(caught.value) and "rep:R" in str(caught.value)
    assert caught.value.text == text


def test_erasure_coding_is_named_as_unsupported_rather_than_unknown() -> None:
    with pytest.raises(InvalidPolicy, match="erasure coding is not supported"):
        Policy.parse("ec:4+2")


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
    assert plan.targets == (PREF[1], PREF[2])
    assert plan.fallbacks == PREF[3:]


def test_a_dead_peer_is_neither_a_target_nor_a_fallback() -> None:
    plan = placement(PREF[1], PREF[3]).write_plan(KEY, Policy.replication(3))
    assert plan.skipped == (PREF[1],)
    assert plan.targets == (PREF[0], PREF[2], PREF[4])
    assert plan.fallbacks == (PREF[5],)


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
    assert (list(plan.targets), list(plan.skipped)) == (targets, skipped)
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
