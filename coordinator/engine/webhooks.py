"""Standard Webhooks in and out, and bearer tokens: who may resume a run.

Inbound requests carry either ``Authorization: Bearer <token>`` (simple setups) or the Standard
Webhooks headers ``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` (HMAC-SHA256 over
``id.timestamp.body``, verified by the ``standardwebhooks`` package) within a timestamp
tolerance, with each ``webhook-id`` accepted once (the replay store in Redis). Every configured
secret and token is tried, so old and new both work during a rotation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from proj.credentials import SCOPES, Identity, identify
from proj.errors import AuthenticationError, ConfigurationError, ReplayedWebhookError
from proj.registry import Registry
from proj.settings import Settings


def authenticate(
    headers: Mapping[str, str], body: bytes, settings: Settings, registry: Registry, *, spend: bool = True
) -> Identity:
    """Return who is calling (a token's name and scopes, or ``webhook:<id>`` with every scope: the
    signature proves a configured secret) or raise :class:`AuthenticationError`.
    ``spend=False``: a signed request's webhook-id is checked but not yet spent (the caller
    spends it with :func:`spend_webhook_id` once the body is valid)."""
    authorization = headers.get("authorization", "")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("Authorization header must be 'Bearer <token>'")
        identity = identify(token, settings.tokens)
        if identity is not None:
            return identity
        raise AuthenticationError("unknown bearer token")
    webhook_id = headers.get("webhook-id")
    if not webhook_id:
        raise AuthenticationError("send a bearer token or Standard Webhooks signature headers")
    _verify_signature(headers, body, settings)
    if registry.webhook_id_seen(webhook_id):
        raise ReplayedWebhookError(webhook_id)
    who = Identity(f"webhook:{webhook_id}", SCOPES)
    if spend:
        spend_webhook_id(who.name, settings, registry)
    return who


def spend_webhook_id(who: str, settings: Settings, registry: Registry) -> None:
    """Record a signed request's webhook-id as used (a bearer caller has none): the first to spend
    it wins, a replay gets :class:`ReplayedWebhookError`."""
    scheme, _, webhook_id = who.partition(":")
    if scheme == "webhook" and not registry.claim_webhook_id(webhook_id, ttl_s=2 * settings.webhook_tolerance_s):
        raise ReplayedWebhookError(webhook_id)


def _verify_signature(headers: Mapping[str, str], body: bytes, settings: Settings) -> None:
    if not settings.webhook_secrets:
        raise AuthenticationError("no webhook secret is configured (AGENTCHORD_WEBHOOK_SECRETS)")
    try:
        sent_at = float(headers.get("webhook-timestamp", ""))
    except ValueError:
        raise AuthenticationError("webhook-timestamp is missing or not a number") from None
    if abs(time.time() - sent_at) > settings.webhook_tolerance_s:
        raise AuthenticationError(f"webhook-timestamp is more than {settings.webhook_tolerance_s}s from now")
    plain = {name: headers.get(name, "") for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    for secret in settings.webhook_secrets:
        try:
            Webhook(secret.get_secret_value()).verify(body, plain, json_parse=False)
            return
        # The library raises ValueError/binascii.Error/UnicodeDecodeError on malformed input
        # as well as WebhookVerificationError; every one of them means "not verified".
        except Exception:
            continue
    raise AuthenticationError("webhook-signature does not match any configured secret")


def signed_request(settings: Settings, message_id: str, payload: Any) -> tuple[bytes, dict[str, str]]:
    """Body and headers of an outbound Standard Webhooks request, signed with the first secret."""
    if not settings.webhook_secrets:
        raise ConfigurationError("signing a webhook needs AGENTCHORD_WEBHOOK_SECRETS")
    body = json.dumps(payload, separators=(",", ":"))
    now = datetime.now(tz=UTC)
    signature = Webhook(settings.webhook_secrets[0].get_secret_value()).sign(message_id, now, body)
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    return body.encode(), headers
