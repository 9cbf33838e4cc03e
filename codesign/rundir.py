"""The run directory: one subdirectory per stage, each written atomically.

```
<run>/
  config.yaml   resolved configuration
  model/        model.h5 (QKeras, pruning stripped), data.npz (the exact split), result.json
  hls/          hls4ml Vitis project, compiled C-sim, graph.json (hardware IR), result.json
  rtl/          Verilog, filelist.f, design.json, result.json
  sim/          vectors.npz, verify.json, results.xml, waves on failure, result.json
  synth/        yosys script and log, resources.json, result.json
  report/       report.html, report.md, summary.json, plots/*.png
```

A stage writes into ``<run>/.<stage>.partial`` and renames it into place only when it succeeded,
so a crash never leaves a half-written stage that looks finished. ``result.json`` is the stage's
output contract: the next stage reads only that (and files it names).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codesign.errors import StageError

#: Files of a source folder that count for a stage's fingerprint.
SOURCE_SUFFIXES = (".py", ".v", ".sv", ".vh", ".j2", ".yaml", ".yml", ".cpp", ".h")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: Path, data: Any) -> None:
    """Deterministic JSON (sorted keys, fixed indent) so identical inputs give identical bytes."""
    path.write_text(json.dumps(data, indent=1, sort_keys=True, default=_json_default) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


@contextlib.contextmanager
def stage_dir(run_dir: Path, stage: str) -> Iterator[Path]:
    """Yield a fresh temporary directory for ``stage``; move it to ``run_dir/stage`` on success.

    On an exception the partial directory is removed and any previous finished output of the
    stage is kept untouched.
    """
    run_dir = ensure_dir(run_dir)
    final = run_dir / stage
    tmp = run_dir / f".{stage}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = run_dir / f".{stage}.old"
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def require(run_dir: Path, stage: str, needed_by: str) -> dict[str, Any]:
    """Return ``run_dir/stage/result.json`` or raise StageError naming the missing stage."""
    path = Path(run_dir) / stage / "result.json"
    if not path.is_file():
        raise StageError(
            f"{needed_by} needs the '{stage}' stage, but {path} does not exist",
            hint=f"run `codesign {stage_command(stage)} --out {run_dir}` first",
        )
    return read_json(path)


def stage_command(stage: str) -> str:
    return {"model": "train", "hls": "convert", "rtl": "rtl", "sim": "verify", "synth": "synth",
            "report": "report"}[stage]


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts and files (Paths are hashed by content)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path):
            if p.is_dir():
                for f in sorted(p.rglob("*")):
                    # sources only: caches and results written while the flow runs must not change it
                    if f.is_file() and "__pycache__" not in f.parts and f.suffix in SOURCE_SUFFIXES:
                        h.update(str(f.relative_to(p)).encode())
                        h.update(f.read_bytes())
            elif p.is_file():
                h.update(p.read_bytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=_json_default).encode())
    return h.hexdigest()[:16]


#: run directories this process holds the lock of: resolved path -> [FileLock, depth]
_HELD: dict[str, list[Any]] = {}
LOCK_NAME = ".lock"
OWNER_NAME = ".lock.owner"  #: sidecar: "<pid> <host>" of the holder (informational; the OS lock decides)


def ensure_dir(run_dir: Path) -> Path:
    """Create ``run_dir`` (and parents); an OS error becomes one StageError naming the path."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise StageError(f"cannot create run directory {run_dir}: {e.filename or run_dir} exists and is "
                         f"not a directory") from e
    except OSError as e:
        raise StageError(f"cannot create run directory {run_dir}: {e.strerror}"
                         + (f" ({e.filename})" if e.filename and str(e.filename) != str(run_dir) else "")) from e
    if not os.access(run_dir, os.W_OK):
        raise StageError(f"run directory {run_dir} is not writable")
    return run_dir


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[Path]:
    """Own ``run_dir`` for the block: an OS-level lock on ``<run>/.lock`` (filelock), non-blocking.

    Another process holding it raises :class:`RunLockedError` naming its pid. The OS releases the
    lock when its holder dies, so a lock (and the ``.lock.owner`` sidecar) left by a dead process
    is simply taken over. Nested use in one process (run_flow -> run_stage) is re-entrant.
    """
    import socket

    from filelock import FileLock, Timeout

    from codesign.errors import RunLockedError

    run_dir = ensure_dir(run_dir)
    key = str(run_dir.resolve())
    held = _HELD.get(key)
    if held is not None:
        held[1] += 1
        try:
            yield run_dir
        finally:
            held[1] -= 1
        return
    lock = FileLock(str(run_dir / LOCK_NAME), timeout=0)
    owner = run_dir / OWNER_NAME
    try:
        lock.acquire()
    except Timeout:
        try:
            who = owner.read_text().split()
        except OSError:
            who = []
        pid = who[0] if who else "unknown"
        host = f" on {who[1]}" if len(who) > 1 else ""
        raise RunLockedError(
            f"run directory {run_dir} is in use by another codesign process (pid {pid}{host})",
            hint="wait for it to finish, stop it, or use another --out") from None
    except OSError as e:
        raise StageError(f"cannot lock run directory {run_dir}: {e.strerror} ({run_dir / LOCK_NAME})") from e
    _HELD[key] = [lock, 1]
    try:
        try:
            owner.write_text(f"{os.getpid()} {socket.gethostname()}\n")
        except OSError:
            pass
        yield run_dir
    finally:
        _HELD.pop(key, None)
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()
