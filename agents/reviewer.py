"""The reviewer role: reads a unified diff and flags concrete issues in the added lines."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

from agents.base import agent
from agents.context import StepContext
from agents.llm import Message
from agents.offline import offline_skill, shared_input

PROMPT = (
    "You are a senior code reviewer. Read the unified diff and answer JSON matching the schema: "
    "every concrete issue in the added lines with file, line, severity and a one-line message."
)

Severity = Literal["low", "medium", "high"]


class Finding(BaseModel):
    file: str
    line: int
    severity: Severity
    rule: str
    message: str


class ReviewOutput(BaseModel):
    summary: str
    findings: list[Finding]
    approve: bool


# (rule, pattern over an added line, severity, message)
_RULES: list[tuple[str, re.Pattern[str], Severity, str]] = [
    ("bare-except", re.compile(r"^\s*except\s*:"), "high", "bare `except:` swallows every error"),
    ("eval", re.compile(r"\b(eval|exec)\("), "high", "`eval`/`exec` on dynamic input"),
    (
        "hardcoded-secret",
        re.compile(r"(password|passwd|secret|api_key|token)\s*=\s*['\"][^'\"]+['\"]", re.I),
        "high",
        "hard-coded secret",
    ),
    ("star-import", re.compile(r"^\s*from\s+\S+\s+import\s+\*"), "medium", "wildcard import"),
    ("none-compare", re.compile(r"[!=]=\s*None\b"), "low", "compare with `is None`"),
    ("debug-print", re.compile(r"^\s*print\("), "low", "debug print left in"),
    ("todo", re.compile(r"\b(TODO|FIXME|XXX)\b"), "low", "unresolved TODO"),
]
_MAX_LINE = 100


def find_issues(diff: str) -> list[Finding]:
    """Walk the diff's added lines and apply each rule."""
    findings: list[Finding] = []
    path, line_no = "?", 0
    for raw in diff.splitlines():
        if raw.startswith("+++ "):
            path = raw[4:].removeprefix("b/").strip()
        elif raw.startswith("@@"):
            match = re.search(r"\+(\d+)", raw)
            line_no = int(match.group(1)) - 1 if match else 0
        elif raw.startswith("+"):
            line_no += 1
            added = raw[1:]
            for rule, pattern, severity, message in _RULES:
                if pattern.search(added):
                    findings.append(Finding(file=path, line=line_no, severity=severity, rule=rule, message=message))
            if len(added) > _MAX_LINE:
                findings.append(
                    Finding(
                        file=path,
                        line=line_no,
                        severity="low",
                        rule="long-line",
                        message=f"line over {_MAX_LINE} chars",
                    )
                )
        elif not raw.startswith("-"):
            line_no += 1
    return findings


@offline_skill("reviewer")
def review_offline(messages: list[Message]) -> ReviewOutput:
    # The diff: from the run's input in the shared context, or a plain-text prompt's last message.
    findings = find_issues(str(shared_input(messages).get("diff") or messages[-1].content))
    high = sum(f.severity == "high" for f in findings)
    summary = f"{len(findings)} issue(s), {high} high severity" if findings else "no issues found"
    return ReviewOutput(summary=summary, findings=findings, approve=high == 0)


@agent("reviewer", prompt=PROMPT)
def review(ctx: StepContext) -> ReviewOutput:
    """Review ``input.diff``."""
    reply = ctx.model.complete(
        ctx.prompt(PROMPT),  # the diff is the run's input: in the shared context
        task="reviewer",
        json_schema=ReviewOutput.model_json_schema(),
    )
    return ReviewOutput.model_validate_json(reply.text)
