"""A validator gate's loop: hold a candidate, promote it, or start the next round."""

from __future__ import annotations

import json
from typing import Any

from proj.registry._base import RegistryBase


class ValidationMixin(RegistryBase):
    """A validator gate's loop: hold a candidate, promote it, or start the next round."""

    def hold_candidate(self, run_id: str, step: str, result_json: str, metadata: dict[str, Any]) -> int:
        """Keep a low-confidence output as the step's candidate (not its result); returns the
        round, or 0 if the step's state does not allow it (the refusal is in the event log)."""
        args: list[Any] = [step, result_json]
        for name, value in metadata.items():
            args += [name, value]
        keys = [*self._base(run_id), self.run_keys(run_id).claim(step)]
        return int(self._hold_candidate(keys=keys, args=args))

    def validation_state(self, run_id: str, step: str) -> tuple[str | None, int, list[str]]:
        """(candidate JSON, round, the last critique's issues) of a validated step."""
        candidate, round_no, feedback = self.client.hmget(
            self.run_keys(run_id).steps, [f"{step}.candidate", f"{step}.round", f"{step}.feedback"]
        )
        return candidate, int(round_no or 1), json.loads(feedback) if feedback else []

    def promote_candidate(self, run_id: str, step: str, check: str, verdict_json: str) -> bool:
        """The validator passed it: the candidate becomes the step's result (once)."""
        keys = [*self._base(run_id), self.run_keys(run_id).claim(check)]
        return bool(self._promote(keys=keys, args=[step, check, verdict_json]))

    def next_round(self, run_id: str, step: str, check: str, issues: list[str]) -> int:
        """The validator failed it: the generator runs again with the critique; the new round
        (0: the step was not waiting for a verdict). The validator step is left ``judged``."""
        keys = [*self._base(run_id), self.run_keys(run_id).claim(check)]
        return int(self._next_round(keys=keys, args=[step, check, json.dumps(issues)]))
