"""Local health (Lifeguard's awareness): a peer's own stalls are not taken for the others' silence.

`LocalHealth` measures how late each gossip round starts on the event loop's clock; the lateness is
excused from every member's silence (`MembershipView.excuse`), and late rounds raise a score that
multiplies the suspect and dead timeouts (`MembershipView.tick(now, scale)`). Everything here is
pure: loop times and `now` are passed in.
"""

from __future__ import annotations

import pytest

from peer.membership.awareness import MAX_SCORE, RECOVER_ROUNDS, LocalHealth
from peer.membership.state import Entry, MemberEvent, MembershipView, MemberState

INTERVAL = 0.5
T0 = 100.0
SUSPECT_S = 3.0
DEAD_S = 6.0


def make_view() -> MembershipView:
    return MembershipView("me", "me:50051", "me:7946", incarnation=1, now=T0,
                          suspect_timeout_s=SUSPECT_S, dead_timeout_s=DEAD_S, forget_after_s=3600.0)


def entry(node_id: str, heartbeat: int = 1) -> Entry:
    return Entry(node_id, f"{node_id}:50051", f"{node_id}:7946", 1, heartbeat, "alive", 0, 0)


def state_of(view: MembershipView, node_id: str) -> MemberState:
    member = view.get(node_id)
    assert member is not None
    return member.state


def punctual_rounds(health: LocalHealth, start: float, count: int) -> float:
    """Runs `count` rounds exactly one interval apart after `start`; returns the last round's time."""
    t = start
    for _ in range(count):
        t += INTERVAL
        assert health.round_started(t) == 0.0
    return t


def late_round(health: LocalHealth, previous: float, lag: float) -> float:
    t = previous + INTERVAL + lag
    assert health.round_started(t) == pytest.approx(lag)
    return t


# -------------------------------------------------------------------------------- LocalHealth


def test_a_punctual_peer_keeps_score_zero_and_multiplier_one() -> None:
    health = LocalHealth(INTERVAL)
    assert (health.score, health.multiplier) == (0, 1)
    assert health.round_started(T0) == 0.0  # the first round has nothing to be late against
    t = punctual_rounds(health, T0, 3 * RECOVER_ROUNDS)
    # Slightly late rounds (jitter within one interval) are still punctual.
    for jitter in (INTERVAL / 8, INTERVAL / 2, INTERVAL):
        t = late_round(health, t, jitter)
    assert (health.score, health.multiplier) == (0, 1)


def test_an_early_round_reports_no_negative_lateness() -> None:
    health = LocalHealth(INTERVAL)
    health.round_started(T0)
    assert health.round_started(T0 + INTERVAL / 10) == 0.0
    assert health.score == 0


def test_a_round_more_than_one_interval_late_raises_the_score() -> None:
    health = LocalHealth(INTERVAL)
    health.round_started(T0)
    # Exactly one interval late is the edge that still counts as punctual.
    t = late_round(health, T0, INTERVAL)
    assert health.score == 0
    t = late_round(health, t, INTERVAL + INTERVAL / 64)
    assert (health.score, health.multiplier) == (1, 2)
    t = late_round(health, t, 5.0)
    assert (health.score, health.multiplier) == (2, 3)


def test_the_score_is_bounded_by_max_score() -> None:
    health = LocalHealth(INTERVAL)
    t = T0
    health.round_started(t)
    for _ in range(MAX_SCORE + 5):
        t = late_round(health, t, 10 * INTERVAL)
    assert (health.score, health.multiplier) == (MAX_SCORE, MAX_SCORE + 1)


def test_recover_rounds_punctual_rounds_lower_the_score_by_one() -> None:
    health = LocalHealth(INTERVAL)
    t = T0
    health.round_started(t)
    for _ in range(3):
        t = late_round(health, t, 4 * INTERVAL)
    assert health.score == 3
    t = punctual_rounds(health, t, RECOVER_ROUNDS - 1)
    assert health.score == 3, "one punctual round short of RECOVER_ROUNDS must not lower the score"
    t = punctual_rounds(health, t, 1)
    assert health.score == 2
    t = punctual_rounds(health, t, RECOVER_ROUNDS)
    assert health.score == 1
    t = punctual_rounds(health, t, 5 * RECOVER_ROUNDS)
    assert (health.score, health.multiplier) == (0, 1), "the score never goes below zero"


