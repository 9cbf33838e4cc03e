"""codesign.sweep (and sweep_grid): grid expansion, shared training, failure isolation, caching/resume,
Ray execution.

The point runner is a cheap fake that writes real stage files (numbers derived from the config) and
logs every call to a file, so tests can count what actually ran across re-runs and Ray workers.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from codesign import rundir, sweep, sweep_grid
from codesign.errors import ConfigError

GRID = {"hls.reuse_factor": [1, 4], "model.bits": [4, 6]}


def make_fake(calls: Path, fail_when: tuple[int, int] | None = None, interrupt_at: int | None = None,
              fail_training: bool = False) -> Any:
    """A point_fn. Self-contained (no module globals) so Ray pickles it by value."""

    def fake(cfg: Any, run_dir: Path, stages: Any) -> None:
        import json as _json
        from pathlib import Path as _Path

        run_dir = _Path(run_dir)
        rf, bits, sp = cfg.hls.reuse_factor, cfg.model.bits, cfg.pruning.target_sparsity
        kind = "train" if stages == ["model"] else "point"
        with open(calls, "a") as f:
            f.write(_json.dumps({"kind": kind, "rf": rf, "bits": bits, "stages": stages, "dir": str(run_dir)}) + "\n")
        n_points = sum(1 for line in open(calls) if '"kind": "point"' in line)

        def put(stage: str, name: str, data: dict) -> None:
            (run_dir / stage).mkdir(parents=True, exist_ok=True)
            (run_dir / stage / name).write_text(_json.dumps(data))

        if kind == "train":
            if fail_training:
                raise RuntimeError(f"training diverged for bits={bits}")
            put("model", "result.json", {"test_accuracy": 0.80 + bits / 100, "weight_sparsity": sp,
                                         "train_seconds": 0.1})
            return
        if interrupt_at is not None and n_points == interrupt_at:
            put("hls", "result.json", {"csim_accuracy": 0.5})  # half-finished point, then "Ctrl-C"
            raise KeyboardInterrupt
        assert (run_dir / "model" / "result.json").is_file(), "model/ was not copied in"
        if fail_when == (rf, bits):
            raise ValueError(f"boom at rf={rf} bits={bits}")
        put("hls", "result.json", {"csim_accuracy": 0.80 + bits / 100 - 0.001})
        put("rtl", "result.json", {})
        put("rtl", "design.json", {"latency": 3 + 2 * rf, "ii": rf})
        put("sim", "result.json", {"accuracy": 0.80 + bits / 100 - 0.002, "mismatches": 0, "latency_max": 3 + 2 * rf,
                                   "ii": rf, "wall_seconds": 0.01})
        put("synth", "result.json", {"LUT": 1000 * bits // rf, "FF": 100 * bits, "DSP": 0, "CARRY": 7,
                                     "BRAM": 0.0, "wall_seconds": 0.02})

    return fake


def _calls(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _spec(tmp_path: Path, grid: dict[str, list[Any]] | None = None) -> sweep_grid.SweepSpec:
    return sweep_grid.spec_from_dict({"base": {"training": {"epochs": 2}}, "grid": grid or GRID,
                                      "out": str(tmp_path / "sw")})


def test_expand_and_shared_training(tmp_path: Path) -> None:
    f = tmp_path / "sweep.yaml"
    f.write_text("base: {training: {epochs: 30}}\n"
                 "grid: {hls.reuse_factor: [1, 4, 16], model.bits: [4, 6], pruning.target_sparsity: [0.5, 0.8]}\n"
                 f"out: {tmp_path / 'sw'}\n")
    spec = sweep_grid.load_spec(f)
    points = sweep_grid.expand(spec)
    assert len(points) == 12
    assert len({p.dir for p in points}) == 12 and len({p.fingerprint for p in points}) == 12
    p = points[-1]
    assert p.values == {"hls.reuse_factor": 16, "model.bits": 6, "pruning.target_sparsity": 0.8}
    assert (p.cfg.hls.reuse_factor, p.cfg.model.bits, p.cfg.pruning.target_sparsity) == (16, 6, 0.8)
    assert p.cfg.training.epochs == 30 and p.cfg.output_dir == str(p.dir)
    assert p.dir.name.startswith("rf16_b6_sp0.8-")
    groups = sweep_grid.training_groups(points)
    # Reuse factor does not change training: 2 bits x 2 sparsities = 4 trained models of 3 points each.
    assert len(groups) == 4 and all(len(g) == 3 for g in groups.values())
    for g in groups.values():
        assert len({(q.cfg.model.bits, q.cfg.pruning.target_sparsity) for q in g}) == 1
        assert sorted(q.cfg.hls.reuse_factor for q in g) == [1, 4, 16]


def test_spec_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="hls.reuse_factr"):
        sweep_grid.spec_from_dict({"grid": {"hls.reuse_factr": [1]}})
    with pytest.raises(ConfigError, match=r"grid.model.bits = 99"):
        sweep_grid.spec_from_dict({"grid": {"model.bits": [4, 99]}})
    with pytest.raises(ConfigError, match="non-empty list"):
        sweep_grid.spec_from_dict({"grid": {"model.bits": []}})
    with pytest.raises(ConfigError, match="unknown sweep key"):
        sweep_grid.spec_from_dict({"grid": {"model.bits": [4]}, "grdi": {}})
    with pytest.raises(ConfigError, match="does not exist"):
        sweep_grid.load_spec(tmp_path / "missing.yaml")
    # codesign.cli and codesign.tools.bench read sweep files through codesign.sweep
    assert (sweep.load_spec, sweep.spec_from_dict) == (sweep_grid.load_spec, sweep_grid.spec_from_dict)


def test_failing_point_is_recorded_and_others_finish(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    spec = _spec(tmp_path)
    lines: list[str] = []
    rows = sweep.run_sweep(spec, point_fn=make_fake(calls, fail_when=(4, 4)), executor="local",
                           progress=lines.append)
    status = {(r["hls.reuse_factor"], r["model.bits"]): r for r in rows}
    assert status[(4, 4)]["status"] == "failed"
    assert status[(4, 4)]["error"] == "ValueError: boom at rf=4 bits=4"
    assert status[(4, 4)]["LUT"] is None
    for key in [(1, 4), (1, 6), (4, 6)]:
        assert status[key]["status"] == "ok" and status[key]["error"] == ""
        assert status[key]["LUT"] == 1000 * key[1] // key[0] and status[key]["ii"] == key[0]
    assert lines[-1] == "sweep: 3/4 done, 0 running, 1 failed"
    # Shared training: one train call per bit width, four point calls.
    c = _calls(calls)
    assert sorted(x["bits"] for x in c if x["kind"] == "train") == [4, 6]
    assert len([x for x in c if x["kind"] == "point"]) == 4
    assert all(x["stages"] == ["hls", "rtl", "sim", "synth", "ip", "report"] for x in c if x["kind"] == "point")
    # CSV and JSON agree with the rows; the report has its plots.
    with open(spec.out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["status"] for r in table] == [r["status"] for r in rows]
    assert table[0]["hls.reuse_factor"] == "1" and table[0]["LUT"] == "4000"
    assert rundir.read_json(spec.out / "results.json")["rows"] == json.loads(json.dumps(rows))
    html = (spec.out / "report.html").read_text()
    assert "boom at rf=4 bits=4" in html
    for png in ("pareto_lut.png", "pareto_dsp.png", "latency_ii_vs_rf.png", "resources_vs_bits.png"):
        assert (spec.out / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interrupt_then_rerun_completes_only_missing(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    spec = _spec(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(spec, point_fn=make_fake(calls, interrupt_at=3), executor="local")
    saved = rundir.read_json(spec.out / "results.json")["rows"]
    assert sorted(r["status"] for r in saved) == ["ok", "ok", "pending", "pending"]
    done_before = {r["run_dir"] for r in saved if r["status"] == "ok"}
    first = _calls(calls)
    interrupted_dir = [x for x in first if x["kind"] == "point"][2]["dir"]
    assert interrupted_dir not in done_before
    assert not (Path(interrupted_dir) / "point.json").exists()

    calls.unlink()
    rows = sweep.run_sweep(spec, point_fn=make_fake(calls), executor="local")
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert {r["run_dir"] for r in rows if r["cached"]} == done_before
    again = _calls(calls)
    assert [x for x in again if x["kind"] == "train"] == []  # both models were already trained
    assert sorted(x["dir"] for x in again) == sorted(r["run_dir"] for r in rows if not r["cached"])
    assert len(again) == 2
    assert interrupted_dir in {x["dir"] for x in again}

    # A third run with everything finished runs nothing; a changed base config runs everything.
    calls.unlink()
    sweep.run_sweep(spec, point_fn=make_fake(calls), executor="local")
    assert _calls(calls) == []
    changed = sweep_grid.spec_from_dict({"base": {"training": {"epochs": 2}, "synth": {"nodsp": True}},
                                         "grid": GRID, "out": str(spec.out)})
    sweep.run_sweep(changed, point_fn=make_fake(calls), executor="local")
    assert len([x for x in _calls(calls) if x["kind"] == "point"]) == 4
    assert [x for x in _calls(calls) if x["kind"] == "train"] == []  # synth does not affect training


def test_points_finished_before_codesign_gained_config_fields_are_kept(tmp_path: Path) -> None:
    """A new config field changes every fingerprint; the finished runs of the same configuration are
    adopted (renamed to the new directory) instead of redone, and a point whose configuration
    really differs is still run."""
    import shutil

    import yaml

    calls = tmp_path / "calls.jsonl"
    spec = _spec(tmp_path)
    first = sweep.run_sweep(spec, point_fn=make_fake(calls), executor="local")
    # what the runs would look like had they been made before codesign had hls.ptq: no such field in
    # config.yaml, another fingerprint (so another directory name)
    for r in first:
        old = Path(r["run_dir"])
        data = yaml.safe_load((old / "config.yaml").read_text())
        del data["hls"]["ptq"]
        if r["reuse_factor"] == 4 and r["bits"] == 6:
            data["hls"]["clock_period_ns"] = 3.0  # this one was made with another configuration
        (old / "config.yaml").write_text(yaml.safe_dump(data))
        marker = rundir.read_json(old / "point.json")
        rundir.write_json(old / "point.json", dict(marker, fingerprint="0123456789abcdef"))
        shutil.move(old, old.with_name(f"{r['slug']}-01234567"))
    calls.unlink()
    rows = sweep.run_sweep(spec, point_fn=make_fake(calls), executor="local")
    assert [r["status"] for r in rows] == ["ok"] * 4
    ran = [x for x in _calls(calls) if x["kind"] == "point"]
    assert [(x["rf"], x["bits"]) for x in ran] == [(4, 6)]
    adopted = [r for r in rows if r["cached"]]
    assert len(adopted) == 3 and all(r["run_dir"] == f["run_dir"] for r, f in zip(rows, first) if r["cached"])
    for r in adopted:
        marker = rundir.read_json(Path(r["run_dir"]) / "point.json")
        assert marker["fingerprint"] == r["fingerprint"] and marker["adopted_from"].endswith("-01234567")
        assert r["LUT"] == 1000 * r["bits"] // r["reuse_factor"]  # its figures are read from the adopted run
    assert (spec.out / "points" / "rf4_b6-01234567").is_dir()  # the different one is left alone


def test_training_failure_fails_its_points(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    rows = sweep.run_sweep(_spec(tmp_path), point_fn=make_fake(calls, fail_training=True), executor="local")
    assert {r["status"] for r in rows} == {"failed"}
    assert all(r["error"].startswith("training failed: RuntimeError: training diverged") for r in rows)
    assert [x for x in _calls(calls) if x["kind"] == "point"] == []
    assert "No finished point" in (tmp_path / "sw" / "report.html").read_text()


def test_ray_local(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    spec = _spec(tmp_path)
    rows = sweep.run_sweep(spec, point_fn=make_fake(calls, fail_when=(1, 6)), executor="ray", num_cpus=2)
    assert [r["status"] for r in rows] == ["ok", "failed", "ok", "ok"]
    assert rows[1]["error"] == "ValueError: boom at rf=1 bits=6"
    assert rows[3]["LUT"] == 1500 and rows[3]["latency"] == 11
    c = _calls(calls)
    assert len([x for x in c if x["kind"] == "train"]) == 2 and len([x for x in c if x["kind"] == "point"]) == 4
    import ray

    assert not ray.is_initialized()  # the sweep shut down the instance it started


_KILL_SCRIPT = r'''
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from test_sweep import make_fake, GRID
from codesign import sweep, sweep_grid
spec = sweep_grid.spec_from_dict({"base": {"training": {"epochs": 2}}, "grid": GRID, "out": sys.argv[1]})
fake = make_fake(Path(sys.argv[2]))
def slow(cfg, run_dir, stages):
    fake(cfg, run_dir, stages)
    if stages != ["model"]:
        print("POINT", flush=True)
        time.sleep(30)
sweep.run_sweep(spec, point_fn=slow, executor="local")
'''


def test_killed_process_then_rerun(tmp_path: Path) -> None:
    """SIGKILL a sweep inside its first point's flow: a re-run finishes every point exactly once more."""
    import subprocess
    import sys

    out, calls = tmp_path / "sw", tmp_path / "calls.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(out), str(calls), str(Path(__file__).parent)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "POINT"
    finally:
        proc.kill()
        proc.wait()
    saved = rundir.read_json(out / "results.json")["rows"]
    assert [r["status"] for r in saved] == ["pending"] * 4  # the killed point never finished
    calls.unlink()
    rows = sweep.run_sweep(_spec(tmp_path), point_fn=make_fake(calls), executor="local")
    assert [r["status"] for r in rows] == ["ok"] * 4 and not any(r["cached"] for r in rows)
    c = _calls(calls)
    assert [x for x in c if x["kind"] == "train"] == [] and len(c) == 4


