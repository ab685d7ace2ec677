"""Decision links: a URL in an ``approval.requested`` notification that lets whoever holds it
decide that one approval in the console without a token. Signed (itsdangerous, with a key derived
from the webhook secrets that sign the notification itself), expiring at the gate's deadline (or
after ``LINK_TTL_S`` for a gate without one), and single-use: the first decision spends it.
A gate with ``deciders`` refuses link decisions (the link names no one).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

from coordinator.engine.checkpoints import ApprovalView
from proj.registry import Registry
from proj.settings import Settings

LINK_TTL_S = 7 * 86400
LINK_ACTOR = "decision-link"


@dataclass(frozen=True)
class LinkClaim:
    approval_id: str
    nonce: str
    expires_at: float


def _serializer(settings: Settings) -> URLSafeSerializer | None:
    if not settings.webhook_secrets:
        return None  # nothing to sign with: notifications carry no link
    material = "\n".join(sorted(secret.get_secret_value() for secret in settings.webhook_secrets))
    key = hashlib.sha256(b"agentchord-decision-link\n" + material.encode()).hexdigest()
    return URLSafeSerializer(key, salt="agentchord-decision-link")


def decision_link(settings: Settings, view: ApprovalView) -> str | None:
    """A new link for ``view`` (None when no webhook secret is configured)."""
    serializer = _serializer(settings)
    if serializer is None:
        return None
    expires = view.deadline or view.requested_at + LINK_TTL_S
    token = serializer.dumps({"aid": view.id, "exp": expires, "nonce": secrets.token_urlsafe(12)})
    return f"{settings.public_url.rstrip('/')}/ui/decide/{token}"


def read_link(settings: Settings, token: str) -> LinkClaim | None:
    """The link's claim if it is ours and has not expired; None otherwise."""
    serializer = _serializer(settings)
    if serializer is None:
        return None
    try:
        payload = serializer.loads(token)
    except BadSignature:
        return None
    claim = LinkClaim(str(payload.get("aid", "")), str(payload.get("nonce", "")), float(payload.get("exp", 0)))
    return claim if claim.expires_at > time.time() else None


def link_spent(registry: Registry, claim: LinkClaim) -> bool:
    return bool(registry.client.exists(_spent_key(registry, claim)))


def spend_link(registry: Registry, claim: LinkClaim) -> bool:
    """Mark the link used; True for the first use only."""
    ttl = max(int(claim.expires_at - time.time()) + 60, 60)
    return bool(registry.client.set(_spent_key(registry, claim), "1", nx=True, ex=ttl))


def _spent_key(registry: Registry, claim: LinkClaim) -> str:
    return f"{registry.settings.key_prefix}:link-spent:{claim.nonce}"
