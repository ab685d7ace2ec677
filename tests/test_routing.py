"""Each role has its own queue: a worker started with `-Q reviewer` consumes only reviewer work."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from coordinator.interfaces.stack import WorkerProcess
from proj.celery import celery_config
from proj.queues import queue_for_task
from proj.redis_server import RedisServer
from proj.settings import Settings
from tests.conftest import start_worker, wait_for


def test_agent_tasks_route_to_their_role_queue_and_callbacks_to_coordinator() -> None:
    assert queue_for_task("agents.reviewer") == "reviewer"
    assert queue_for_task("agents.test_writer") == "test_writer"
    assert queue_for_task("coordinator.advance") == "coordinator"
    assert queue_for_task("coordinator.notify_approval") == "notifications"


def test_every_coordinator_task_is_named_in_the_one_table_and_beat_uses_it() -> None:
    import coordinator.engine.callbacks  # noqa: F401  (registers the coordinator's tasks)
    from proj.celery import app
    from proj.queues import COORDINATOR_TASKS

    registered = {name for name in app.tasks if name.startswith("coordinator.")}
    assert registered == set(COORDINATOR_TASKS)
    assert {entry["task"] for entry in app.conf.beat_schedule.values()} <= set(COORDINATOR_TASKS)


@pytest.fixture
def own_redis(redis_server: RedisServer) -> Iterator[Settings]:
    """DB 1 of the test server: no other worker listens there."""
    settings = Settings(redis_url=redis_server.url.replace("/0", "/1"), key_prefix="agentchord-routing")
    yield settings
    redis.Redis.from_url(settings.resolved_redis_url).flushdb()


def test_worker_on_reviewer_queue_does_not_consume_test_writer_tasks(own_redis: Settings) -> None:
    worker: WorkerProcess = start_worker(["reviewer"], "reviewer-only", own_redis, concurrency=1)
    try:
        producer = Celery("probe", config_source=celery_config(own_redis))
        queued = redis.Redis.from_url(own_redis.resolved_redis_url)
        writer = producer.send_task("agents.test_writer", kwargs={"run_id": "none", "step": "tests"})
        wait_for(lambda: queued.llen("test_writer") == 1)
        # A reviewer task sent after it is consumed and finished ...
        review = producer.send_task("agents.reviewer", kwargs={"run_id": "none", "step": "review"})
        assert review.get(timeout=30) == {"run_id": "none", "step": "review", "status": "missing"}
        # ... while the test_writer message still waits in its own queue, untouched.
        assert queued.llen("test_writer") == 1
        assert writer.state == "PENDING"
        assert queued.llen("celery") == 0
    finally:
        worker.stop()
