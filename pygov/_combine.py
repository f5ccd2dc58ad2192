"""Flat combining: concurrent calls on one hot key share one round trip and one commit.

When several callers of this process change the same thing at the same moment (the same stock
level), only one of them talks to the database at a time for that key: the *sender*. The others
queue their requests; when the sender is done, the first of them becomes the sender and takes
the whole queue as one batch. Nobody waits for a batch to fill (a lone caller sends at once),
and under contention each commit, which a hot row's lock serialises anyway, carries many changes
instead of one. The database work of each request is unchanged and each caller gets its own
result or error.

This module holds the queueing, shared by the sync and async namespaces; they only differ in how
a caller waits (a threading.Event or an asyncio.Event).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pygov.errors import ConcurrencyError, GovernanceError, translate

T = TypeVar("T")

#: The most requests one batch carries.
MAX_BATCH = 100


@dataclass(eq=False, slots=True)
class Pending(Generic[T]):
    """One caller's request, waiting for its result or for its turn to send."""

    request: Any
    #: Set once, for the result or to send: a threading.Event or asyncio.Event, made only for
    #: callers that wait (a lone caller never needs one).
    waker: Any = None
    sender: bool = False
    cancelled: bool = False
    result: T | None = None
    error: GovernanceError | None = None
    done: bool = field(default=False)

    def settle(self, result: T | None = None, error: GovernanceError | None = None) -> None:
        self.result, self.error, self.done = result, error, True

    def outcome(self) -> T:
        """The result, or raise the error."""
        if self.error is not None:
            raise self.error
        if not self.done:
            raise ConcurrencyError(
                "the caller that was sending this change was interrupted: "
                "it may or may not have been applied"
            )
        return self.result  # type: ignore[return-value]


class Combiner:
    """The queues of waiting requests, one per key (only while someone is sending for it)."""

    def __init__(self, max_batch: int = MAX_BATCH) -> None:
        self._lock = threading.Lock()
        self._queues: dict[Hashable, deque[Pending[Any]]] = {}
        self.max_batch = max_batch

    def join(self, key: Hashable, pending: Pending[Any], make_waker: Callable[[], Any]) -> bool:
        """Queue a request. True (and ``pending.sender``) when nobody is sending for this key:
        the caller sends now; otherwise it gets a waker (``make_waker()``) to wait on."""
        with self._lock:
            queue = self._queues.get(key)
            if queue is not None:
                pending.waker = make_waker()
                queue.append(pending)
                return False
            self._queues[key] = deque([pending])
            pending.sender = True
            return True

    def take(self, key: Hashable) -> list[Pending[Any]]:
        """The sender's batch: the queue's requests (its own first), up to ``max_batch``."""
        with self._lock:
            queue = self._queues[key]
            batch: list[Pending[Any]] = []
            while queue and len(batch) < self.max_batch:
                pending = queue.popleft()
                if not pending.cancelled:
                    batch.append(pending)
            return batch

    def hand_over(self, key: Hashable) -> Pending[Any] | None:
        """The sender is done: the first waiting request's caller sends next. Returns it (its
        waker must be set), or None when nobody waits any more."""
        with self._lock:
            queue = self._queues[key]
            while queue and queue[0].cancelled:
                queue.popleft()
            if not queue:
                del self._queues[key]
                return None
            queue[0].sender = True
            return queue[0]

    def queued(self, key: Hashable) -> int:
        """How many requests wait for the sender of ``key`` (for monitoring and tests)."""
        with self._lock:
            queue = self._queues.get(key)
            return 0 if queue is None else sum(not p.cancelled for p in queue)

    def cancel(self, pending: Pending[Any]) -> bool:
        """A waiting caller gives up. True when it had just been made the sender: somebody must
        still send for the others."""
        with self._lock:
            pending.cancelled = True
            return pending.sender


def wake(batch: list[Pending[Any]], following: Pending[Any] | None) -> None:
    """Tell the batch's waiting callers their results are in, and the next sender its turn."""
    for pending in batch:
        if pending.waker is not None:
            pending.waker.set()
    if following is not None:
        following.waker.set()


def fail(batch: list[Pending[Any]], exc: BaseException) -> bool:
    """A batch failed as a whole. True when each request should now be sent on its own (the
    batch's transaction was rolled back: nothing of it was applied), so that every caller gets
    exactly the answer it would have got alone. False when the connection was lost and nobody
    can tell whether it committed: every request then gets the error (its own copy)."""
    error = translate(exc)
    state = str(error.context.get("sqlstate", ""))
    if len(batch) > 1 and not (isinstance(error, ConcurrencyError) and state[:2] in {"08", "57"}):
        return True
    for pending in batch:
        if not pending.done:
            copy = type(error)(error.message, dict(error.context))
            copy.__cause__ = error
            pending.settle(error=copy)
    return False
