"""Step priorities are Celery message priorities: on the Redis broker a step with a later
priority waits in its queue's later list, behind every step without one."""

from __future__ import annotations

import pytest
import redis

from coordinator import Step, Workflow, start
from coordinator.interfaces.stack import WorkerProcess, control_app
from proj.registry import registry_for
from proj.settings import Settings
from tests.conftest import start_worker, wait_for

QUEUE = "echo"


def one_step(name: str, priority: int | None) -> Workflow:
    return Workflow(name=name, steps=[Step(name="only", agent=QUEUE, priority=priority)])


def test_a_later_priority_yields_to_steps_without_one(
    client: redis.Redis, settings: Settings, worker: WorkerProcess
) -> None:
    control = control_app(settings).control
    # The shared worker stops taking the queue, so messages pile up in the broker's lists.
    assert control.cancel_consumer(QUEUE, destination=[worker.hostname], reply=True)
    registry = registry_for(settings)
    try:
        background = [start(one_step("background", 6), input={"i": i}) for i in range(3)]
        normal = [start(one_step("interactive", None), input={"i": i}) for i in range(3)]
        assert registry.queue_depths([QUEUE]) == {QUEUE: 6}  # both lists are counted
        waiting = registry.waiting_task_ids(QUEUE)
        assert [task_id.split(".")[0] for task_id in waiting] == [run.id for run in (*normal, *background)]
        solo = start_worker([QUEUE], "priorities", settings, concurrency=1)
        try:
            for run in (*normal, *background):
                run.wait(timeout=30)
        finally:
            solo.stop()
    finally:
        control.add_consumer(QUEUE, destination=[worker.hostname], reply=True)

    def started(run_id: str) -> float:
        return float(registry.step_records(run_id)["only"]["started_at"])

    order = sorted((*normal, *background), key=lambda run: started(run.id))
    # One process, one message at a time: every step without a priority went first.
    assert {run.id for run in order[:3]} == {run.id for run in normal}
    assert wait_for(lambda: registry.queue_depths([QUEUE]) == {QUEUE: 0})


def test_a_priority_outside_0_to_9_is_a_spec_error() -> None:
    with pytest.raises(ValueError, match="priority"):
        Step(name="s", agent=QUEUE, priority=10)
