"""The session slots of a server: ``max_sessions`` of them, shared by stream sessions and WebRTC calls.

A session or call takes a slot when it opens and gives it back when it closes; a live holder is never evicted for
a newcomer, who is refused (:class:`~server.errors.Unavailable`, with how long to wait) instead.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import Unavailable
from .metrics import Metrics
from .settings import Settings


class SlotPool:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.size = settings.max_sessions
        self.metrics = metrics
        self._holders: set[str] = set()

    @property
    def used(self) -> int:
        return len(self._holders)

    def check(self, retry_after: Callable[[], int]) -> None:
        """Refuse (:class:`Unavailable`, ``Retry-After: retry_after()``) when every slot is taken."""
        if len(self._holders) >= self.size:
            self.metrics.sessions_rejected.inc()
            raise Unavailable(f"all {self.size} session slots are taken (limit max_sessions, S2VC_MAX_SESSIONS); retry later",
                              retry_after=retry_after())

    def take(self, holder: str) -> None:
        """Give a slot to ``holder`` (an id) after :meth:`check` let it in."""
        self._holders.add(holder)

    def give_back(self, holder: str) -> None:
        self._holders.discard(holder)
