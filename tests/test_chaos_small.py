"""The chaos benchmark in small: real SIGKILLs and a Redis restart lose nothing, duplicate nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_small_chaos_run_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    command = [sys.executable, "bench/chaos.py", "--runs", "30", "--kill-every", "1", "--out", str(out)]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["submitted"] == 30 and result["redis_restarts"] == 1
    assert result["kills"] > 0
    assert result["lost"] == 0, result
    assert result["duplicate_step_completions"] == 0
    assert result["duplicate_fan_in_dispatches"] == 0
