"""What the data-scale benchmarks share: a measurement in a child process, and the report."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any


def child_result(command: list[str]) -> dict[str, Any]:
    """Run a benchmark's child process; the JSON object on the last line of its output."""
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    if run.returncode:
        raise SystemExit(run.stderr[-3000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def publish(result: dict[str, Any], out: str | None) -> None:
    """Print ``result`` with the command, the date and the machine; also write it to ``out``."""
    from zoo import machine

    report = {
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine.describe(),
        **result,
    }
    text = json.dumps(report, indent=1)
    print(text)
    if out:
        with open(out, "w") as file:
            file.write(text + "\n")
