"""Design-space sweeps: a grid of config changes, one run directory per point, run on Ray.

A sweep file::

    base: {training: {epochs: 30}}          # a config (same schema as codesign/config.py)
    grid:                                    # dotted config paths -> values
      hls.reuse_factor: [1, 4, 16]
      model.bits: [4, 6]
      pruning.target_sparsity: [0.5, 0.8]
    out: runs/sweep                          # optional (default runs/sweep)

expands into the cartesian product of the grid. Layout of ``out``::

    models/<train-key>/model/    one trained model per group of points that train identically
    points/<slug>-<fp>/          one run directory per point (model/ copied from models/)
    results.csv, results.json    one row per point, rewritten after every finished point
    report.html, plots/          Pareto fronts and trends, written when the sweep ends or stops

A point is finished when its directory holds ``point.json`` with status "ok" and the point's
config fingerprint; a re-run skips finished points and trained models, so an interrupted sweep
redoes only what is missing. A finished run made before codesign gained config fields (whose
defaults change every fingerprint) is adopted when its configuration is otherwise the same
(:func:`adopt_earlier_run`). Failed points are recorded with their error and re-run next time.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from codesign import config as cfgmod
from codesign import plots, rundir
from codesign.config import Config
from codesign.errors import ConfigError
from codesign.flow import STAGE_NAMES
from codesign.sweep_grid import (TRAINING_SECTIONS, Point, SweepSpec, cfg_data, expand, read_config_file, same_config,
                                 slug_value,
                                 training_groups)
# re-exported: codesign.cli and codesign.tools.bench read sweep files through codesign.sweep
from codesign.sweep_grid import load_spec as load_spec, spec_from_dict as spec_from_dict

log = logging.getLogger(__name__)

#: Metric columns of results.csv, after the grid columns.
COLUMNS = ["point", "slug", "status", "cached", "error", "reuse_factor", "bits", "target_sparsity",
           "weight_sparsity", "acc_qkeras", "acc_csim", "acc_rtl", "mismatches", "latency", "ii",
           "latency_measured", "ii_measured", "LUT", "FF", "DSP", "CARRY", "BRAM", "train_seconds",
           "sim_seconds", "synth_seconds", "point_seconds", "fingerprint", "run_dir"]

#: (cfg, run_dir, stages) -> anything. stages None: all; else a list of flow.STAGE_NAMES.
PointFn = Callable[[Config, Path, "list[str] | None"], Any]


# ----------------------------------------------------------------------------- point execution

def flow_point(cfg: Config, run_dir: Path, stages: list[str] | None) -> Any:
    """The real point runner: :func:`codesign.flow.run_flow`."""
    from codesign.flow import run_flow

    return run_flow(cfg, run_dir, stages=stages)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    rundir.write_json(tmp, data)
    os.replace(tmp, path)


def _marker_ok(path: Path, fp: str) -> bool:
    try:
        m = rundir.read_json(path)
    except (OSError, ValueError):
        return False
    return m.get("status") == "ok" and m.get("fingerprint") == fp


def _model_dir(out: Path, key: str) -> Path:
    return out / "models" / key


def _error(e: BaseException) -> dict[str, str]:
    return {"error_type": type(e).__name__, "error": f"{type(e).__name__}: {e}",
            "traceback": "".join(traceback.format_exception(e))[-4000:]}


def train_task(point_fn: PointFn, cfg: Config, model_dir: Path) -> dict[str, Any]:
    """Train one group's model into ``model_dir/model`` (skipped when already trained)."""
    marker = model_dir / "train.json"
    fp = rundir.fingerprint({s: cfg_data(cfg)[s] for s in TRAINING_SECTIONS})
    if _marker_ok(marker, fp) and (model_dir / "model" / "result.json").is_file():
        return {"status": "ok", "cached": True}
    t0 = time.monotonic()
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        point_fn(dataclasses.replace(cfg, output_dir=str(model_dir)), model_dir, ["model"])
        if not (model_dir / "model" / "result.json").is_file():
            raise RuntimeError(f"training finished without writing {model_dir / 'model' / 'result.json'}")
    except Exception as e:  # recorded for every point of the group; the sweep goes on
        return {"status": "failed", **_error(e), "seconds": time.monotonic() - t0}
    _atomic_json(marker, {"status": "ok", "fingerprint": fp})
    return {"status": "ok", "cached": False, "seconds": time.monotonic() - t0}


