"""The chaos benchmark's agent: sleeps a random 0-200 ms, like a short model call.

With ``model_calls`` in its params (``bench/chaos.py --tenants``) it also makes that many calls
through ``ctx.model`` (the offline backend: no network), so a run's budget counts them.
"""

from __future__ import annotations

import random
import time
from typing import Any

from agents import Message, StepContext, agent


@agent("chaos")
def chaos(ctx: StepContext) -> dict[str, Any]:
    calls = int(ctx.params.get("model_calls", 0))
    for call in range(calls):
        # Refused past a hard limit of the run's budget: the run then ends budget_exceeded.
        ctx.model.complete([Message.user(f"chaos step {ctx.step} call {call}")], task="chaos")
    slept_ms = random.uniform(0, float(ctx.params.get("max_ms", 200)))
    time.sleep(slept_ms / 1000)  # simulated work, on purpose
    return {"step": ctx.step, "slept_ms": round(slept_ms, 1), "saw": sorted(ctx.dependencies), "model_calls": calls}
