"""How an agent task runs one step: claim, read context, run the body once, store the result.

Delivery is at least once (late acks, redelivery after a lost worker); completion is
effectively once: a step whose result is stored never runs its body again, and two copies
delivered at the same time are serialised by a lease on the step.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from celery import Task
from pydantic import BaseModel

from agents.base import AgentRole
from agents.context import StepContext
from agents.llm import MeteredModel, UsageMeter, model_for
from proj.celery import current_settings
from proj.errors import StepFailedError
from proj.registry import registry_for

logger = logging.getLogger(__name__)

# How often a second copy of a step re-checks while the first holds the lease.
_BUSY_POLL_MAX_S = 2.0


def execute_step(task: Task, role: AgentRole, run_id: str, step: str) -> dict[str, Any]:
    """The body of every agent task. Returns a small reference, never the output itself."""
    settings = current_settings()
    registry = registry_for(settings)
    token = f"{task.request.id}:{uuid.uuid4().hex[:12]}"
    outcome = registry.begin_step(run_id, step, token, task.request.hostname or "")
    if outcome.status == "busy":
        # Another delivery of this step is running it; look again when its lease may be over.
        countdown = min(max(outcome.retry_in_ms / 1000.0, 0.05), _BUSY_POLL_MAX_S)
        raise task.retry(countdown=countdown)
    if outcome.status != "run" or outcome.work is None:
        # "done": a duplicate delivery; "inactive"/"missing": the run ended or expired.
        logger.info("step %s of run %s not run: %s", step, run_id, outcome.status)
        return {"run_id": run_id, "step": step, "status": outcome.status}

    work = outcome.work
    meter = UsageMeter()
    context = StepContext(
        run_id=run_id,
        step=step,
        agent=role.name,
        input=work.input,
        dependencies=work.dependencies,
        params=work.plan.get("params", {}),
    ).with_model(MeteredModel(model_for(settings), meter))

    started = time.perf_counter()
    try:
        output = role.function(context)
        result_json = _to_json(output)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        registry.fail_step(run_id, step, token, error)
        raise StepFailedError(run_id, step, error) from exc
    body_s = time.perf_counter() - started

    registry.finish_step(
        run_id,
        step,
        token,
        result_json,
        {
            "body_s": f"{body_s:.6f}",
            "model_s": f"{meter.latency_s:.6f}",
            "model_calls": meter.calls,
            "prompt_tokens": meter.prompt_tokens,
            "completion_tokens": meter.completion_tokens,
            "context_bytes": work.context_bytes,
        },
    )
    return {"run_id": run_id, "step": step, "status": "succeeded"}


def _to_json(output: Any) -> str:
    if isinstance(output, BaseModel):
        return output.model_dump_json()
    try:
        return json.dumps(output, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"agent output must be a pydantic model or JSON-serializable, got {type(output).__name__}: {exc}"
        ) from exc