def adopt_earlier_run(point: Point) -> bool:
    """Take over a finished run of this point made before codesign gained config fields.

    New config fields (with their defaults) change every fingerprint, so an upgrade would redo every
    point of a sweep. A finished sibling run ``<slug>-<older fp>`` whose config.yaml equals the
    point's config in every field it has (:func:`codesign.sweep_grid.same_config`) is renamed to
    the point's directory and its marker gets the new fingerprint (and ``adopted_from``). The search
    resumes its trials the same way. Returns whether a run was adopted.
    """
    if _marker_ok(point.dir / "point.json", point.fingerprint) or not point.dir.parent.is_dir():
        return False
    for old in sorted(point.dir.parent.glob(f"{point.slug}-*")):
        if old == point.dir or not old.is_dir():
            continue
        try:
            marker = rundir.read_json(old / "point.json")
        except (OSError, ValueError):
            continue
        data = read_config_file(old / "config.yaml")
        if marker.get("status") != "ok" or data is None or not same_config(data, cfg_data(point.cfg)):
            continue
        if point.dir.exists():  # an unfinished run of the new fingerprint: the finished one wins
            shutil.rmtree(point.dir)
        os.replace(old, point.dir)
        _atomic_json(point.dir / "point.json", dict(marker, fingerprint=point.fingerprint, adopted_from=old.name))
        log.info("point %s: adopted the finished run %s (same config; codesign has added fields since)",
                 point.slug, old.name)
        return True
    return False


def point_task(point_fn: PointFn, point: Point, model_dir: Path, train: Mapping[str, Any]) -> dict[str, Any]:
    """Run one point after its model was trained; never raises for an ordinary error."""
    marker = point.dir / "point.json"
    if _marker_ok(marker, point.fingerprint):
        return {"status": "ok", "cached": True}
    if marker.exists():
        marker.unlink()
    if train.get("status") != "ok":
        return {"status": "failed", "cached": False, "error_type": train.get("error_type", ""),
                "error": f"training failed: {train.get('error', '?')}", "seconds": 0.0}
    t0 = time.monotonic()
    try:
        point.dir.mkdir(parents=True, exist_ok=True)
        cfgmod.dump(point.cfg, point.dir / "config.yaml")
        if (point.dir / "model").exists():
            shutil.rmtree(point.dir / "model")
        shutil.copytree(model_dir / "model", point.dir / "model")
        point_fn(point.cfg, point.dir, [s for s in STAGE_NAMES if s != "model"])
    except Exception as e:
        return {"status": "failed", "cached": False, **_error(e), "seconds": time.monotonic() - t0}
    seconds = time.monotonic() - t0
    _atomic_json(marker, {"status": "ok", "fingerprint": point.fingerprint, "values": point.values,
                          "seconds": seconds})
    return {"status": "ok", "cached": False, "seconds": seconds}


# ----------------------------------------------------------------------------- results

def _get(d: Mapping[str, Any] | None, key: str) -> Any:
    return None if d is None else d.get(key)


def _stage(run_dir: Path, stage: str, name: str = "result.json") -> dict[str, Any] | None:
    path = run_dir / stage / name
    try:
        return rundir.read_json(path) if path.is_file() else None
    except ValueError:
        return None


def collect_row(point: Point, outcome: Mapping[str, Any] | None) -> dict[str, Any]:
    """One results row: grid values, status, and every metric read from the point's stage files."""
    d = point.dir
    model, hls, sim, syn = (_stage(d, s) for s in ("model", "hls", "sim", "synth"))
    design = _stage(d, "rtl", "design.json") if (d / "rtl" / "result.json").is_file() else None
    if outcome is None:
        status = "pending"
    else:
        status = str(outcome.get("status"))
    row: dict[str, Any] = dict(point.values)
    seconds = _get(outcome, "seconds")
    if outcome is not None and outcome.get("cached"):
        marker = _stage(d, ".", "point.json")
        seconds = _get(marker, "seconds")
    row.update({
        "point": point.index, "slug": point.slug, "status": status,
        "cached": bool(outcome and outcome.get("cached")),
        "error": _get(outcome, "error") or "",
        "reuse_factor": point.cfg.hls.reuse_factor, "bits": point.cfg.model.bits,
        "target_sparsity": point.cfg.pruning.target_sparsity,
        "weight_sparsity": _get(model, "weight_sparsity"),
        "acc_qkeras": _get(model, "test_accuracy"), "acc_csim": _get(hls, "csim_accuracy"),
        "acc_rtl": _get(sim, "accuracy"), "mismatches": _get(sim, "mismatches"),
        "latency": _get(design, "latency"), "ii": _get(design, "ii"),
        "latency_measured": _get(sim, "latency_max"), "ii_measured": _get(sim, "ii"),
        "LUT": _get(syn, "LUT"), "FF": _get(syn, "FF"), "DSP": _get(syn, "DSP"), "CARRY": _get(syn, "CARRY"),
        "BRAM": _get(syn, "BRAM"), "train_seconds": _get(model, "train_seconds"),
        "sim_seconds": _get(sim, "wall_seconds"), "synth_seconds": _get(syn, "wall_seconds"),
        "point_seconds": seconds, "fingerprint": point.fingerprint, "run_dir": str(d),
    })
    return row