def test_ray_cancel_ends_the_tools_a_running_task_started(tmp_path: Path) -> None:
    """An interrupted sweep cancels its Ray tasks: the tool a running task waits on (codesign.proc.run,
    the way every stage runs Verilator, Yosys and the C-sim) ends with it, at once, not when the tool
    would have finished, and nothing is left pending."""
    import time

    from test_interrupts import _alive

    from codesign import proc

    pid_file = tmp_path / "tool.pid"
    ex = sweep._Ray(None, 1)
    try:
        ex.submit("p", proc.run, ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 120"])
        t0 = time.monotonic()
        while not pid_file.is_file() or not pid_file.read_text().strip():
            assert time.monotonic() - t0 < 120, "the Ray task never started its tool"
            time.sleep(0.1)
        pid = int(pid_file.read_text())
        assert _alive(pid)
        t0 = time.monotonic()
        ex.cancel()
        while _alive(pid) and time.monotonic() - t0 < 10:
            time.sleep(0.1)
        assert not _alive(pid), "the cancelled task's tool outlived it"
        assert time.monotonic() - t0 < sweep._CANCEL_GRACE_S  # the interrupt, not the forced kill
        assert not ex.pending()
    finally:
        ex.close()



SIGTERM_SWEEP = '''
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_sweep import make_fake
from codesign import cli, sweep

fast = make_fake(Path({calls!r}))

def point(cfg, run_dir, stages):
    if stages != ["model"] and cfg.hls.reuse_factor == 4:
        from pathlib import Path as _P
        _P({started!r}).write_text("x")
        time.sleep(120)  # the second point is under way when the SIGTERM comes
    fast(cfg, run_dir, stages)

real_run_sweep = sweep.run_sweep
sweep.run_sweep = lambda spec, **kw: real_run_sweep(spec, point_fn=point, **kw)  # the CLI's points: fakes
sys.exit(cli.main(["sweep", {sweep_file!r}, "--workers", "1"]))
'''


def test_sigterm_mid_ray_sweep_cancels_and_writes_the_results(tmp_path: Path) -> None:
    """A SIGTERM to `codesign sweep` on a local Ray reaches codesign's handler, not the one ray.init
    installs (which kills the node's processes, then Ray's own handler aborts): the running point is
    cancelled, results.json keeps the finished point, and the command exits 143 within seconds."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out, started, sweep_file = tmp_path / "sw", tmp_path / "started", tmp_path / "sweep.yaml"
    sweep_file.write_text(json.dumps({"base": {"training": {"epochs": 2}}, "grid": {"hls.reuse_factor": [1, 4]},
                                      "out": str(out)}))
    script = tmp_path / "sweep_then_sigterm.py"
    script.write_text(SIGTERM_SWEEP.format(tests=str(Path(__file__).parent), calls=str(tmp_path / "calls.jsonl"),
                                           started=str(started), sweep_file=str(sweep_file)))
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        t0 = time.monotonic()
        while not started.is_file():
            assert p.poll() is None and time.monotonic() - t0 < 180, p.communicate()[1][-2000:]
            time.sleep(0.2)
        time.sleep(1)
        os.kill(p.pid, signal.SIGTERM)
        t0 = time.monotonic()
        _, err = p.communicate(timeout=60)
        assert time.monotonic() - t0 < sweep._CANCEL_GRACE_S + 20
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 143 and "terminated (SIGTERM)" in err, err[-3000:]
    rows = rundir.read_json(out / "results.json")["rows"]
    assert [r["status"] for r in rows] == ["ok", "pending"]
