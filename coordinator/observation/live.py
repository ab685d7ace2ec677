"""A run's event log, followed live as Server-Sent Events, resumable with ``Last-Event-ID``.

The log is :meth:`proj.registry.Registry.events` (the records' lifecycle merged with the event
stream) with the agents' progress reports (:meth:`~proj.registry.Registry.progress`), polled: a
clean run writes no event stream (what a run stores was decided in issue 19), so its progress is
read from its records. Each event's SSE id is ``<server time>/<event id>``; a client
that reconnects with the last id it saw gets only the events after it. The stream ends once the
run has ended and every event was sent, or after ``max_s`` (the client reconnects; ``retry``).
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import AsyncIterator, Iterator

import anyio.to_thread

from proj.registry import TERMINAL_STATES, Event, Registry

POLL_S = 0.25
RETRY_MS = 1000
_ENDED = {*TERMINAL_STATES, "needs_attention"}


def sse_id(event: Event) -> str:
    return f"{event.at:.6f}/{event.id}"


def events_after(events: list[Event], last_id: str | None) -> list[Event]:
    """The events a client that last saw ``last_id`` has not seen (all of them without one)."""
    if not last_id:
        return events
    ids = [sse_id(event) for event in events]
    if last_id in ids:
        return events[ids.index(last_id) + 1 :]
    at = _time_of(last_id)
    return [event for event in events if event.at > at]


def _time_of(last_id: str) -> float:
    try:
        return float(last_id.partition("/")[0])
    except ValueError:
        return 0.0


def format_sse(event: Event) -> str:
    data = json.dumps({"type": event.type, "at": event.at, **event.fields}, sort_keys=True)
    # No `event:` line: every entry is a "message" (its type is in the data), so a client sees
    # every kind, including ones added later, with one handler.
    return f"id: {sse_id(event)}\ndata: {data}\n\n"


def _poll(registry: Registry, run_id: str, last_id: str | None) -> tuple[list[Event], bool]:
    """The events after ``last_id``, and whether the run has ended (or is gone). The state is read
    first: a run that ended before the read has all its events in it."""
    state = registry.run_record(run_id).get("state", "")
    # The log and the agents' progress reports (ctx.emit, streamed tokens), each in its own order.
    merged = list(heapq.merge(registry.events(run_id), registry.progress(run_id), key=lambda event: event.at))
    return events_after(merged, last_id), state in _ENDED or not state


def follow_events(
    registry: Registry, run_id: str, last_id: str | None = None, timeout_s: float | None = None
) -> Iterator[Event]:
    """The run's events after ``last_id`` (all of them without one), then each new one as it
    happens, until the run ends (or ``timeout_s`` passes)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        fresh, ended = _poll(registry, run_id, last_id)
        yield from fresh
        if fresh:
            last_id = sse_id(fresh[-1])
        if ended or (deadline is not None and time.monotonic() > deadline):
            return
        time.sleep(POLL_S)  # polled: a clean run writes no stream to block on (see the module doc)


async def follow(registry: Registry, run_id: str, last_id: str | None, max_s: float) -> AsyncIterator[str]:
    """SSE text for the run's events after ``last_id``, as they happen, until the run ends."""
    yield f"retry: {RETRY_MS}\n\n"
    deadline = time.monotonic() + max_s
    while True:
        fresh, ended = await anyio.to_thread.run_sync(_poll, registry, run_id, last_id)
        for event in fresh:
            yield format_sse(event)
        if fresh:
            last_id = sse_id(fresh[-1])
        if ended or time.monotonic() > deadline:
            return
        await anyio.sleep(POLL_S)