def write_results(spec: SweepSpec, rows: Sequence[Mapping[str, Any]]) -> None:
    """results.json and results.csv, each replaced atomically."""
    spec.out.mkdir(parents=True, exist_ok=True)
    header = list(spec.grid) + [c for c in COLUMNS if c not in spec.grid]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else _csv_value(r.get(k))) for k in header})
    _atomic_write(spec.out / "results.csv", buf.getvalue())
    _atomic_json(spec.out / "results.json", {"grid": spec.grid, "base": spec.base, "columns": header,
                                             "rows": list(rows)})


def _csv_value(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return "x".join(str(x) for x in v)
    return v


def _progress(rows: Sequence[Mapping[str, Any]], running: int) -> str:
    done = sum(r["status"] == "ok" for r in rows)
    failed = sum(r["status"] == "failed" for r in rows)
    return f"sweep: {done}/{len(rows)} done, {running} running, {failed} failed"


# ----------------------------------------------------------------------------- the sweep

class _Local:
    """Runs tasks in this process, one at a time, in submission order (tests, debugging)."""

    def __init__(self) -> None:
        self.queue: list[tuple[Any, Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, tag: Any, fn: Callable[..., Any], *args: Any) -> None:
        self.queue.append((tag, fn, args))

    def running(self) -> int:
        return 0

    def next(self) -> tuple[Any, Any]:
        tag, fn, args = self.queue.pop(0)
        return tag, fn(*args)

    def pending(self) -> bool:
        return bool(self.queue)

    def cancel(self) -> None:
        self.queue.clear()

    def close(self) -> None:
        pass


#: seconds a cancelled Ray task gets to end its tools before its worker is killed
_CANCEL_GRACE_S = 5.0


class _Ray:
    """Runs tasks as Ray remote functions (1 CPU each) on a local instance or a cluster."""

    def __init__(self, address: str | None, num_cpus: int | None, worker_output: bool = True) -> None:
        import ray

        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": worker_output,
                                      "configure_logging": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
                kwargs["object_store_memory"] = 200 * 1024 * 1024
            # ray.init replaces the SIGTERM handler: its own sys.exit, and for a local instance a
            # handler that kills the node's processes first. Either way a SIGTERM would skip the
            # cancel-and-write-results path (the tasks' tools orphaned, results.csv and the report
            # stale), so the handler in place before (codesign's, in the CLI) is put back.
            main_thread = threading.current_thread() is threading.main_thread()
            sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
            ray.init(**kwargs)
            if sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)
            self.started = True
        self.remote = ray.remote(num_cpus=1, max_retries=0)(_call)
        self.refs: dict[Any, Any] = {}

    def submit(self, tag: Any, fn: Callable[..., Any], *args: Any) -> None:
        self.refs[self.remote.remote(fn, *args)] = tag

    def running(self) -> int:
        return len(self.refs)

    def next(self) -> tuple[Any, Any]:
        ready, _ = self.ray.wait(list(self.refs), num_returns=1)
        tag = self.refs.pop(ready[0])
        try:
            return tag, self.ray.get(ready[0])
        except Exception as e:  # a worker died or the task could not run: a failure of this task
            return tag, {"status": "failed", "cached": False, **_error(e), "seconds": None}

    def pending(self) -> bool:
        return bool(self.refs)

    def cancel(self) -> None:
        """Interrupt the running tasks (a KeyboardInterrupt in each, so codesign.proc kills the tools
        they started), then kill the workers of those that have not ended after a grace period."""
        refs = list(self.refs)
        for ref in refs:
            self.ray.cancel(ref, force=False)
        _, left = self.ray.wait(refs, num_returns=len(refs), timeout=_CANCEL_GRACE_S) if refs else ([], [])
        for ref in left:
            self.ray.cancel(ref, force=True)
        self.refs.clear()

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def run_sweep(spec: SweepSpec, *, point_fn: PointFn = flow_point, executor: str = "ray",
              address: str | None = None, num_cpus: int | None = None,
              progress: Callable[[str], None] | None = None, worker_output: bool = True) -> list[dict[str, Any]]:
    """Run every point of the sweep (skipping finished ones) and write results and the report.

    Args:
        spec: the parsed sweep.
        point_fn: runs the flow for one run directory; :func:`flow_point` by default.
        executor: "ray" (default) or "local" (in this process, sequential).
        address: Ray cluster address; None starts a local Ray instance.
        num_cpus: CPUs of the local Ray instance (default: the machine's).
        progress: called with a one-line progress text after every finished task.
        worker_output: show the Ray workers' output (TensorFlow's and the tools' noise) here; a
            failed point's error is in its row either way.

    Returns:
        The results rows, one per point, in grid order.

    Raises:
        ConfigError: unknown executor. KeyboardInterrupt propagates after the results so far
        are written (finished points stay cached).
    """
    if executor not in ("ray", "local"):
        raise ConfigError(f"sweep executor {executor!r} is not supported; valid: ray, local")
    points = expand(spec)
    groups = training_groups(points)
    for p in points:
        adopt_earlier_run(p)
    outcomes: dict[int, dict[str, Any]] = {}
    rows = [collect_row(p, None) for p in points]
    write_results(spec, rows)
    say = progress or (lambda text: log.info("%s", text))
    ex: _Local | _Ray = _Local() if executor == "local" else _Ray(address, num_cpus, worker_output)
    try:
        for key, members in groups.items():
            if all(_marker_ok(p.dir / "point.json", p.fingerprint) for p in members):
                for p in members:  # every point of the group finished: no need for its model
                    outcomes[p.index] = {"status": "ok", "cached": True}
                    rows[p.index] = collect_row(p, outcomes[p.index])
                continue
            ex.submit(("train", key), train_task, point_fn, members[0].cfg, _model_dir(spec.out, key))
        while ex.pending():
            tag, outcome = ex.next()
            if tag[0] == "train":
                key = tag[1]
                for p in groups[key]:
                    ex.submit(("point", p.index), point_task, point_fn, p, _model_dir(spec.out, key), outcome)
                if outcome.get("status") != "ok":
                    log.warning("training for %d point(s) failed: %s", len(groups[key]), outcome.get("error"))
                continue
            idx = tag[1]
            outcomes[idx] = outcome
            rows[idx] = collect_row(points[idx], outcome)
            write_results(spec, rows)
            say(_progress(rows, ex.running()))
    except BaseException:
        ex.cancel()
        raise
    finally:
        ex.close()
        write_results(spec, rows)
        try:
            write_report(spec, rows)
        except Exception as e:  # the table is the primary output; a plotting error must not hide it
            log.warning("sweep report could not be written: %s", e)
    return rows


# ----------------------------------------------------------------------------- report

def write_report(spec: SweepSpec, rows: Sequence[Mapping[str, Any]]) -> Path:
    """``<out>/report.html`` with the plots a hardware engineer wants, from finished points only."""
    from codesign.report import fmt, template_env

    ok = [r for r in rows if r["status"] == "ok"]
    pdir = spec.out / "plots"
    if pdir.exists():
        shutil.rmtree(pdir)
    acc = "acc_rtl" if any(r.get("acc_rtl") is not None for r in ok) else "acc_qkeras"
    made: list[tuple[str, Path | None]] = [
        (f"Pareto front: {acc} vs LUT", plots.pareto_plot(ok, "LUT", acc, pdir / "pareto_lut.png")),
        (f"Pareto front: {acc} vs DSP", plots.pareto_plot(ok, "DSP", acc, pdir / "pareto_dsp.png")),
        ("Latency and II vs reuse factor", plots.series_plot(ok, "reuse_factor", ["latency", "ii"],
                                                             pdir / "latency_ii_vs_rf.png", group="bits")),
        ("Resources and cycles per vector (II) vs reuse factor: the area/throughput trade",
         plots.series_plot(ok, "reuse_factor", ["LUT", "FF", "DSP", "ii"], pdir / "resources_ii_vs_rf.png",
                           group="bits")),
        ("Resources vs weight sparsity", plots.series_plot(ok, "weight_sparsity", ["LUT", "FF", "DSP"],
                                                           pdir / "resources_vs_sparsity.png", group="bits")),
        ("Resources vs bits", plots.series_plot(ok, "bits", ["LUT", "FF", "DSP"], pdir / "resources_vs_bits.png",
                                                group="reuse_factor")),
    ]
    figures = [{"title": t, "file": f"plots/{p.name}", "b64": plots.png_base64(p)} for t, p in made if p]
    missing = [t for t, p in made if p is None]
    cols = list(spec.grid) + ["status", "acc_qkeras", "acc_csim", "acc_rtl", "mismatches", "latency", "ii",
                              "LUT", "FF", "DSP", "CARRY", "BRAM", "error"]
    html = template_env(True).get_template("sweep.html.j2").render(
        out=str(spec.out), progress=_progress(rows, 0), columns=cols,
        rows=[[fmt(r.get(c)) if c != "error" else (r.get("error") or "") for c in cols] for r in rows],
        statuses=[r["status"] for r in rows], figures=figures, missing=missing,
        grid=[(k, ", ".join(slug_value(v) for v in vs)) for k, vs in spec.grid.items()],
        note="Resources are Yosys synth_xilinx estimates, not vendor place-and-route results.",
    )
    path = spec.out / "report.html"
    _atomic_write(path, html)
    return path
