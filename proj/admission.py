"""Admission: how many runs of a tenant and of a workflow may run at once, and who goes next.

A run started over its tenant's or its workflow's limit of running runs is created ``queued``:
nothing is dispatched, and it waits in its tenant's admission queue in Redis. Tenants with queued
runs take turns (round robin): whichever process ends a run frees its slot and, in the same Lua
script, admits the queued runs that fit now (proj/lua/prelude.lua, ``admit_waiting``). No process
schedules admissions; the watchdog's sweep only dispatches admitted runs nobody dispatched (their
admitter died between the two). A parked run (waiting for an approval or an operator) holds its
slot: it is running work that has not ended.
"""

from __future__ import annotations

from dataclasses import dataclass

from proj.errors import InvalidStartOptionError
from proj.settings import TENANT_PATTERN, TENANT_RULE, Settings

DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Admission:
    """What a start passes to the run's creation: its tenant, its limits, the admission order."""

    tenant: str
    tenant_limit: int | None
    workflow_limit: int | None
    order: str

    @property
    def counted(self) -> bool:
        return self.tenant_limit is not None or self.workflow_limit is not None

    def args(self) -> list[str]:
        limit = ("" if value is None else str(value) for value in (self.tenant_limit, self.workflow_limit))
        return [self.tenant, *limit, self.order]


def admission_for(settings: Settings, tenant: str | None, workflow: str) -> Admission:
    """The admission of a run of ``workflow`` started for ``tenant`` (None: the default tenant);
    a malformed tenant name is :class:`InvalidStartOptionError`."""
    name = DEFAULT_TENANT if tenant is None else tenant
    if not isinstance(name, str) or not TENANT_PATTERN.fullmatch(name):
        raise InvalidStartOptionError("tenant", f"{name!r} is not a tenant name ({TENANT_RULE})")
    return Admission(
        tenant=name,
        tenant_limit=settings.tenant_limits.get(name, settings.max_running_per_tenant),
        workflow_limit=settings.workflow_limits.get(workflow, settings.max_running_per_workflow),
        order=settings.admission_order,
    )
