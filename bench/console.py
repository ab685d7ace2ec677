"""The console's run explorer with 100,000 runs in Redis: server time per page.

Fills a private Redis with ``--runs`` run records and their index entries (the records `start`
writes, written directly: 100,000 real runs would measure the workers, not the page), 1% of them
failed, then times the console's pages in-process (FastAPI's TestClient: server time, no
network): the newest page, a filtered page (the 1% state), a page 50,000 runs deep (by cursor),
and a run found by its idempotency key. Median and P95 of ``--repeat`` requests each.

    python bench/console.py
    python bench/console.py --runs 10000 --repeat 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi.testclient import TestClient
from pydantic import SecretStr

from bench.harness import command_line, exit_now, machine, percentile, print_table, write_json
from coordinator.interfaces.api import create_app
from proj.redis_server import RedisServer
from proj.registry import registry_for
from proj.settings import Settings

TOKEN = "bench-console-token-0123456789"


def fill(settings: Settings, runs: int) -> str:
    """``runs`` run records, newest last; returns the score of the run in the middle."""
    registry = registry_for(settings)
    base = time.time() - runs
    with registry.client.pipeline(transaction=False) as pipe:
        for n in range(runs):
            run_id = f"run{n:08d}"
            state = "failed" if n % 100 == 0 else "succeeded"
            created = base + n
            pipe.hset(
                registry.run_keys(run_id).run,
                mapping={"id": run_id, "workflow": f"wf{n % 7}", "state": state, "created_at": f"{created:.6f}",
                         "finished_at": f"{created + 0.5:.6f}"},
            )  # fmt: skip
            pipe.zadd(registry.keys.runs_index, {run_id: created})
            if n == runs // 3:
                pipe.set(registry.keys.idempotency("pr-bench"), f"{run_id} fingerprint")
            if n % 1000 == 999:
                pipe.execute()
        pipe.execute()
    return f"{base + runs // 2!r}|run{runs // 2:08d}"


def timed(client: TestClient, path: str, params: dict[str, str], repeat: int) -> tuple[list[float], int]:
    samples = []
    status = 0
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(path, params=params, follow_redirects=False)
        samples.append(time.perf_counter() - began)
        status = response.status_code
    return samples, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--out", default="bench/results/console.json")
    args = parser.parse_args()
    with RedisServer() as server:
        settings = Settings(redis_url=server.url, api_tokens=(SecretStr(TOKEN),))
        began = time.perf_counter()
        middle = fill(settings, args.runs)
        filled_s = time.perf_counter() - began
        client = TestClient(create_app(settings))
        client.post("/ui/login", data={"token": TOKEN}, follow_redirects=False)
        cases = [
            ("newest 50 runs", {}),
            ("failed runs (1% of them), first 50", {"state": "failed"}),
            ("50 runs, 50,000 deep (cursor)", {"cursor": middle}),
            ("find by idempotency key", {"find": "pr-bench"}),
        ]
        rows: list[list[Any]] = []
        result: dict[str, Any] = {"command": command_line(), "runs": args.runs, "fill_s": round(filled_s, 1)}
        for label, params in cases:
            samples, status = timed(client, "/ui/runs", params, args.repeat)
            p50, p95 = statistics.median(samples) * 1000, percentile(samples, 95) * 1000
            rows.append([label, status, f"{p50:.1f}", f"{p95:.1f}"])
            result[label] = {"status": status, "p50_ms": p50, "p95_ms": p95}
    print(f"\nConsole run explorer over {args.runs:,} runs in Redis, {args.repeat} requests each (server time)\n")
    print_table(["page", "status", "P50 ms", "P95 ms"], rows)
    write_json(args.out, {**result, **machine()})


if __name__ == "__main__":
    main()
    exit_now()
