"""The demo: the built-in ``code_review`` workflow on a sample diff, on a real local stack."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
from rich.console import Console
from rich.panel import Panel

from coordinator.engine.specs import builtin_workflow
from coordinator.engine.webhooks import signed_request
from coordinator.interfaces.runner import start
from coordinator.interfaces.stack import LocalStack
from coordinator.observation.report import render_html, timing_table
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
    """Start the stack, run ``code_review_gated`` on :data:`SAMPLE_DIFF`, approve it through the
    signed webhook, print each step's output and the timing table."""
    workflow = builtin_workflow("code_review_gated")
    roles = sorted({step.agent for step in workflow.steps if step.agent})
    latency = f"{settings.simulated_latency_ms:g} ms simulated latency per model call"
    console.print(
        f"[bold]agentchord demo[/]: starting Redis, one worker per role ({', '.join(roles)}), "
        f"a coordinator worker with the deadline beat, the API and Flower; offline model, {latency} ..."
    )
    with LocalStack(settings, roles) as stack:
        console.print(f"Redis {stack.settings.redis_url} | API {stack.api_url} | Flower {stack.flower_url}")
        run = start(workflow, input={"diff": SAMPLE_DIFF}, idempotency_key=None)
        console.print(f"started run [bold]{run.id}[/] ({workflow.name}); waiting for the approval gate ...")
        approval = run.wait_for_approval(timeout=timeout_s)
        console.print(
            Panel(
                f"{approval.prompt}\nshows: {', '.join(approval.context)}\nresume URL: {approval.resume_url}",
                title=f"run parked: {run.status().state}",
                expand=False,
            )
        )
        response = _approve_by_webhook(stack.settings, approval.resume_url)
        console.print(f"reviewer approved through the signed webhook: HTTP {response.status_code}")
        results = run.wait(timeout=timeout_s)
        for step in workflow.steps:
            body = json.dumps(results[step.name], indent=2)
            console.print(Panel(body, title=f"{step.name} ({step.agent or 'approval'})", expand=False))
        decided = run.approvals()[0]
        parked_s = (decided.decided_at or 0.0) - decided.requested_at
        status, timings = run.status(), run.timings()
        console.print(timing_table(status, timings))
        page = Path("demo-report.html")
        page.write_text(render_html([(status, timings)]))
        console.print(f"timeline written to {page.resolve()}")
        console.print(f"parked at the approval gate for {parked_s * 1000:.1f} ms (not counted as overhead)")
        console.print("stopping the stack ...")
    return 0


def _approve_by_webhook(settings: Settings, resume_url: str) -> httpx.Response:
    """What a Slack/e-mail bridge does: POST the decision, signed the Standard Webhooks way."""
    decision = {"decision": "approve", "comment": "tests and docs look right", "data": {"merge_note": "demo"}}
    body, headers = signed_request(settings, f"msg_{uuid.uuid4().hex}", decision)
    response = httpx.post(resume_url, content=body, headers=headers, timeout=30)
    response.raise_for_status()
    return response
