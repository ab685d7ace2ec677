"""Worker-side code of bench/failover.py: the agent, and a ledger kept outside Redis.

A failover can roll Redis back (asynchronous replication), and the registry's own records roll
back with it, so the benchmark keeps its ledger where no failover reaches: one JSON-lines file
per process under ``$AGENTCHORD_BENCH_FAILOVER_LEDGER``. Every line is one fact, with the
process's wall clock (all processes run on one machine):

- ``body``: an agent body started (run, step, the nonce its output will carry, and the nonces
  of the dependency results it was given);
- ``finish``: ``Registry.finish_step`` returned (stored or refused, the successors it claimed)
  or raised (the result may or may not have been stored: the reply was lost);
- ``claim``: ``Registry.claim_dispatch`` claimed steps (the watchdog's re-drive, start's dispatch).

The last two are recorded by wrapping those two registry methods in this process: benchmark
instrumentation, loaded only by the benchmark's workers (``agent_modules``) and the benchmark
process itself; nothing changes what the methods do.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from pathlib import Path
from typing import Any

from agents import StepContext, agent
from proj.plan import RunPlan
from proj.registry import FinishOutcome, Registry

LEDGER_ENV = "AGENTCHORD_BENCH_FAILOVER_LEDGER"


def record(kind: str, **fields: Any) -> None:
    """Append one fact to this process's ledger file (nothing when the variable is unset)."""
    directory = os.environ.get(LEDGER_ENV)
    if not directory:
        return
    line = json.dumps({"kind": kind, "at": time.time(), "pid": os.getpid(), **fields})
    # One short O_APPEND write per fact, flushed by the close: a crash loses nothing written.
    with (Path(directory) / f"{os.getpid()}.jsonl").open("a") as out:
        out.write(line + "\n")


@agent("failover")
def failover_agent(ctx: StepContext) -> dict[str, Any]:
    """Sleeps a random 0-200 ms, like a short model call; its output carries a nonce (one per
    body execution) and the nonces of the dependency results it saw."""
    nonce = uuid.uuid4().hex[:16]
    saw = {dep: out.get("nonce") if isinstance(out, dict) else None for dep, out in ctx.dependencies.items()}
    record("body", run=ctx.run_id, step=ctx.step, nonce=nonce, attempt=ctx.attempt, saw=saw)
    slept_ms = random.uniform(0, float(ctx.params.get("max_ms", 200)))
    time.sleep(slept_ms / 1000)  # simulated work, on purpose
    return {"step": ctx.step, "nonce": nonce, "saw": saw, "slept_ms": round(slept_ms, 1)}


_finish_step = Registry.finish_step
_claim_dispatch = Registry.claim_dispatch


def _nonce_of(result_json: str) -> str | None:
    try:
        value = json.loads(result_json)
    except ValueError:
        return None
    nonce = value.get("nonce") if isinstance(value, dict) else None
    return str(nonce) if nonce is not None else None


def _recorded_finish_step(
    self: Registry,
    run_id: str,
    step: str,
    result_json: str,
    metadata: dict[str, Any],
    plans: RunPlan,
    **options: Any,
) -> FinishOutcome:
    nonce = _nonce_of(result_json)
    try:
        outcome = _finish_step(self, run_id, step, result_json, metadata, plans, **options)
    except Exception as exc:
        record("finish", run=run_id, step=step, nonce=nonce, error=f"{type(exc).__name__}: {exc}"[:200])
        raise
    claimed = [name for name, _ in outcome.claimed]
    record("finish", run=run_id, step=step, nonce=nonce, stored=outcome.stored, claimed=claimed)
    return outcome


def _recorded_claim_dispatch(self: Registry, run_id: str, steps: list[str]) -> list[str]:
    claimed = _claim_dispatch(self, run_id, steps)
    if claimed:
        record("claim", run=run_id, claimed=list(claimed))
    return claimed


setattr(Registry, "finish_step", _recorded_finish_step)  # noqa: B010  (instrumentation, see above)
setattr(Registry, "claim_dispatch", _recorded_claim_dispatch)  # noqa: B010
