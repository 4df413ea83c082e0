"""Start a server on a free loopback port, wait until it answers, stop it with its children."""

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(
    command: list[str], ready_url: str, log: Path, timeout: float = 180, env: dict | None = None
) -> Iterator[None]:
    """Run `command` (its own process group) until `ready_url` answers 200; stop it after."""
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"{command[:3]} exited ({process.returncode}):\n{log.read_text()[-3000:]}"
                )
            # URLError, a refused or reset connection, or a read that times out while the
            # server is still loading (all OSError): not ready yet, ask again
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(ready_url, timeout=5) as reply,
            ):
                if reply.status == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{ready_url} not ready after {timeout} s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        finally:  # children that outlive the server (worker pools, job consumers)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
