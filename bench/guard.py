"""Run a benchmark child under a watchdog: kill it past a memory budget or a time limit.

The kill is a result, not a crash: the caller gets the reason and records it, instead of
letting the kernel's OOM killer pick a victim on a shared machine.
"""

from __future__ import annotations

import subprocess
import threading
import time

import psutil


def run_guarded(
    command: list[str], timeout_s: float, memory_limit_bytes: int
) -> tuple[str, str, str | None]:
    """Run `command`; kill it once its RSS passes `memory_limit_bytes` or it runs past
    `timeout_s` seconds. Returns its stdout, its stderr, and why it was killed (or None)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed: dict[str, str] = {}

    def watchdog() -> None:
        process = psutil.Process(child.pid)
        while child.poll() is None:
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                return
            if rss > memory_limit_bytes:
                budget = memory_limit_bytes / 2**30
                killed["reason"] = f"killed: RSS {rss / 2**30:.1f} GiB > {budget:.0f} GiB budget"
            elif time.perf_counter() - start > timeout_s:
                killed["reason"] = f"killed: ran past {timeout_s:.0f} s"
            if killed:
                child.kill()
                return
            time.sleep(0.2)

    thread = threading.Thread(target=watchdog, daemon=True)
    thread.start()
    stdout, stderr = child.communicate()
    thread.join()
    return stdout, stderr, killed.get("reason")
