"""A worker announces the queues it serves, its concurrency and its tasks in flight, every
``AGENTCHORD_WORKER_HEARTBEAT_S``, from a thread of its main process (the live role registry:
:mod:`proj.registry.workers`). A worker that stops cleanly removes its entry; one that dies
stops being seen and drops out after three intervals. :mod:`proj.celery` starts and stops it."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import redis
from celery.worker import state

from proj.registry import Registry

logger = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, registry: Registry, worker: Any) -> None:
        self.registry = registry
        self.hostname = str(worker.hostname)
        self.queues = sorted(queue.name for queue in worker.app.amqp.queues.consume_from.values())
        self.concurrency = int(getattr(worker.controller, "concurrency", 0) or 0)
        self._stop = threading.Event()

    def start(self) -> Heartbeat:
        threading.Thread(target=self._run, name="agentchord-heartbeat", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(redis.RedisError):  # if not now, it drops out after three missed beats
            self.registry.forget_worker(self.hostname)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.registry.heartbeat(self.hostname, self.queues, self.concurrency, len(state.active_requests))
            except redis.RedisError as exc:  # Redis restarting: the next beat tries again
                logger.debug("heartbeat not written: %s", exc)
            self._stop.wait(self.registry.settings.worker_heartbeat_s)
