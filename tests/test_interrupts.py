"""Issue 19: one owner per run directory, one-line OS errors, SIGINT/SIGTERM end the flow cleanly."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from codesign import rundir
from codesign.errors import RunLockedError, StageError

MAIN = Path(__file__).resolve().parents[1]


def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m codesign.cli ...`` as a user runs it; stdout and stderr captured."""
    env = {**os.environ, "PYTHONPATH": str(MAIN)}
    return subprocess.run([sys.executable, "-m", "codesign.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _hold(run: Path, pid: int) -> object:
    """Hold ``run``'s lock from a separate open file (an OS lock like another process's)."""
    from filelock import FileLock

    run.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run / rundir.LOCK_NAME), timeout=0)
    lock.acquire()
    (run / rundir.OWNER_NAME).write_text(f"{pid} {socket.gethostname()}\n")
    return lock


def test_locked_run_dir_is_refused_naming_the_holder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    lock = _hold(run, 424242)
    try:
        with pytest.raises(RunLockedError, match=r"pid 424242"):
            with rundir.locked(run):
                pass
    finally:
        lock.release()  # type: ignore[attr-defined]
    with rundir.locked(run):  # free again
        assert (run / rundir.OWNER_NAME).read_text().split()[0] == str(os.getpid())
    assert not (run / rundir.OWNER_NAME).exists()


def test_second_flow_on_a_locked_dir_exits_2_with_the_pid(tmp_path: Path) -> None:
    """The CLI, as a second process: one line naming the holder's pid, exit 2, nothing run."""
    run = tmp_path / "run"
    lock = _hold(run, os.getpid())
    try:
        proc = cli("flow", "--out", str(run), cwd=tmp_path)
    finally:
        lock.release()  # type: ignore[attr-defined]
    assert proc.returncode == 2, proc.stderr
    assert f"pid {os.getpid()}" in proc.stderr and "Traceback" not in proc.stderr
    assert not (run / "model").exists() and not (run / "config.yaml").exists()


def test_stale_sidecar_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / rundir.LOCK_NAME).touch()
    (run / rundir.OWNER_NAME).write_text("999999 elsewhere\n")  # no process holds the OS lock
    with rundir.locked(run):
        assert (run / rundir.OWNER_NAME).read_text().split()[0] == str(os.getpid())


def test_lock_is_reentrant_in_one_process(tmp_path: Path) -> None:
    """run_flow holds it and its run_stage calls take it again."""
    with rundir.locked(tmp_path / "run"), rundir.locked(tmp_path / "run"):
        pass
    with rundir.locked(tmp_path / "run"):
        pass


def test_run_dir_under_a_file_is_a_stage_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StageError, match="afile/run: Not a directory"):
        with rundir.locked(tmp_path / "afile" / "run"):
            pass


