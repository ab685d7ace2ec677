"""The test_writer role: a pytest skeleton per added function and a regression test per
high-severity review finding."""

from __future__ import annotations

from pydantic import BaseModel

from agents.base import agent
from agents.context import StepContext
from agents.diffs import added_functions
from agents.llm import Message
from agents.offline import offline_skill, prompt_context

PROMPT = "You write pytest tests for the functions a diff adds and for each blocking review finding."


class TestCase(BaseModel):
    name: str
    target: str
    code: str


class TestsOutput(BaseModel):
    tests: list[TestCase]
    blocking: list[str]
    # A compact count for steps that need how many tests, not their code (`uses: {tests: [count]}`).
    count: int = 0


@offline_skill("test_writer")
def write_tests_offline(messages: list[Message]) -> TestsOutput:
    context = prompt_context(messages)
    tests = []
    for fn in added_functions(str(context.get("diff", ""))):
        args = ", ".join("None" for _ in fn.params)
        code = f"def test_{fn.name}_runs():\n    result = {fn.name}({args})\n    assert result is not None\n"
        tests.append(TestCase(name=f"test_{fn.name}_runs", target=fn.name, code=code))
    blocking = []
    for finding in context.get("review", {}).get("findings", []):
        if finding.get("severity") == "high":
            where = f"{finding['file']}:{finding['line']}"
            blocking.append(f"{where} {finding['message']}")
            name = f"test_regression_{finding['rule'].replace('-', '_')}_line_{finding['line']}"
            code = f"def {name}():\n    # guards {where}: {finding['message']}\n    ...\n"
            tests.append(TestCase(name=name, target=where, code=code))
    return TestsOutput(tests=tests, blocking=blocking, count=len(tests))


@agent("test_writer", prompt=PROMPT)
def write_tests(ctx: StepContext) -> TestsOutput:
    """Tests for ``input.diff``, guided by the review it depends on."""
    outputs = ctx.dependencies.values()
    review = next((o for o in outputs if isinstance(o, dict) and "findings" in o), {})
    reply = ctx.model.complete(
        ctx.prompt(PROMPT, {"review": review}, inject=("review",)),
        task="test_writer",
        json_schema=TestsOutput.model_json_schema(),
    )
    return TestsOutput.model_validate_json(reply.text)
