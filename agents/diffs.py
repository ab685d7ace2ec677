"""Reading Python function definitions out of a unified diff (shared by test and doc roles)."""

from __future__ import annotations

import re

from pydantic import BaseModel

_DEF = re.compile(r"^\+\s*(?:async\s+)?def\s+(\w+)\s*\(([^)]*)\)")
_DOC = re.compile(r'^\+\s*(?:"""|\'\'\')(.*?)(?:"""|\'\'\')?\s*$')


class AddedFunction(BaseModel):
    name: str
    params: list[str]
    doc: str = ""


def added_functions(diff: str) -> list[AddedFunction]:
    """Functions whose ``def`` line is added by ``diff``, with their first docstring line."""
    found: list[AddedFunction] = []
    lines = diff.splitlines()
    for index, line in enumerate(lines):
        match = _DEF.match(line)
        if not match:
            continue
        params = [p.split(":")[0].split("=")[0].strip() for p in match.group(2).split(",")]
        params = [p for p in params if p and p not in ("self", "cls") and not p.startswith("*")]
        doc = ""
        if index + 1 < len(lines):
            doc_match = _DOC.match(lines[index + 1])
            doc = doc_match.group(1).strip() if doc_match else ""
        found.append(AddedFunction(name=match.group(1), params=params, doc=doc))
    return found
