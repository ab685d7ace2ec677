"""Which model a role calls: the backends by name, and one built model per process and role.

The built-in backends (``offline``, ``openai``) are registered here; a user's backend registers
itself with :func:`register_backend` under the name ``AGENTCHORD_LLM_BACKEND`` then selects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from agents import offline, openai_backend
from agents.llm import ChatModel
from proj.errors import ConfigurationError
from proj.settings import Settings

# Builds a backend for one model name (the role's, or AGENTCHORD_LLM_MODEL).
BackendFactory = Callable[[Settings, str], ChatModel]
_BACKENDS: dict[str, BackendFactory] = {}
_lock = threading.Lock()


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make ``AGENTCHORD_LLM_BACKEND=name`` build its models with ``factory(settings, model)``."""
    _BACKENDS[name] = factory


def model_for(settings: Settings, role: str | None = None) -> ChatModel:
    """The model a role calls (per-role backend and model overrides), built once per process."""
    backend = settings.role_backends.get(role or "", settings.llm_backend)
    model = settings.role_models.get(role or "", settings.llm_model)
    key = (settings, backend, model)
    with _lock:
        cached = _built.get(key)
        if cached is None:
            factory = _BACKENDS.get(backend)
            if factory is None:
                known = ", ".join(sorted({*_BACKENDS, "openai"}))
                raise ConfigurationError(f"unknown model backend {backend!r} (AGENTCHORD_LLM_BACKEND); known: {known}")
            cached = _built[key] = factory(settings, model)
        return cached


_built: dict[tuple[Settings, str, str], ChatModel] = {}


register_backend("offline", offline.build)
register_backend("openai", openai_backend.build)
