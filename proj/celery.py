"""The one Celery instance. It defines no tasks: workers import them through ``imports``.

``celery -A proj worker -Q reviewer`` finds ``proj.app``; the app reads :class:`Settings` once
from the environment at import. Tests and the local stack call :func:`configure` with explicit
settings before anything connects.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import (
    beat_embedded_init,
    beat_init,
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)

from proj.connections import celery_connection_config
from proj.heartbeat import Heartbeat
from proj.queues import COORDINATOR_QUEUE, PRIORITY_STEPS, SWEEP_DEADLINES_TASK, WATCHDOG_TASK, route_task
from proj.registry import registry_for
from proj.settings import Settings
from proj.tracing import setup_tracing

# Modules that define tasks. Built-in roles live in `agents`; the coordinator's callbacks in
# `coordinator.engine.callbacks`. User roles come from AGENTCHORD_AGENT_MODULES.
TASK_MODULES = ("agents", "coordinator.engine.callbacks")


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration agentchord needs, derived from ``settings``."""
    connections = celery_connection_config(settings)
    return {
        **connections,
        # JSON only: a pickle payload from the broker must never be executed.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "imports": [*TASK_MODULES, *settings.agent_modules],
        "task_routes": (route_task,),
        "task_default_queue": COORDINATOR_QUEUE,
        # Agent work is long and must survive a worker crash: ack after the task ran, requeue
        # when the worker process is lost, and reserve one message at a time.
        "task_acks_late": settings.acks_late,
        "task_reject_on_worker_lost": settings.acks_late,
        "worker_prefetch_multiplier": settings.worker_prefetch_multiplier,
        # The priority lists per queue (proj/queues.py; kombu's default, written out so the
        # readers of queue depth and the broker agree). Messages without a priority stay in the
        # queue's own list.
        "broker_transport_options": {
            **connections["broker_transport_options"],
            "visibility_timeout": settings.broker_visibility_timeout_s,
            "priority_steps": list(PRIORITY_STEPS),
        },
        "result_expires": settings.celery_result_ttl_s,
        "broker_connection_retry_on_startup": True,
        # Task events on, so Flower shows every task with its run id and step.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        # Approval deadlines: any number of beats may run this; each deadline fires once.
        "beat_schedule": {
            "agentchord-sweep-approval-deadlines": {
                "task": SWEEP_DEADLINES_TASK,
                "schedule": settings.deadline_sweep_interval_s,
            },
            "agentchord-watchdog": {"task": WATCHDOG_TASK, "schedule": settings.watchdog_interval_s},
        },
        "enable_utc": True,
    }


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _trace_in_pool_child(**_kwargs: Any) -> None:
    setup_tracing(_settings)


@worker_init.connect  # type: ignore[untyped-decorator]
def _trace_in_worker(sender: Any = None, **_kwargs: Any) -> None:
    # Prefork children set tracing up after the fork (above); other pools run tasks here.
    if "prefork" not in str(getattr(sender, "pool_cls", "prefork")).lower():
        setup_tracing(_settings)


@beat_init.connect  # type: ignore[untyped-decorator]
@beat_embedded_init.connect  # type: ignore[untyped-decorator]
def _quiet_beat(sender: Any = None, **_kwargs: Any) -> None:
    """A beat process publishes housekeeping every few seconds: no ``task-sent`` events from it,
    so Flower lists workflow work only. Only where beat has its process to itself (``celery beat``,
    or ``worker -B``'s child): a beat thread inside a worker leaves the worker's events alone."""
    if threading.current_thread() is threading.main_thread():
        app.conf.task_send_sent_event = False


_heartbeats: list[Heartbeat] = []


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_heartbeat(sender: Any = None, **_kwargs: Any) -> None:
    _heartbeats.append(Heartbeat(registry_for(_settings), sender).start())


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _stop_heartbeat(**_kwargs: Any) -> None:
    for heartbeat in _heartbeats:
        heartbeat.stop()


def configure(settings: Settings) -> None:
    """Point the app (and the registry client) at ``settings``; call before first use."""
    global _settings
    _settings = settings
    previous = app.conf.broker_url
    app.conf.update(celery_config(settings))
    if previous != app.conf.broker_url:
        # Connections already pooled lead to the old broker, and queue declarations made for it
        # (classic or quorum) are cached: the next send opens new ones and declares again.
        app._pool = None
        app.amqp._producer_pool = None
        for cached in ("queues", "router", "default_queue", "send_task_message"):
            app.amqp.__dict__.pop(cached, None)


def current_settings() -> Settings:
    """The settings the app was configured with."""
    return _settings


# httpx logs every request's full URL at INFO (credentials, tokens in paths, query strings):
# agentchord logs its outbound calls itself, redacted (proj.redaction).
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

_settings = Settings()
app = Celery("agentchord")
import proj.heartbeat  # noqa: E402  (connects the worker's heartbeat)
import proj.timers  # noqa: E402,F401  (connects the worker's timer compaction)

app.conf.update(celery_config(_settings))
