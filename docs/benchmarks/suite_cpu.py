"""The test suite's cost per test in CPU seconds (the test process and the subprocesses it waited for), a measure
that other work on the machine barely moves, unlike wall time: for finding what makes the suite slow on a machine
where it is slow (the guide: ~22 min on AMD EPYC Zen 3, target 15), while a study runs beside it.

As a pytest plugin (one JSON line per test into $SUITE_CPU_DIR, default docs/benchmarks/suite-cpu/):
    PYTHONPATH=docs/benchmarks SUITE_CPU_TAG=mytag python -m pytest -p suite_cpu
Then the table (top tests, then per file):
    python docs/benchmarks/suite_cpu.py docs/benchmarks/suite-cpu mytag
A module-scoped fixture is counted in the first test that uses it; pytest-xdist workers each write their own file.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
from pathlib import Path

import pytest

OUT = Path(os.environ.get("SUITE_CPU_DIR", Path(__file__).resolve().parent / "suite-cpu"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    t0, w0 = os.times(), time.perf_counter()
    yield
    t1, w1 = os.times(), time.perf_counter()
    cpu = sum(getattr(t1, k) - getattr(t0, k) for k in ("user", "system", "children_user", "children_system"))
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / f"{os.environ.get('SUITE_CPU_TAG', 'run')}-{os.getpid()}.jsonl", "a") as f:
        f.write(json.dumps({"test": item.nodeid, "cpu": round(cpu, 2), "wall": round(w1 - w0, 2)}) + "\n")


def table(folder: Path, tag: str, top: int = 30) -> str:
    rows = [json.loads(line) for path in sorted(folder.glob(f"{tag}-*.jsonl")) for line in path.open()]
    rows.sort(key=lambda r: -r["cpu"])
    lines = [f"{len(rows)} tests: {sum(r['cpu'] for r in rows):.0f} CPU s, {sum(r['wall'] for r in rows):.0f} s of "
             f"test wall time (summed over workers)", "", "  CPU s  wall s  test"]
    lines += [f"{r['cpu']:7.1f} {r['wall']:7.1f}  {r['test']}" for r in rows[:top]]
    per_file = collections.Counter()
    for r in rows:
        per_file[r["test"].split("::")[0]] += r["cpu"]
    lines += ["", "  CPU s  file"] + [f"{cpu:7.1f}  {name}" for name, cpu in per_file.most_common()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "run"))
