"""Outbound approval notifications: a signed JSON POST per configured URL (Slack/e-mail bridges).

Delivery runs as the ``coordinator.notify_approval`` task on the ``notifications`` queue, is
retried with exponential backoff on 5xx, timeouts and connection errors, and every attempt is
recorded in the run's event log (with the URL's path redacted: webhook URLs often embed secrets).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx

from coordinator.engine.checkpoints import ApprovalId, get_approval
from coordinator.engine.links import decision_link
from coordinator.engine.webhooks import signed_request
from proj.redaction import redact_url
from proj.registry import Registry

SUMMARY_CHARS = 300


class TransientDeliveryError(Exception):
    """A delivery worth retrying (5xx, timeout, connection refused)."""


def payload_for(registry: Registry, aid: str, event: str) -> dict[str, Any]:
    view = get_approval(registry, registry.settings, aid)
    extra: dict[str, Any] = {}
    if event == "approval.requested":
        # Whoever receives this may decide this one approval in the console, once, until its deadline.
        extra["decide_url"] = decision_link(registry.settings, view)
    return {
        "type": event,
        "approval_id": view.id,
        "run_id": view.run_id,
        "workflow": view.workflow,
        "step": view.step,
        "prompt": view.prompt,
        "context_summary": {step: json.dumps(out)[:SUMMARY_CHARS] for step, out in view.context.items()},
        "data_schema": view.data_schema,
        "deadline": view.deadline,
        "on_timeout": view.on_timeout,
        "resume_url": view.resume_url,
        **extra,
    }


def deliver(registry: Registry, aid: str, url: str, event: str, attempt: int, timeout_s: float = 10.0) -> int:
    """POST one notification; returns the HTTP status, raises :class:`TransientDeliveryError`."""
    run_id = ApprovalId.parse(aid).run_id
    # One message id per (approval, event, URL), the same on every retry, as the scheme asks.
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    body, headers = signed_request(registry.settings, f"msg_{aid}_{event}_{digest}", payload_for(registry, aid, event))
    where = redact_url(url)
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        registry.add_event(run_id, "notification_attempt", url=where, attempt=str(attempt), error=type(exc).__name__)
        raise TransientDeliveryError(f"{type(exc).__name__} posting to {where}") from None
    registry.add_event(
        run_id, "notification_attempt", url=where, attempt=str(attempt), status=str(response.status_code)
    )
    if response.status_code >= 500:
        raise TransientDeliveryError(f"{where} answered {response.status_code}")
    kind = "notification_delivered" if response.status_code < 300 else "notification_failed"
    registry.add_event(run_id, kind, url=where, status=str(response.status_code), event=event)
    return response.status_code
