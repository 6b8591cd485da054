"""Local health: how late this peer itself runs, so its own stalls are not taken for others' silence.

A heartbeat detector judges silence on the observer's clock, and an observer whose event loop runs
late (both cores taken by other processes, a long GC pause, SIGSTOP) hears nobody while it is stalled:
at its first round afterwards every member looks silent for the whole stall, and a stall longer than
the dead timeout would declare the whole cluster dead. Lifeguard (Dadgar et al., 2018; memberlist's
`awareness.go`) answers with a local health multiplier: a member that sees signs of its own slowness
waits longer before it accuses anyone. Here the sign is exact: each gossip round knows how late it
started, measured on the event loop's clock (the one that runs late), and

- the lateness of a round is excused: nothing could be heard while the loop was not running, so that
  time is not counted as any member's silence (`MembershipView.excuse`);
- every round that started more than one interval late raises a score (at most `MAX_SCORE`), and
  `RECOVER_ROUNDS` punctual rounds in a row lower it by one; the suspect and dead timeouts are
  multiplied by 1 + score, so a peer that keeps running late keeps its patience for a while after
  its last late round. A member that really died is still declared dead, later by that factor at most.

Pure and synchronous: the caller passes the loop time in.
"""

from __future__ import annotations

MAX_SCORE = 8
"""memberlist's AwarenessMaxMultiplier: timeouts grow to 9 times their setting at most."""
RECOVER_ROUNDS = 10
"""Punctual rounds in a row that lower the score by one (1 s at a 0.1 s interval, 5 s at 0.5 s)."""


class LocalHealth:
    def __init__(self, interval_s: float, max_score: int = MAX_SCORE, recover_rounds: int = RECOVER_ROUNDS) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._interval = interval_s
        self._max = max_score
        self._recover = recover_rounds
        self._last: float | None = None
        self._punctual = 0
        self.score = 0
        """0 when healthy; each late round adds one, up to max_score."""

    @property
    def multiplier(self) -> int:
        """The factor on the suspect and dead timeouts."""
        return 1 + self.score

    def round_started(self, loop_now: float) -> float:
        """Records the start of a round at event-loop time `loop_now`; returns how many seconds later
        than one interval after the previous round it started (0 for the first round, or a punctual one)."""
        last, self._last = self._last, loop_now
        if last is None:
            return 0.0
        lag = max(0.0, loop_now - last - self._interval)
        if lag > self._interval:
            self.score = min(self._max, self.score + 1)
            self._punctual = 0
        else:
            self._punctual += 1
            if self._punctual >= self._recover:
                self.score = max(0, self.score - 1)
                self._punctual = 0
        return lag
