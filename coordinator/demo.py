"""The demo: the built-in ``code_review`` workflow on a sample diff, on a real local stack."""

from __future__ import annotations

import json

from rich.console import Console
from rich.panel import Panel

from coordinator.report import timing_table
from coordinator.runner import start
from coordinator.specs import builtin_workflow
from coordinator.stack import LocalStack
from proj.settings import Settings

SAMPLE_DIFF = '''\
--- a/billing/invoice.py
+++ b/billing/invoice.py
@@ -1,6 +1,24 @@
 from decimal import Decimal
+from billing.rates import *
+
+API_KEY = "sk-live-4f9a2c"
+
+
+def apply_discount(total, percent):
+    """Return total reduced by percent, never below zero."""
+    if percent == None:
+        return total
+    return max(total - total * Decimal(percent) / 100, Decimal(0))
+
+
+def parse_amount(text):
+    try:
+        return Decimal(text)
+    except:
+        print("bad amount", text)
+        return Decimal(0)  # TODO: raise instead


 def total(lines):
     return sum(line.amount for line in lines)
'''


def run_demo(settings: Settings, console: Console, timeout_s: float = 120.0) -> int:
    """Start the stack, run ``code_review`` on :data:`SAMPLE_DIFF`, print outputs and timings."""
    workflow = builtin_workflow("code_review")
    roles = sorted({step.agent for step in workflow.steps if step.agent})
    console.print(
        f"[bold]agentchord demo[/]: starting Redis, one worker per role ({', '.join(roles)}), "
        "a coordinator worker and Flower ..."
    )
    with LocalStack(settings, roles) as stack:
        console.print(f"Redis {stack.settings.redis_url} | Flower {stack.flower_url}")
        run = start(workflow, input={"diff": SAMPLE_DIFF}, idempotency_key=None)
        console.print(f"started run [bold]{run.id}[/]; waiting ...")
        results = run.wait(timeout=timeout_s)
        for step in workflow.steps:
            body = json.dumps(results[step.name], indent=2)
            console.print(Panel(body, title=f"{step.name} ({step.agent})", expand=False))
        console.print(timing_table(run.status(), run.timings()))
        console.print("stopping the stack ...")
    return 0
