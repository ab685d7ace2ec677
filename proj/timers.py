"""Keep a worker's timer heap from holding every cancelled time limit until it is due.

Celery arms a soft and a hard timer for each task with a time limit (every agentchord step has
one) and cancels both when the task ends, but a cancelled entry stays in the event loop's heap
until its due time: with the default 600 s limit, a worker's main process holds every task of
the last ten minutes, ~2.4 MiB per 1,000 four-step runs (measured by bench/soak.py; plain Celery
with the same limits grows the same; celery/celery#5200). Every ``COMPACT_EVERY_S`` the heap is
rebuilt without the cancelled entries, in the loop's own thread.
"""

from __future__ import annotations

import heapq
from typing import Any

from celery.signals import worker_ready
from kombu.asynchronous import get_event_loop

COMPACT_EVERY_S = 2.0


def compact(timer: Any) -> int:
    """Drop cancelled entries from ``timer``'s heap (kombu's ``Timer``); returns how many."""
    queue = timer._queue  # (eta, priority, entry) tuples, a heap
    live = [item for item in queue if not item[2].canceled]
    dropped = len(queue) - len(live)
    if dropped:
        queue[:] = live
        heapq.heapify(queue)
    return dropped


@worker_ready.connect  # type: ignore[untyped-decorator]
def _compact_timers_periodically(**_kwargs: Any) -> None:
    hub = get_event_loop()  # the worker's event loop (prefork); None for pools without one
    if hub is not None:
        hub.call_repeatedly(COMPACT_EVERY_S, compact, hub.timer)
