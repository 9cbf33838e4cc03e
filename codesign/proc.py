"""Run an external tool so that it dies with us: :func:`run`, a drop-in for ``subprocess.run``.

The child starts in its own session (``start_new_session=True``), so it and everything it starts
form one process group; when anything interrupts the wait (Ctrl-C, SIGTERM raised by
``codesign.cli``, a timeout) the whole group is killed before the exception passes on. A
terminal's Ctrl-C does not reach the group by itself, only through this.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from typing import Any


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
    with subprocess.Popen(cmd, **kwargs) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(p)
            p.communicate()
            raise
        except BaseException:
            kill_group(p)
            raise
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)
