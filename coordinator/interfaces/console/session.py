"""Console login: an API token, exchanged once for a signed session cookie; CSRF tokens for forms.

The cookie (itsdangerous, timed) holds the token's *name* and a CSRF secret, never the token.
The name's scopes are looked up in the settings on every request, so removing a token from
``AGENTCHORD_API_TOKENS`` ends its sessions at the next request. The signing key derives from the
configured token secrets (or ``AGENTCHORD_CONSOLE_SECRET``): every API replica with the same
settings accepts the same cookies, and rotating the tokens logs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from proj.credentials import Identity
from proj.settings import Settings

COOKIE = "agentchord_session"


@dataclass(frozen=True)
class Session:
    who: Identity
    csrf: str


class Sessions:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        material = (
            settings.console_secret.get_secret_value()
            if settings.console_secret is not None
            else "\n".join(sorted(t.secret.get_secret_value() for t in settings.tokens))
        )
        key = hashlib.sha256(b"agentchord-console\n" + material.encode()).hexdigest()
        self._serializer = URLSafeTimedSerializer(key, salt="agentchord-console-session")

    def issue(self, who: Identity) -> str:
        """A new cookie value for ``who`` (with a fresh CSRF secret)."""
        return self._serializer.dumps({"name": who.name, "csrf": secrets.token_urlsafe(24)})

    def read(self, request: Request) -> Session | None:
        """The request's session, or None: no cookie, a bad or expired signature, or a token that
        is no longer configured."""
        raw = request.cookies.get(COOKIE)
        if not raw or not self.settings.tokens:
            return None
        try:
            payload = self._serializer.loads(raw, max_age=self.settings.console_session_ttl_s)
        except BadSignature:
            return None
        token = next((t for t in self.settings.tokens if t.name == payload.get("name")), None)
        if token is None:
            return None
        return Session(Identity(token.name, token.scopes), str(payload.get("csrf", "")))

    def csrf_ok(self, session: Session, request: Request, submitted: str) -> bool:
        """A form post is ours: its CSRF token matches the session's, and a browser that says
        where the form came from says it came from this site."""
        origin = request.headers.get("origin")
        if origin is not None and origin.rstrip("/") != _own_origin(request):
            return False
        return bool(submitted) and hmac.compare_digest(submitted, session.csrf)

    def secure(self) -> bool:
        return self.settings.public_url.startswith("https://")


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"
