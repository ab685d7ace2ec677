"""What of a URL may be logged or stored: scheme, host and port. Never credentials, the path
(webhook paths often carry tokens) or the query string."""

from __future__ import annotations

from urllib.parse import urlsplit


def redact_url(url: str) -> str:
    """``https://user:pw@hooks.example/T0K3N?key=s`` -> ``https://hooks.example/…``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    hidden = parts.path not in ("", "/") or parts.query or parts.fragment
    return f"{parts.scheme}://{host}{port}/{'…' if hidden else ''}"


def url_host(url: str) -> str:
    """``host[:port]`` of a URL (no credentials): a name for a provider in keys and messages."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}" or "(no host)"
    except ValueError:
        return "(unparsable URL)"
