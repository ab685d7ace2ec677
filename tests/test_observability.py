"""Where users see the tax: Prometheus /metrics, the Grafana dashboard, and real Flower."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from coordinator import Approval, Step, Workflow, start
from coordinator.interfaces.stack import ApiProcess, FlowerProcess
from proj.queues import COORDINATOR_QUEUE, ESCALATE_TO_APPROVAL_TASK, SWEEP_DEADLINES_TASK, WATCHDOG_TASK
from proj.settings import Settings
from tests.conftest import API_TOKEN, start_worker, wait_for
from tests.receiver import OtlpReceiver, SpanRecord

pytestmark = pytest.mark.usefixtures("worker")
DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "agentchord.json"


def scrape(api: ApiProcess) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = httpx.get(f"{api.url}/metrics", timeout=10).text
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if all(found.get(k) == want for k, want in labels.items()))


def test_metrics_count_steps_runs_tokens_and_histograms_across_workers(api: ApiProcess, client: redis.Redis) -> None:
    diamond = Workflow(
        name="metrics",
        steps=[
            Step(name="a", agent="reviewer"),
            Step(name="b", agent="test_writer", after=["a"]),
            Step(name="c", agent="doc_generator", after=["a"]),
            Step(name="d", agent="merger", after=["b", "c"]),
        ],
    )
    start(diamond, input={"diff": "+++ b/x.py\n@@ -0,0 +1 @@\n+print(1)\n"}).wait(timeout=60)
    parked = start(Workflow(name="parked", steps=[Step(name="g", approval=Approval())]), input={})
    parked.wait_for_approval(timeout=30)
    samples = scrape(api)
    for role in ("reviewer", "test_writer", "doc_generator", "merger"):
        assert value(samples, "agentchord_steps_total", role=role, state="succeeded") == 1
    assert value(samples, "agentchord_runs_total", state="succeeded") == 1
    assert value(samples, "agentchord_queue_wait_seconds_count") == 4
    assert value(samples, "agentchord_queue_wait_seconds_bucket", le="+Inf") == 4
    assert value(samples, "agentchord_run_overhead_seconds_count") == 1
    assert value(samples, "agentchord_tokens_total", kind="prompt") > 0
    assert value(samples, "agentchord_tokens_total", kind="reinjected") > 0
    assert value(samples, "agentchord_parked_approvals") == 1


def test_grafana_dashboard_only_uses_exported_metrics(api: ApiProcess, client: redis.Redis) -> None:
    start(Workflow(name="one", steps=[Step(name="x", agent="echo")]), input={}).wait(timeout=60)
    exported = set(scrape(api))
    dashboard = json.loads(DASHBOARD.read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for t in panel["targets"]
        for name in re.findall(r"agentchord_\w+", t["expr"])
    }
    assert used, "the dashboard has no agentchord queries"
    assert used <= exported, f"not exported: {sorted(used - exported)}"


@pytest.fixture
def flower(settings: Settings) -> Iterator[FlowerProcess]:
    process = FlowerProcess(settings).start().wait_ready()
    yield process
    process.stop()


def test_flower_shows_a_runs_tasks_with_run_id_step_and_role_queues(flower: FlowerProcess, client: redis.Redis) -> None:
    # Flower learns about tasks from worker events; wait until it sees the worker.
    wait_for(lambda: httpx.get(f"{flower.url}/api/workers", params={"refresh": "true"}, timeout=10).json())
    run = start(
        Workflow(name="flowered", steps=[Step(name="a", agent="echo"), Step(name="b", agent="reviewer", after=["a"])]),
        input={},
    )
    run.wait(timeout=60)

    def tasks_of_run() -> list[dict[str, object]]:
        tasks = httpx.get(f"{flower.url}/api/tasks", timeout=10).json().values()
        return [t for t in tasks if run.id in str(t.get("kwargs"))]

    found = wait_for(lambda: len(tasks_of_run()) >= 2 and tasks_of_run(), timeout_s=30)
    names = {(t["name"], t.get("routing_key")) for t in found}
    # The run's two agent tasks and nothing else: the worker that finished "a" sent "b" itself.
    assert names == {("agents.echo", "echo"), ("agents.reviewer", "reviewer")}
    agent_task = next(t for t in found if t["name"] == "agents.reviewer")
    assert agent_task["uuid"] == f"{run.id}.b" and "'step': 'b'" in str(agent_task["kwargs"])
    metrics = httpx.get(f"{flower.url}/metrics", timeout=10).text
    assert "flower_events_total" in metrics


def test_flower_lists_workflow_work_under_run_ids_and_no_beat_housekeeping(
    flower: FlowerProcess, settings: Settings, client: redis.Redis
) -> None:
    # A coordinator worker with the beat embedded, as `agentchord up` runs it, sweeping often.
    quick = settings.model_copy(update={"deadline_sweep_interval_s": 0.2, "watchdog_interval_s": 0.2})
    with tempfile.TemporaryDirectory() as beat_dir:
        beat = start_worker(
            [COORDINATOR_QUEUE], "beat", quick, concurrency=1, extra_args=["-B", "-s", f"{beat_dir}/schedule"]
        )
        try:
            wait_for(lambda: httpx.get(f"{flower.url}/api/workers", params={"refresh": "true"}, timeout=10).json())
            steps = [
                Step(name="draft", agent="echo"),
                # Only the beat's deadline sweep can end this gate (1 s, then approved).
                Step(name="gate", approval=Approval(prompt="ok?", timeout_s=1, on_timeout="approve"), after=["draft"]),
                Step(name="fails", agent="boom", after=["gate"], on_failure="escalate_to_approval"),
            ]
            run = start(Workflow(name="housekept", steps=steps), input={})
            # The failed step is handed to a human by a coordinator task: wait for its approval.
            wait_for(lambda: any(a.step == "fails" for a in run.approvals()), timeout_s=60)
        finally:
            beat.stop()

    def tasks() -> list[dict[str, object]]:
        return list(httpx.get(f"{flower.url}/api/tasks", timeout=10).json().values())

    wait_for(lambda: any(t["name"] == ESCALATE_TO_APPROVAL_TASK for t in tasks()), timeout_s=30)
    seen = tasks()
    names = {str(t["name"]) for t in seen}
    assert not names & {SWEEP_DEADLINES_TASK, WATCHDOG_TASK}, names  # ran (the gate timed out), unlisted
    assert run.approvals()[0].actor == "deadline"
    for task in seen:
        if run.id in str(task.get("kwargs")):  # every task of the run, coordinator ones included
            assert str(task["uuid"]).startswith(f"{run.id}."), task


def test_one_trace_per_run_across_workers_with_model_and_registry_spans(
    otlp: OtlpReceiver, api: ApiProcess, settings: Settings, client: redis.Redis
) -> None:
    gated = Workflow(
        name="traced",
        steps=[
            Step(name="review", agent="reviewer"),
            Step(name="gate", approval=Approval(), after=["review"]),
            Step(name="merge", agent="merger", after=["gate"]),
        ],
    )
    run = start(gated, input={"diff": "+++ b/x.py\n@@ -0,0 +1 @@\n+eval(x)\n"})
    approval = run.wait_for_approval(timeout=30)
    # Resumed through the API process: the steps after the park must join the same trace.
    body = json.dumps({"decision": "approve"})
    headers = {"authorization": f"Bearer {API_TOKEN}"}
    assert httpx.post(f"{api.url}/approvals/{approval.id}", content=body, headers=headers).status_code == 200
    run.wait(timeout=60)

    def spans_of_run() -> list[SpanRecord]:
        spans = otlp.snapshot()
        traces = {s.trace_id for s in spans if s.attributes.get("agentchord.run_id") == run.id}
        return [s for s in spans if s.trace_id in traces]

    def complete() -> list[SpanRecord] | None:
        # Spans arrive in batches from several processes, children before their parents: wait
        # until every step span and every model call's parent has been exported.
        spans = spans_of_run()
        ids = {s.span_id for s in spans}
        steps = {s.attributes.get("agentchord.step") for s in spans if s.name.startswith("run/agents.")}
        calls = [s for s in spans if s.name == "agentchord.model_call"]
        ready = {"review", "merge"} <= steps and len(calls) >= 2 and all(c.parent_id in ids for c in calls)
        return spans if ready and any(s.name == "agentchord.run traced" for s in spans) else None

    spans = wait_for(complete, timeout_s=30)
    assert len({s.trace_id for s in spans}) == 1, "the run is split over several traces"
    names = {s.name for s in spans}
    assert "agentchord.run traced" in names
    assert {"agentchord.registry.begin_step", "agentchord.registry.finish_step"} <= names
    by_id = {s.span_id: s for s in spans}
    for model_call in (s for s in spans if s.name == "agentchord.model_call"):
        parent = by_id[model_call.parent_id]
        assert parent.attributes.get("agentchord.role") in {"reviewer", "merger"}  # the step's span
        assert int(model_call.attributes["agentchord.prompt_tokens"]) > 0  # type: ignore[arg-type]
    merge = next(
        s for s in spans if s.attributes.get("agentchord.step") == "merge" and "agentchord.role" in s.attributes
    )
    assert merge.name == "run/agents.merger" and int(merge.attributes["agentchord.prompt_tokens"]) > 0  # type: ignore[arg-type]
