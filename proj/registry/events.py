"""The run's log: its records' lifecycle merged with the event stream; waiting on it."""

from __future__ import annotations

import time

from proj.registry._base import RegistryBase
from proj.registry.records import Event, step_records_of

# Where stream events sort among lifecycle events written by the same script at the same time:
# run_started 0, step_finished 1, the stream's 2, step_dispatched 3, run_finished 4.
_STREAM_RANK = 2


def _event(entry_id: str, fields: dict[str, str]) -> Event:
    rest = {k: v for k, v in fields.items() if k not in ("type", "at")}
    return Event(entry_id, fields.get("type", ""), float(fields.get("at", 0.0)), rest)


class EventsMixin(RegistryBase):
    """The run's log: its records' lifecycle merged with the event stream; waiting on it."""

    def events(self, run_id: str) -> list[Event]:
        """The run's log, oldest first: its lifecycle (started, each step dispatched and
        finished, ended), read from the run's and steps' records, merged with the event stream,
        which holds everything else (retries, failures, approvals, operator actions, ...)."""
        rk = self.run_keys(run_id)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.xrange(rk.events)
            pipe.hmget(rk.run, ["created_at", "finished_at", "state"])
            pipe.hgetall(rk.steps)
            entries, (created, finished, state), raw_steps = pipe.execute()
        ranked = [(_event(entry_id, fields), _STREAM_RANK) for entry_id, fields in entries]
        if created:
            ranked.append((Event("run_started", "run_started", float(created)), 0))
        for step, record in step_records_of(raw_steps).items():
            if "dispatched_at" in record:
                event = Event(
                    f"step_dispatched:{step}", "step_dispatched", float(record["dispatched_at"]), {"step": step}
                )
                ranked.append((event, 3))
            if "result_bytes" in record and "finished_at" in record:
                event = Event(f"step_finished:{step}", "step_finished", float(record["finished_at"]), {"step": step})
                ranked.append((event, 1))
        if finished:
            ranked.append((Event("run_finished", "run_finished", float(finished), {"state": state or ""}), 4))
        # One script writes several of these at one server time: keep the order it acts in.
        ranked.sort(key=lambda item: (item[0].at, item[1]))
        return [event for event, _ in ranked]

    def wait_event(self, run_id: str, types: set[str], timeout_s: float, after: str = "0-0") -> Event | None:
        """The first event of one of ``types`` after event id ``after`` (past or future), or None.

        The stream is the signal (XREAD BLOCK): this wakes as soon as the event is written.
        """
        rk = self.run_keys(run_id)
        deadline = time.monotonic() + timeout_s
        last_id = after
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                return None
            # Short blocks so a deleted/expired stream or a reconnect cannot wedge the wait.
            reply = self.client.xread({rk.events: last_id}, block=min(remaining_ms, 1000), count=100)
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    if fields.get("type") in types:
                        return _event(entry_id, fields)
            if not reply and self.client.hget(rk.run, "state") is None:
                return None

    def emit(self, run_id: str, step: str, type_: str, text: str) -> bool:
        """Append to the run's progress stream (capped at AGENTCHORD_PROGRESS_MAXLEN entries)."""
        rk = self.run_keys(run_id)
        maxlen = self.settings.progress_maxlen
        return bool(self._emit(keys=[rk.progress, rk.run], args=[maxlen, type_, step, text]))

    def progress(self, run_id: str) -> list[Event]:
        """The run's progress entries, oldest first (what is left of them under the cap)."""
        return [_event(entry_id, fields) for entry_id, fields in self.client.xrange(self.run_keys(run_id).progress)]

    def add_event(self, run_id: str, type_: str, **fields: str) -> None:
        """Append an event that is not part of a step transition (e.g. a notification)."""
        self.client.xadd(self.run_keys(run_id).events, {"type": type_, "at": f"{self.server_time():.6f}", **fields})
