"""Helpers for the end-to-end tests: run an entry point in a subprocess, read its MLflow store."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(tmp_path, script, *overrides, multirun=False) -> tuple[int, str]:
    """Run `script` (train.py, evaluate.py) in `tmp_path` against a store in `tmp_path`."""
    command = [
        sys.executable,
        str(ROOT / script),
        *(["-m"] if multirun else []),
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        "tracking.experiment=tests",
        *overrides,
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout + result.stderr


def list_artifacts(client, run_id, path=None) -> list[str]:
    """Every artifact path of a run, recursively."""
    found = []
    for item in client.list_artifacts(run_id, path):
        found += list_artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return found
