"""A role that a later deploy removes (tests/test_versions.py): only the test process and the
"v1" deployment import this module; the workers and the "v2" API do not."""

from __future__ import annotations

from typing import Any

from agents import StepContext, agent


@agent("archiver")
def archiver(ctx: StepContext) -> dict[str, Any]:
    return {"archived": sorted(ctx.dependencies)}
