"""Membership merge and timeout rules, driven with explicit `now` values (no clock, no loop)."""

from __future__ import annotations

from peer.membership.state import Entry, MemberEvent, MembershipView, MemberState

T0 = 100.0
SUSPECT_S = 3.0
DEAD_S = 6.0
FORGET_S = 60.0


def make_view(node_id: str = "me", incarnation: int = 1) -> MembershipView:
    return MembershipView(node_id, f"{node_id}:50051", f"{node_id}:7946", incarnation=incarnation, now=T0,
                          suspect_timeout_s=SUSPECT_S, dead_timeout_s=DEAD_S, forget_after_s=FORGET_S)


def entry(node_id: str = "b", incarnation: int = 1, heartbeat: int = 1, status: str = "alive",
          gossip_addr: str | None = None) -> Entry:
    return Entry(node_id, f"{node_id}:50051", gossip_addr or f"{node_id}:7946", incarnation, heartbeat,
                 status, 0, 0)


def state_of(view: MembershipView, node_id: str = "b") -> MemberState:
    member = view.get(node_id)
    assert member is not None
    return member.state


def test_unknown_alive_member_joins() -> None:
    view = make_view()
    assert view.merge([entry()], T0) == [MemberEvent("join", "b")]
    member = view.get("b")
    assert member is not None
    assert (member.state, member.incarnation, member.heartbeat) == (MemberState.ALIVE, 1, 1)
    assert member.last_seen == member.state_since == T0
    assert sorted(m.node_id for m in view.members()) == ["b", "me"]


def test_higher_incarnation_wins_even_with_lower_heartbeat() -> None:
    view = make_view()
    view.merge([entry(incarnation=1, heartbeat=50)], T0)
    events = view.merge([entry(incarnation=2, heartbeat=1, gossip_addr="b:9999")], T0 + 1)
    member = view.get("b")
    assert member is not None
    assert (member.incarnation, member.heartbeat, member.gossip_addr) == (2, 1, "b:9999")
    assert events == [MemberEvent("update", "b")]


def test_heartbeat_advance_refreshes_last_seen_without_an_event() -> None:
    view = make_view()
    view.merge([entry(heartbeat=1)], T0)
    assert view.merge([entry(heartbeat=2)], T0 + 2) == []
    member = view.get("b")
    assert member is not None
    assert (member.heartbeat, member.last_seen) == (2, T0 + 2)


def test_stale_or_equal_entry_is_ignored() -> None:
    view = make_view()
    view.merge([entry(incarnation=2, heartbeat=5)], T0)
    for stale in (entry(incarnation=2, heartbeat=5), entry(incarnation=2, heartbeat=4),
                  entry(incarnation=1, heartbeat=99, gossip_addr="old:1")):
        assert view.merge([stale], T0 + 2) == []
    member = view.get("b")
    assert member is not None
    assert (member.incarnation, member.heartbeat, member.gossip_addr) == (2, 5, "b:7946")
    assert member.last_seen == T0


def test_silent_member_becomes_suspect_then_dead() -> None:
    view = make_view()
    view.merge([entry()], T0)
    assert view.tick(T0 + SUSPECT_S - 0.01) == []
    assert view.tick(T0 + SUSPECT_S) == [MemberEvent("suspect", "b")]
    assert view.tick(T0 + SUSPECT_S + 1) == []
    assert view.tick(T0 + DEAD_S) == [MemberEvent("dead", "b")]
    member = view.get("b")
    assert member is not None
    assert (member.state, member.state_since) == (MemberState.DEAD, T0 + DEAD_S)


def test_long_silence_reports_both_transitions_in_one_tick() -> None:
    view = make_view()
    view.merge([entry()], T0)
    assert view.tick(T0 + DEAD_S + 10) == [MemberEvent("suspect", "b"), MemberEvent("dead", "b")]


def test_news_revives_suspect_and_dead_members() -> None:
    view = make_view()
    view.merge([entry(heartbeat=1)], T0)
    view.tick(T0 + SUSPECT_S)
    assert view.merge([entry(heartbeat=2)], T0 + 4) == [MemberEvent("alive", "b")]
    view.tick(T0 + 4 + DEAD_S)
    assert state_of(view) is MemberState.DEAD
    assert view.merge([entry(heartbeat=3)], T0 + 20) == [MemberEvent("alive", "b")]
    assert view.tick(T0 + 20 + SUSPECT_S - 0.01) == []


def test_left_beats_alive_at_the_same_incarnation() -> None:
    view = make_view()
    view.merge([entry(incarnation=3, heartbeat=10)], T0)
    events = view.merge([entry(incarnation=3, heartbeat=2, status="left")], T0 + 1)
    assert events == [MemberEvent("left", "b")]
    # A late alive echo of the same life, even with a higher heartbeat, does not undo the departure.
    assert view.merge([entry(incarnation=3, heartbeat=99)], T0 + 2) == []
    assert state_of(view) is MemberState.LEFT