def test_a_late_round_restarts_the_count_of_punctual_rounds() -> None:
    health = LocalHealth(INTERVAL)
    t = T0
    health.round_started(t)
    t = late_round(health, t, 2 * INTERVAL)
    t = late_round(health, t, 2 * INTERVAL)
    assert health.score == 2
    t = punctual_rounds(health, t, RECOVER_ROUNDS - 1)
    t = late_round(health, t, 2 * INTERVAL)  # the streak is broken, and the score goes up instead
    assert health.score == 3
    t = punctual_rounds(health, t, RECOVER_ROUNDS - 1)
    assert health.score == 3
    punctual_rounds(health, t, 1)
    assert health.score == 2


def test_custom_bounds_are_honoured() -> None:
    health = LocalHealth(1.0, max_score=2, recover_rounds=3)
    t = 0.0
    health.round_started(t)
    for _ in range(4):
        t += 5.0
        health.round_started(t)
    assert health.multiplier == 3
    for _ in range(3):
        t += 1.0
        health.round_started(t)
    assert health.score == 1


@pytest.mark.parametrize("interval", [0.0, -1.0])
def test_a_non_positive_interval_is_refused(interval: float) -> None:
    with pytest.raises(ValueError):
        LocalHealth(interval)


# -------------------------------------------------------------------------------- excuse + tick


def test_a_member_silent_only_while_we_were_stalled_is_not_suspected() -> None:
    """The whole cluster looks silent for our stall; after the excuse nobody is suspected or dead."""
    view, health = make_view(), LocalHealth(INTERVAL)
    view.merge([entry("b"), entry("c")], T0)
    health.round_started(T0)
    stall = 2 * DEAD_S  # longer than the dead timeout: unexcused, everyone would be declared dead
    now = T0 + INTERVAL + stall
    lag = health.round_started(now)
    assert lag == pytest.approx(stall)
    view.excuse(lag, now)
    assert view.tick(now, health.multiplier) == []
    assert (state_of(view, "b"), state_of(view, "c")) == (MemberState.ALIVE, MemberState.ALIVE)
    # They answer in the next round and stay alive.
    view.merge([entry("b", 2), entry("c", 2)], now + INTERVAL)
    assert view.tick(now + INTERVAL, health.multiplier) == []


def test_without_the_excuse_the_same_stall_would_declare_everyone_dead() -> None:
    """The control for the test above: the excuse is what keeps the members alive."""
    view = make_view()
    view.merge([entry("b")], T0)
    now = T0 + INTERVAL + 2 * DEAD_S
    assert view.tick(now) == [MemberEvent("suspect", "b"), MemberEvent("dead", "b")]


def test_the_excuse_covers_only_the_stall_not_silence_before_it() -> None:
    """A member already silent before our stall keeps that silence: only the stall is forgiven."""
    view = make_view()
    view.merge([entry("b")], T0)
    silent_before = SUSPECT_S - 0.5
    stall = 10.0
    now = T0 + silent_before + stall
    view.excuse(stall, now)
    member = view.get("b")
    assert member is not None
    assert member.last_seen == pytest.approx(T0 + stall)
    assert view.tick(now) == []
    assert view.tick(now + 0.5) == [MemberEvent("suspect", "b")]


def test_the_excuse_never_moves_last_seen_past_now_nor_touches_us() -> None:
    view = make_view()
    view.merge([entry("b")], T0 + 5)
    view.excuse(100.0, T0 + 6)
    member, me = view.get("b"), view.get("me")
    assert member is not None and me is not None
    assert member.last_seen == T0 + 6
    assert me.last_seen == T0
    # Nothing to excuse: no change.
    view.excuse(0.0, T0 + 50)
    view.excuse(-3.0, T0 + 50)
    member = view.get("b")
    assert member is not None and member.last_seen == T0 + 6


