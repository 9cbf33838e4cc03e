"""Run an external tool so that it dies with us: :func:`run`, a drop-in for ``subprocess.run``.

The child starts in its own session (``start_new_session=True``), so it and everything it starts
form one process group; when anything interrupts the wait (Ctrl-C, SIGTERM raised by
``codesign.cli``, a timeout, a Ray task cancelled by a sweep) the whole group is killed before the
exception passes on. A terminal's Ctrl-C does not reach the group by itself, only through this.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any

#: seconds between checks for an interrupt while a tool runs
_POLL_S = 0.25


def kill_group(p: subprocess.Popen[Any]) -> None:
    """SIGKILL ``p``'s process group (it leads it: started with start_new_session) and reap ``p``."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.kill()
    except OSError:
        pass
    p.wait()


def run(cmd: Sequence[str], *, capture_output: bool = False, timeout: float | None = None,
        **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run(cmd, ...)`` with the child in its own process group, killed on any exception."""
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    kwargs["start_new_session"] = True
    deadline = None if timeout is None else time.monotonic() + timeout
    with subprocess.Popen(cmd, **kwargs) as p:
        try:
            while True:
                # short waits, so an interrupt raised in this thread without a signal (Ray's task
                # cancellation: _thread.interrupt_main) is seen within _POLL_S, not when the tool ends
                left = None if deadline is None else deadline - time.monotonic()
                try:
                    out, err = p.communicate(timeout=_POLL_S if left is None else max(0.0, min(_POLL_S, left)))
                    break
                except subprocess.TimeoutExpired:
                    if deadline is not None and time.monotonic() >= deadline:
                        kill_group(p)
                        p.communicate()
                        raise subprocess.TimeoutExpired(p.args, timeout or 0.0) from None
        except BaseException:
            kill_group(p)
            raise
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)