def test_left_at_an_older_incarnation_is_ignored_and_a_newer_life_revives() -> None:
    view = make_view()
    view.merge([entry(incarnation=4, heartbeat=1)], T0)
    assert view.merge([entry(incarnation=3, heartbeat=9, status="left")], T0 + 1) == []
    assert state_of(view) is MemberState.ALIVE
    view.merge([entry(incarnation=5, heartbeat=1, status="left")], T0 + 2)
    assert view.merge([entry(incarnation=6, heartbeat=1)], T0 + 3) == [MemberEvent("alive", "b")]
    assert state_of(view) is MemberState.ALIVE


def test_left_news_about_an_unknown_member_is_not_stored() -> None:
    view = make_view()
    assert view.merge([entry(status="left")], T0) == []
    assert view.get("b") is None


def test_self_refutes_a_claim_that_it_left() -> None:
    view = make_view(incarnation=3)
    events = view.merge([entry("me", incarnation=3, heartbeat=0, status="left")], T0)
    assert events == []
    assert view.local.state is MemberState.ALIVE
    assert view.local.incarnation == 4
    # Every peer now prefers our own record over the rumour.
    assert ("me", 4, "alive") in [(e.node_id, e.incarnation, e.status) for e in view.snapshot_entries()]


def test_self_refutes_a_newer_record_from_a_previous_life() -> None:
    view = make_view(incarnation=2)
    view.merge([entry("me", incarnation=2, heartbeat=500)], T0)
    assert view.local.incarnation == 3


def test_self_ignores_older_news_about_itself() -> None:
    view = make_view(incarnation=5)
    view.local_heartbeat()
    view.local_heartbeat()
    view.merge([entry("me", incarnation=4, heartbeat=99, status="left")], T0)
    view.merge([entry("me", incarnation=5, heartbeat=2)], T0)
    assert view.local.incarnation == 5
    assert view.local.state is MemberState.ALIVE


def test_leave_bumps_incarnation_and_is_gossiped_as_left() -> None:
    view = make_view(incarnation=2)
    view.local_heartbeat()
    view.leave()
    assert (view.local.state, view.local.incarnation, view.local.heartbeat) == (MemberState.LEFT, 3, 1)
    # Once we left, no rumour makes us refute: the departure stands.
    view.merge([entry("me", incarnation=9)], T0)
    assert view.local.incarnation == 3


def test_snapshot_never_carries_local_judgements() -> None:
    view = make_view()
    view.merge([entry("s"), entry("d"), entry("l")], T0)
    view.merge([entry("l", incarnation=2, status="left")], T0)
    view.merge([entry("s", heartbeat=2)], T0 + DEAD_S - SUSPECT_S)
    view.tick(T0 + DEAD_S)
    assert {m.node_id: m.state for m in view.members()} == {
        "me": MemberState.ALIVE, "s": MemberState.SUSPECT, "d": MemberState.DEAD, "l": MemberState.LEFT}
    snapshot = {e.node_id: e.status for e in view.snapshot_entries()}
    assert snapshot == {"me": "alive", "s": "alive", "l": "left"}


def test_local_heartbeat_and_stats_travel_in_the_snapshot() -> None:
    view = make_view()
    view.local_heartbeat()
    view.local_heartbeat()
    view.set_local_stats(7, 7000)
    view.set_local_addrs("h:1", "h:2")
    (mine,) = view.snapshot_entries()
    assert mine == Entry("me", "h:1", "h:2", 1, 2, "alive", 7, 7000)


def test_dead_and_left_members_are_forgotten_after_forget_after_s() -> None:
    view = make_view()
    view.merge([entry("d"), entry("l")], T0)
    view.merge([entry("l", incarnation=2, status="left")], T0)
    view.tick(T0 + DEAD_S)
    view.tick(T0 + FORGET_S - 0.01)
    assert {m.node_id for m in view.members()} == {"me", "d", "l"}
    view.tick(T0 + DEAD_S + FORGET_S)
    assert {m.node_id for m in view.members()} == {"me"}


def test_members_returns_copies() -> None:
    view = make_view()
    view.merge([entry()], T0)
    for m in view.members():
        m.state = MemberState.DEAD
    assert state_of(view) is MemberState.ALIVE


def test_a_peer_restarted_in_another_zone_is_adopted_with_its_new_incarnation() -> None:
    view = make_view()
    view.merge([entry(incarnation=1, heartbeat=9)._replace(zone="a")], T0)
    member = view.get("b")
    assert member is not None and member.zone == "a"
    restarted = entry(incarnation=2, heartbeat=1)._replace(zone="c")
    assert view.merge([restarted], T0 + 1) == [MemberEvent("update", "b")]  # the ring rebuilds on it
    member = view.get("b")
    assert member is not None and (member.zone, member.incarnation) == ("c", 2)
    # Late news of the previous life cannot bring the old zone back.
    assert view.merge([entry(incarnation=1, heartbeat=50)._replace(zone="a")], T0 + 2) == []
    assert view.get("b").zone == "c"  # type: ignore[union-attr]
    assert next(e for e in view.snapshot_entries() if e.node_id == "b").zone == "c"  # and passes it on


def test_our_own_zone_is_in_what_we_gossip() -> None:
    view = MembershipView("me", "h:1", "h:2", incarnation=1, now=T0, suspect_timeout_s=SUSPECT_S,
                          dead_timeout_s=DEAD_S, zone="rack-7")
    (mine,) = view.snapshot_entries()
    assert mine.zone == "rack-7" and view.local.zone == "rack-7"