def test_a_member_silent_beyond_the_scaled_dead_timeout_is_still_declared_dead() -> None:
    """A stalled peer grows patient, not blind: a member that really died is declared dead, and a
    member that keeps talking is not, while the rounds go on after the stall."""
    view, health = make_view(), LocalHealth(INTERVAL)
    view.merge([entry("b"), entry("c")], T0)
    health.round_started(T0)
    stall = 3.0
    now = T0 + INTERVAL + stall
    view.excuse(health.round_started(now), now)
    assert health.multiplier == 2
    # "c" keeps talking; "b" has died. Rounds continue punctually.
    t, heartbeat = now, 1
    b_events: list[tuple[float, MemberEvent]] = []
    while not any(e.kind == "dead" for _, e in b_events):
        assert t < T0 + 100 * DEAD_S, "b was never declared dead"
        t += INTERVAL
        assert health.round_started(t) == 0.0
        heartbeat += 1
        view.merge([entry("c", heartbeat)], t)
        events = view.tick(t, health.multiplier)
        assert all(e.node_id == "b" for e in events), events
        b_events += [(t, e) for e in events]
    assert [e for _, e in b_events] == [MemberEvent("suspect", "b"), MemberEvent("dead", "b")]
    assert state_of(view, "c") is MemberState.ALIVE
    # b's silence counts from the end of the stall: it was declared dead no earlier than the dead
    # timeout after that, and no later than the timeout times the multiplier it started with.
    silence = b_events[-1][0] - (T0 + stall)
    assert DEAD_S <= silence <= 2 * DEAD_S


def test_while_the_multiplier_holds_death_waits_for_the_scaled_timeout() -> None:
    """One late round doubles the dead timeout; the member silent past it is dead all the same."""
    view, health = make_view(), LocalHealth(INTERVAL)
    view.merge([entry("b")], T0)
    health.round_started(T0)
    stall = 2.0
    now = T0 + INTERVAL + stall
    view.excuse(health.round_started(now), now)
    scale = health.multiplier
    assert scale == 2
    silent_since = T0 + stall
    assert view.tick(silent_since + DEAD_S, scale) == [MemberEvent("suspect", "b")]
    assert view.tick(silent_since + DEAD_S * scale - 0.25, scale) == []
    assert view.tick(silent_since + DEAD_S * scale, scale) == [MemberEvent("dead", "b")]
    assert state_of(view, "b") is MemberState.DEAD


def test_the_scale_multiplies_both_timeouts() -> None:
    view = make_view()
    view.merge([entry("b")], T0)
    scale = 3
    assert view.tick(T0 + SUSPECT_S, scale) == []
    assert view.tick(T0 + SUSPECT_S * scale - 0.01, scale) == []
    assert view.tick(T0 + SUSPECT_S * scale, scale) == [MemberEvent("suspect", "b")]
    assert view.tick(T0 + DEAD_S * scale - 0.01, scale) == []
    assert view.tick(T0 + DEAD_S * scale, scale) == [MemberEvent("dead", "b")]


def test_at_the_highest_score_a_dead_member_is_declared_dead_within_the_bounded_timeout() -> None:
    """However late our rounds run, the wait is bounded: (1 + MAX_SCORE) times the dead timeout."""
    view, health = make_view(), LocalHealth(INTERVAL)
    view.merge([entry("b")], T0)
    t = T0
    health.round_started(t)
    for _ in range(MAX_SCORE + 3):
        t += INTERVAL + 2 * INTERVAL  # each round one interval later than it should be
        view.excuse(health.round_started(t), t)
    assert health.multiplier == MAX_SCORE + 1
    member = view.get("b")
    assert member is not None
    # The excuse forgave all but one interval of each gap; b has been silent that long since T0.
    silent_since = member.last_seen
    assert view.tick(silent_since + DEAD_S * (MAX_SCORE + 1) - 0.25, health.multiplier) == [
        MemberEvent("suspect", "b")]
    assert MemberEvent("dead", "b") in view.tick(silent_since + DEAD_S * (MAX_SCORE + 1), health.multiplier)
