"""Agent roles and the model layer. Never imports ``coordinator``.

Built-in roles: reviewer, test_writer, doc_generator, merger, router, validator. Importing this
package registers them (and their Celery tasks ``agents.<role>``).
"""

from agents import collapsed, doc_generator, merger, reviewer, router, test_writer, validator
from agents.backends import model_for, register_backend
from agents.base import agent, get_role, known_roles, output_fields, role_defaults
from agents.context import StepContext
from agents.handoff import HandoffRecord, RejectedApproach, StepOutcome
from agents.llm import ChatModel, Completion, Message
from agents.offline import OfflineModel, offline_skill
from agents.role import AgentRole, load_agent_modules

# The role modules are imported for their registrations.
_BUILT_IN_ROLES = (collapsed, doc_generator, merger, reviewer, router, test_writer, validator)

__all__ = [
    "AgentRole",
    "ChatModel",
    "Completion",
    "HandoffRecord",
    "Message",
    "OfflineModel",
    "RejectedApproach",
    "StepContext",
    "StepOutcome",
    "agent",
    "get_role",
    "known_roles",
    "load_agent_modules",
    "model_for",
    "offline_skill",
    "output_fields",
    "register_backend",
    "role_defaults",
]
