"""SIGTERM / SIGINT (preemption, Ctrl-C): finish the current step, checkpoint, then exit.

While training steps run, a signal only raises a flag; the checkpointing callback sees it at
the end of the step, saves, and raises `Interrupted`. Outside the training loop (loading
data, evaluating, logging the model) there is no step to finish and `Interrupted` is raised
at once. A second signal always interrupts at once. `Interrupted` is a `SystemExit` with the
conventional exit status, 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(SystemExit):
    """Training stopped by a signal; `code` is the process exit status to use."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


class SignalFlag:
    """Which signal arrived, if any, and whether it may wait for the end of the step."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.deferring = False

    def _handle(self, signum: int, _frame) -> None:
        if self.deferring and self.received is None:
            self.received = signum
            return
        raise Interrupted(signum)

    def check(self) -> None:
        """Raise `Interrupted` if a signal arrived (call at a point where stopping is safe)."""
        if self.received is not None:
            raise Interrupted(self.received)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Signals raise the flag instead of interrupting, for the duration."""
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False


@contextlib.contextmanager
def handle_signals() -> Iterator[SignalFlag]:
    """Install the handlers for SIGTERM and SIGINT; restore the previous ones on exit."""
    flag = SignalFlag()
    previous = {signum: signal.signal(signum, flag._handle) for signum in SIGNALS}
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
