"""API tokens with names and scopes, parsed once from ``AGENTCHORD_API_TOKENS``.

Each comma-separated entry is ``name:scope+scope:secret`` (e.g. ``ci:start+read:...``) or a bare
secret (name ``token``, every scope, as before names existed). Scopes: ``start`` (start runs),
``read`` (runs, approvals), ``approve`` (decide approvals), ``operate`` (retry, skip, abort, cancel).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from pydantic import SecretStr

SCOPES = frozenset({"start", "read", "approve", "operate"})


@dataclass(frozen=True)
class Identity:
    """Who a request is: a token's name (recorded as ``decided_by`` and ``actor``) and its scopes."""

    name: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class ApiToken:
    name: str
    scopes: frozenset[str]
    secret: SecretStr


def parse_token(entry: SecretStr) -> ApiToken:
    """One ``AGENTCHORD_API_TOKENS`` entry; raises ValueError naming what is wrong (never the secret)."""
    raw = entry.get_secret_value()
    parts = raw.split(":", 2)
    if len(parts) < 3:
        return ApiToken("token", SCOPES, entry)
    name, scopes_text, secret = parts
    scopes = frozenset(scope for scope in scopes_text.split("+") if scope)
    if not name or not scopes or not scopes <= SCOPES:
        raise ValueError(f"token {name!r}: write name:scope+scope:secret with scopes from {', '.join(sorted(SCOPES))}")
    return ApiToken(name, scopes, SecretStr(secret))


def identify(token: str, tokens: tuple[ApiToken, ...]) -> Identity | None:
    """The identity whose secret is ``token`` (constant-time comparison with every one), or None."""
    found = None
    for candidate in tokens:
        if hmac.compare_digest(token.encode(), candidate.secret.get_secret_value().encode()):
            found = Identity(candidate.name, candidate.scopes)
    return found