@pytest.mark.parametrize("where", ["under_file", "proc"])
def test_out_that_cannot_be_created_is_one_line_exit_2(tmp_path: Path, where: str) -> None:
    """``--out afile/run`` (a file in the way) and ``--out /proc/...`` (not writable, even by root)."""
    (tmp_path / "afile").write_text("x")
    out = "afile/run" if where == "under_file" else "/proc/codesign-run"
    proc = cli("flow", "--out", out, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and out in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_missing_config_is_one_line(tmp_path: Path) -> None:
    proc = cli("flow", "missing.yaml", "--out", "run", cwd=tmp_path)
    assert proc.returncode == 2 and "missing.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_os_error_from_a_stage_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """An OSError that escapes a stage is one ``error: <path>: <reason>`` line, exit 2."""
    from codesign import cli as climod

    def boom(args: object) -> int:
        raise PermissionError(13, "Permission denied", "/some/user/file.npz")

    monkeypatch.setattr(climod, "cmd_flow", boom)
    parser = climod.build_parser
    monkeypatch.setattr(climod, "build_parser", lambda: _with_func(parser(), boom))
    assert climod.main(["flow"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: /some/user/file.npz: Permission denied"]


def _with_func(p, fn):  # type: ignore[no-untyped-def]
    p.set_defaults(func=fn)
    for action in p._subparsers._group_actions:  # the "flow" subcommand's default
        action.choices["flow"].set_defaults(func=fn)
    return p


def test_proc_run_kills_the_group_on_interrupt(tmp_path: Path) -> None:
    """codesign.proc.run: a KeyboardInterrupt while waiting kills the tool and its children."""
    import signal
    import threading

    from codesign import proc

    pidfile = tmp_path / "pids"
    script = f"sleep 60 & echo $! > {pidfile}; wait"
    timer = threading.Timer(1.0, lambda: signal.pthread_kill(threading.main_thread().ident, signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        proc.run(["sh", "-c", script], capture_output=True, text=True)
    grandchild = int(pidfile.read_text())
    import time

    for _ in range(50):
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"grandchild {grandchild} still alive")


def _descendants(root: int) -> dict[int, str]:
    """Live (non-zombie) descendants of ``root``: pid -> command line, from /proc."""
    parent: dict[int, int] = {}
    cmd: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] == "Z":
                continue
            parent[int(d.name)] = int(fields[1])
            cmd[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p and c not in found:
                found[c] = cmd[c]
                todo.append(c)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
@pytest.mark.yosys
@pytest.mark.parametrize("command,stage,tool,sig,leader", [("verify", "sim", "verilator", "SIGINT", True),
                                                           ("synth", "synth", "yosys", "SIGINT", True),
                                                           ("verify", "sim", "verilator", "SIGTERM", True),
                                                           ("verify", "sim", "verilator", "SIGTERM", False)])
def test_signal_mid_stage_stops_within_5_s_without_orphans(tmp_path: Path, command: str, stage: str,
                                                            tool: str, sig: str, leader: bool) -> None:
    """SIGINT/SIGTERM to the codesign pid while its tool runs: exit 130/143 within 5 s, one line
    naming the stage, no child left alive, no finished-looking stage; a rerun then finishes. Also
    when codesign does not lead its process group (started from a script), so the signal reaches
    its pid alone and nothing but codesign can end the cocotb build it started."""
    import signal
    import time

    from conftest import small_qkeras_mlp

    from codesign.config import from_dict
    from codesign.flow import run_flow

    run = tmp_path / "run"
    small_qkeras_mlp().save(tmp_path / "tiny.h5")
    cfg = from_dict({"output_dir": str(run), "model": {"import_path": str(tmp_path / "tiny.h5")}})
    run_flow(cfg, run, stages="train,convert,rtl")
    (tmp_path / "cfg.yaml").write_text(f"model:\n  import_path: {tmp_path / 'tiny.h5'}\n"
                                       "verify:\n  random_vectors: 200000\n")  # a long simulation
    argv = [sys.executable, "-m", "codesign.cli", command, str(tmp_path / "cfg.yaml"), "--out", str(run)]
    env = {**os.environ, "PYTHONPATH": str(MAIN)}
    p = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=leader)
    try:
        deadline = time.monotonic() + 300
        kids: dict[int, str] = {}
        while time.monotonic() < deadline and p.poll() is None:
            kids = _descendants(p.pid)
            if any(tool in c for c in kids.values()):
                break
            time.sleep(0.2)
        assert p.poll() is None, p.communicate()
        assert any(tool in c for c in kids.values()), f"{tool} never started: {kids}"
        time.sleep(0.5)
        kids.update(_descendants(p.pid))
        t0 = time.monotonic()
        os.kill(p.pid, getattr(signal, sig))
        out, err = p.communicate(timeout=5)
        assert time.monotonic() - t0 < 5
    finally:
        if p.poll() is None:
            for pid in [*_descendants(p.pid), p.pid]:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == (130 if sig == "SIGINT" else 143), err
    assert f"during stage {stage}" in err and "Traceback" not in err, err
    time.sleep(0.5)
    left = {k: c for k, c in kids.items() if _alive(k)}
    assert not left, f"orphaned children: {left}"
    assert not (run / stage / "result.json").exists() and not (run / f".{stage}.partial").exists()
    assert not (run / rundir.OWNER_NAME).exists()
    res = run_flow(cfg.replace(**{"verify.random_vectors": 50}), run, stages=command)
    assert (run / stage / "result.json").is_file() and res[stage]


@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
@pytest.mark.yosys
def test_sigint_mid_sweep_point_then_rerun_redoes_only_that_point(tmp_path: Path) -> None:
    """A real `codesign sweep` (two reuse factors, the whole flow per point) interrupted while its second
    point runs: exit 130 with the first point's row kept; a re-run takes the first from its cache and
    runs only the second."""
    import signal
    import time

    from conftest import small_qkeras_mlp

    small_qkeras_mlp().save(tmp_path / "tiny.h5")
    out = tmp_path / "sw"
    (tmp_path / "sweep.yaml").write_text(
        f"base:\n  model:\n    import_path: {tmp_path / 'tiny.h5'}\n  verify:\n    random_vectors: 100\n"
        f"grid:\n  hls.reuse_factor: [1, 2]\nout: {out}\n")
    argv = [sys.executable, "-m", "codesign.cli", "sweep", str(tmp_path / "sweep.yaml"), "--local"]
    env = {**os.environ, "PYTHONPATH": str(MAIN)}

    def statuses() -> list[str]:
        try:
            return [r["status"] for r in rundir.read_json(out / "results.json")["rows"]]
        except (OSError, ValueError, KeyError):
            return []

    p = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and p.poll() is None and statuses().count("ok") < 1:
            time.sleep(0.5)
        assert p.poll() is None and statuses() == ["ok", "pending"], (statuses(), p.poll())
        time.sleep(3)  # the second point's flow is under way
        os.kill(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 130, err
    assert statuses() == ["ok", "pending"] and "Traceback" not in err, err
    again = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    rows = rundir.read_json(out / "results.json")["rows"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert rows[0]["cached"] is True and rows[1]["cached"] is False
