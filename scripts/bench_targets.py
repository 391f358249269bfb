"""Every performance target of J1MSKY in one command.

Runs scripts/bench_api.py (reads, the 401 path, lists), scripts/bench_spawn.py (the spawn
path) and scripts/bench_webhooks.py (deliveries) one after the other, each against the
baseline it measures in the same run, shows their output, then repeats every line that
ends in "met" or "MISSED". Exit code 1 when a target was missed or a script failed.

    /path/to/venv/bin/python scripts/bench_targets.py
"""
from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = ("bench_api.py", "bench_spawn.py", "bench_webhooks.py")


def run(script: str) -> tuple[list[str], int]:
    """Run one benchmark, echoing its output; (its target lines, exit code)."""
    print(f"\n=== {script}", flush=True)
    process = subprocess.Popen([sys.executable, os.path.join(HERE, script)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    targets = []
    for line in process.stdout:
        print(line, end="", flush=True)
        if line.rstrip().endswith((" met", " MISSED")):
            targets.append(f"{script:18} {line.strip()}")
    return targets, process.wait()


def main() -> int:
    targets, failed = [], []
    for script in SCRIPTS:
        lines, code = run(script)
        targets += lines
        if code not in (0, 1):  # 1: the script's own "a target was missed"
            failed.append(f"{script} exited {code}")
    print("\n=== every target")
    for line in targets + failed:
        print(line)
    missed = [t for t in targets if t.endswith("MISSED")]
    print(f"{len(targets) - len(missed)} met, {len(missed)} missed"
          + (f"; {', '.join(failed)}" if failed else ""))
    return 1 if missed or failed else 0


if __name__ == "__main__":
    sys.exit(main())
