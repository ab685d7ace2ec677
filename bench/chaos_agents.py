"""The chaos benchmark's agent: sleeps a random 0-200 ms, like a short model call."""

from __future__ import annotations

import random
import time
from typing import Any

from agents import StepContext, agent


@agent("chaos")
def chaos(ctx: StepContext) -> dict[str, Any]:
    slept_ms = random.uniform(0, float(ctx.params.get("max_ms", 200)))
    time.sleep(slept_ms / 1000)  # simulated work, on purpose
    return {"step": ctx.step, "slept_ms": round(slept_ms, 1), "saw": sorted(ctx.dependencies)}
