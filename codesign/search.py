"""Hardware-aware search: the most accurate models that fit a resource and latency budget.

``codesign search search.yaml`` (file format: :mod:`codesign.search_space`) proposes trial
configurations with Optuna's multi-objective samplers (MOTPE or NSGA-II, with the constraints as
Optuna constraints) and runs them as Ray tasks through the sweep's executor
(:class:`codesign.sweep._Ray`: a local Ray by default, a cluster by address; Ctrl-C cancels the
running tasks and ends their tools). Ray Tune's ``OptunaSearch`` is not used: ``ray.tune`` does not
import with the pinned Ray (its extras - fsspec, pyarrow, pandas - are not installed), and Tune
would add its own trial directories, checkpointing and resume on top of the run directories and
fingerprints this module shares with the sweep; Optuna's ask/tell interface gives the same sampler.

A trial runs the flow up to the rtl stage (train, convert with the C-sim, generate the RTL): its
accuracy is the C-sim's (the RTL is bit-exact to it once verified), its latency and II are
design.json's, its resources the calibrated estimate of :mod:`codesign.estimate`. The first
``calibration_trials`` trials, and in the end every point of the Pareto front, also run sim and
synth: verified bit-exact (0 mismatches) and synthesized with Yosys, whose figures replace the
estimate and calibrate it. The front is recomputed after each round until every point on it has
been verified and synthesized. A point whose verification finds a mismatch leaves the front and is
reported.

Layout of ``out``::

    trials/<slug>-<fp>/      a full run directory per trial, and trial.json (its record)
    models/<train-key>/      trained models shared by trials that train identically
    results.csv, results.json, search.json   one row per trial; the front and the calibration
    report.html, plots/

Resumable: a trial is recorded in its trial.json (written atomically) when it ends; a rerun replays
every recorded trial into the sampler and runs only the rest of the budget (``trials`` counts the
replayed ones), and a proposal whose config fingerprint was recorded is answered from the record.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from codesign import config as cfgmod
from codesign import estimate, plots, rundir, sweep
from codesign.errors import CodesignError, ConfigError
from codesign.search_space import (METRICS, SearchSpec, TrialPoint, distributions, labels_of, pareto_indices,
                                   trial_point, value_of)
from codesign.search_space import load_spec as load_spec, spec_from_dict as spec_from_dict
from codesign.sweep_grid import cfg_data, read_config_file, same_config

log = logging.getLogger(__name__)

FAST_STAGES = ["hls", "rtl"]
FULL_STAGES = ["hls", "rtl", "sim", "synth"]
RECORD = "trial.json"
#: proposals in a row that repeat a tried configuration before the search calls the space used up
MAX_REPEATS = 200


class NoFeasibleTrial(CodesignError):
    """No finished trial satisfies the constraints (the trials are kept on disk)."""


# ----------------------------------------------------------------------------- a trial (on a worker)

def trial_task(point_fn: sweep.PointFn, tp: TrialPoint, models: Path, full: bool) -> dict[str, Any]:
    """Run one trial's flow (``full``: through sim and synth); never raises for an ordinary error.

    The model comes from ``models/<train-key>`` when a trial that trains identically published
    it; otherwise this trial trains and publishes its model (renamed into place, so two trials
    training the same model at once never see half of one).
    """
    t0 = time.monotonic()
    try:
        tp.dir.mkdir(parents=True, exist_ok=True)
        cfgmod.dump(tp.cfg, tp.dir / "config.yaml")  # what a resume compares the trial's config with
        shared = models / tp.train_key
        have = (tp.dir / "model" / "result.json").is_file()
        if not have and sweep._marker_ok(shared / "train.json", tp.train_key) \
                and (shared / "model" / "result.json").is_file():
            if (tp.dir / "model").exists():
                shutil.rmtree(tp.dir / "model")
            shutil.copytree(shared / "model", tp.dir / "model")
            have = True
        stages = ([] if have else ["model"]) + (FULL_STAGES if full else FAST_STAGES)
        point_fn(tp.cfg, tp.dir, stages)
        if not have:
            _publish(tp.dir / "model", shared, tp.train_key)
    except Exception as e:  # recorded as this trial's failure; the search goes on
        return {"status": "failed", **sweep._error(e), "seconds": time.monotonic() - t0}
    return {"status": "ok", "seconds": time.monotonic() - t0}


def _publish(model: Path, shared: Path, key: str) -> None:
    if (shared / "model").exists() or not (model / "result.json").is_file():
        return
    shared.mkdir(parents=True, exist_ok=True)
    tmp = shared / f".model.tmp{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(model, tmp)
    try:
        os.rename(tmp, shared / "model")
    except OSError:  # another trial published it first
        shutil.rmtree(tmp, ignore_errors=True)
        return
    sweep._atomic_json(shared / "train.json", {"status": "ok", "fingerprint": key})


# ----------------------------------------------------------------------------- records

def _read(path: Path) -> dict[str, Any] | None:
    try:
        return rundir.read_json(path) if path.is_file() else None
    except ValueError:
        return None


def measure(tp: TrialPoint) -> dict[str, Any]:
    """What a trial's run directory holds: accuracy, latency/II, raw estimate, sim and Yosys figures."""
    d = tp.dir
    model, hls, sim, syn = (_read(d / s / "result.json") for s in ("model", "hls", "sim", "synth"))
    design = _read(d / "rtl" / "design.json") if (d / "rtl" / "result.json").is_file() else None
    m: dict[str, Any] = {
        "acc_qkeras": (model or {}).get("test_accuracy"), "weight_sparsity": (model or {}).get("weight_sparsity"),
        "acc_csim": (hls or {}).get("csim_accuracy"),
        "latency": (design or {}).get("latency"), "ii": (design or {}).get("ii"),
        "raw": estimate.raw(design) if design else None,
        "acc_rtl": (sim or {}).get("accuracy"), "mismatches": (sim or {}).get("mismatches"),
        "latency_measured": (sim or {}).get("latency_max"), "ii_measured": (sim or {}).get("ii"),
        "yosys": {r: syn.get(r) for r in estimate.RESOURCES} if syn else None,
    }
    return m


def _record(tp: TrialPoint, number: int, outcome: Mapping[str, Any], full: bool) -> dict[str, Any]:
    rec = {"status": outcome["status"], "fingerprint": tp.fingerprint, "trial": number, "slug": tp.slug,
           "values": tp.params, "dir": str(tp.dir), "full": full and outcome["status"] == "ok",
           "seconds": outcome.get("seconds"), "error": outcome.get("error", ""), **measure(tp)}
    if rec["status"] == "ok" and (rec["raw"] is None or rec["acc_csim"] is None):
        rec.update(status="failed", error="the flow finished without hls/result.json or rtl/design.json")
    if rec["full"] and rec["yosys"] is None:
        rec.update(status="failed", full=False, error="verified and synthesized, but synth/result.json is missing")
    tp.dir.mkdir(parents=True, exist_ok=True)
    sweep._atomic_json(tp.dir / RECORD, rec)
    return rec


def load_records(spec: SearchSpec) -> dict[str, dict[str, Any]]:
    """Finished trials on disk that are trials of this search: fingerprint -> record.

    A record matches when its values give its fingerprint and directory, or, after codesign gained
    config fields (new defaults change every fingerprint), when its run's config.yaml equals the
    trial's config in every field it has (:func:`codesign.sweep_grid.same_config`); its run directory stays where it is.
    """
    out: dict[str, dict[str, Any]] = {}
    root = spec.out / "trials"
    for path in sorted(root.glob(f"*/{RECORD}")) if root.is_dir() else []:
        rec = _read(path)
        if not rec or rec.get("status") != "ok":
            continue
        try:
            tp = trial_point(spec, rec["values"])
        except (ConfigError, KeyError):
            continue  # a trial of another space or base: not this search's
        if not (tp.fingerprint == rec.get("fingerprint") and tp.dir == path.parent):
            old = read_config_file(path.parent / "config.yaml")
            if old is None or not same_config(old, cfg_data(tp.cfg)):
                continue
        design = _read(path.parent / "rtl" / "design.json")
        if design is not None:  # the estimate's features as this version computes them
            rec["raw"] = estimate.raw(design)
        rec["dir"] = str(path.parent)
        out[tp.fingerprint] = rec
    return out


def point_of(spec: SearchSpec, rec: Mapping[str, Any]) -> TrialPoint:
    """The trial point of a record, in the record's run directory."""
    tp = trial_point(spec, rec["values"])
    d = Path(rec["dir"])
    return dataclasses.replace(tp, dir=d, cfg=dataclasses.replace(tp.cfg, output_dir=str(d)))


# ----------------------------------------------------------------------------- metrics of a record

def metrics(rec: Mapping[str, Any], scales: Mapping[str, Any]) -> dict[str, Any]:
    """The figures the search ranks a trial by: Yosys where it was synthesized, else the estimate."""
    est = estimate.apply(rec["raw"], scales)
    ys = rec.get("yosys") or {}
    acc = rec.get("acc_rtl") if rec.get("full") and rec.get("acc_rtl") is not None else rec.get("acc_csim")
    out = {"accuracy": acc, "latency": rec.get("latency"), "ii": rec.get("ii")}
    for r in estimate.RESOURCES:
        out[r] = ys.get(r) if ys.get(r) is not None else est[r]
    out["source"] = "yosys" if rec.get("full") else "estimate"
    out["estimate"] = est
    return out


def violations(spec: SearchSpec, m: Mapping[str, Any]) -> list[float]:
    return [c.violation(float(m[c.metric])) for c in spec.constraints]


def feasible(spec: SearchSpec, m: Mapping[str, Any]) -> bool:
    return all(v <= 0 for v in violations(spec, m))


def verified(rec: Mapping[str, Any]) -> bool:
    return bool(rec.get("full")) and rec.get("mismatches") == 0


# ----------------------------------------------------------------------------- the search

def _sampler(spec: SearchSpec) -> Any:
    """The constraints reach the sampler as each trial's constraint values (Optuna 5's
    ``set_constraint``; <= 0 is feasible), so both samplers prefer feasible trials."""
    import optuna

    if spec.sampler == "nsga2":
        # a population of a quarter of the budget gives a few generations instead of one random one
        return optuna.samplers.NSGAIISampler(population_size=max(4, min(50, spec.trials // 4)), seed=spec.seed)
    return optuna.samplers.TPESampler(n_startup_trials=max(2, min(10, spec.trials // 4)), seed=spec.seed)


def _constraints(spec: SearchSpec, m: Mapping[str, Any]) -> dict[str, float]:
    return {c.text(): v for c, v in zip(spec.constraints, violations(spec, m))}


def run_search(spec: SearchSpec, *, point_fn: sweep.PointFn = sweep.flow_point, executor: str = "ray",
               address: str | None = None, num_cpus: int | None = None,
               progress: Callable[[str], None] | None = None, worker_output: bool = True) -> dict[str, Any]:
    """Run the search (replaying recorded trials), verify and synthesize the front, write the report.

    Returns the summary (also ``<out>/search.json``): rows, front, calibration, counts.

    Raises:
        ConfigError: unknown executor. NoFeasibleTrial: no trial satisfies the constraints (after
        the results and report are written). KeyboardInterrupt propagates after the results so
        far are written (recorded trials stay).
    """
    import optuna

    if executor not in ("ray", "local"):
        raise ConfigError(f"search executor {executor!r} is not supported; valid: ray, local")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    say = progress or (lambda text: log.info("%s", text))
    dirs = [METRICS[o] + "imize" for o in spec.objectives]
    study = optuna.create_study(directions=dirs, sampler=_sampler(spec))
    dists = distributions(spec)
    # a rerun with a smaller budget than the trials on disk takes the first ones (by trial number)
    records = dict(sorted(load_records(spec).items(), key=lambda kv: kv[1]["trial"])[:spec.trials])
    scales = estimate.calibrate(_synth_points(records.values()))
    replayed = 0
    for rec in records.values():
        m = metrics(rec, scales)
        study.add_trial(optuna.trial.create_trial(
            params=labels_of(spec, rec["values"]), distributions=dists,
            values=[float(m[o]) for o in spec.objectives], user_attrs={"fingerprint": rec["fingerprint"]},
            constraints=_constraints(spec, m) or None))
        replayed += 1
    if replayed:
        say(f"search: {replayed} recorded trial(s) replayed from {spec.out / 'trials'}")
    models = spec.out / "models"
    ex: Any = sweep._Local() if executor == "local" else sweep._Ray(address, num_cpus, worker_output)
    workers = 1 if executor == "local" else _workers(ex, num_cpus, address)
    in_flight: dict[str, tuple[TrialPoint, bool, list[Any], int]] = {}
    # trials are numbered by the distinct configurations run (Optuna's numbers count repeated proposals)
    number = 1 + max((r["trial"] for r in records.values()), default=-1)
    failed: list[dict[str, Any]] = []
    told = replayed  # distinct configurations finished (recorded or failed)
    repeats = 0
    exhausted = False
    n_full = sum(1 for r in records.values() if r.get("full"))
    summary: dict[str, Any] = {}
    try:
        while (told < spec.trials and not exhausted) or in_flight:
            while not exhausted and told + len(in_flight) < spec.trials and len(in_flight) < workers:
                trial = study.ask(dists)
                tp = trial_point(spec, value_of(spec, trial.params))
                # A proposal met before is answered from its record (or with the running trial's result)
                # and does not count: the budget is distinct configurations, so a resumed search
                # counts exactly what is on disk. A space the sampler keeps re-proposing is used up.
                if tp.fingerprint in records:
                    _tell(study, trial, spec, records[tp.fingerprint], scales)
                    repeats += 1
                elif tp.fingerprint in in_flight:
                    in_flight[tp.fingerprint][2].append(trial)
                    repeats += 1
                else:
                    repeats = 0
                if repeats:
                    if repeats >= MAX_REPEATS:
                        say(f"search: {MAX_REPEATS} proposals in a row were configurations already tried; "
                            f"the space looks used up at {told + len(in_flight)} trials")
                        exhausted = True
                        break
                    continue
                full = n_full < spec.calibration_trials
                n_full += full
                in_flight[tp.fingerprint] = (tp, full, [trial], number)
                number += 1
                ex.submit(tp.fingerprint, trial_task, point_fn, tp, models, full)
            if not in_flight:
                break
            fp, outcome = ex.next()
            tp, full, trials, num = in_flight.pop(fp)
            rec = _record(tp, num, outcome, full)
            if rec["status"] == "ok":
                records[fp] = rec
                if rec["full"]:
                    scales = estimate.calibrate(_synth_points(records.values()))
            else:
                failed.append(rec)
                log.warning("trial %d (%s) failed: %s", rec["trial"], tp.slug, rec["error"])
            for t in trials:
                if rec["status"] == "ok":
                    _tell(study, t, spec, rec, scales)
                else:
                    study.tell(t, state=optuna.trial.TrialState.FAIL)
            told += 1
            say(f"search: {told}/{spec.trials} trials, {len(records)} ok, {len(failed)} failed, "
                f"{len(in_flight)} running")
        scales = _verify_front(spec, records, scales, ex, workers, point_fn, models, say)
    except BaseException:
        ex.cancel()
        raise
    finally:
        ex.close()
        summary = write_results(spec, records, failed, scales)
        try:
            write_report(spec, summary)
        except Exception as e:  # the table is the primary output; a plotting error must not hide it
            log.warning("search report could not be written: %s", e)
    if records and not any(r["feasible"] for r in summary["rows"]):
        near = min(summary["rows"], key=lambda r: r["violation"])
        raise NoFeasibleTrial(
            f"no trial satisfies the constraints {', '.join(c.text() for c in spec.constraints)}: "
            f"{len(records)} trial(s) finished; the closest, trial {near['trial']} ({near['slug']}), has "
            + ", ".join(f"{c.metric} {near[c.metric]:g}" for c in spec.constraints),
            hint=f"relax the constraints or widen the space; the trials are kept in {spec.out} and a rerun "
                 "with more --trials continues from them")
    return summary


def _workers(ex: Any, num_cpus: int | None, address: str | None) -> int:
    if address:
        return max(1, int(ex.ray.cluster_resources().get("CPU", 1)))
    return max(1, num_cpus or os.cpu_count() or 1)


def _tell(study: Any, trial: Any, spec: SearchSpec, rec: Mapping[str, Any], scales: Mapping[str, Any]) -> None:
    m = metrics(rec, scales)
    for key, v in _constraints(spec, m).items():
        trial.set_constraint(key, v)
    trial.set_user_attr("fingerprint", rec["fingerprint"])
    study.tell(trial, [float(m[o]) for o in spec.objectives])


def _synth_points(records: Any) -> list[dict[str, Any]]:
    return [{"trial": r["trial"], "raw": r["raw"], "yosys": r["yosys"]} for r in records
            if r.get("full") and r.get("yosys")]


def front(spec: SearchSpec, records: Mapping[str, Mapping[str, Any]], scales: Mapping[str, Any]) -> list[str]:
    """Fingerprints of the Pareto front among the feasible trials not refuted by verification."""
    cand = [(fp, metrics(r, scales)) for fp, r in records.items()
            if not (r.get("full") and r.get("mismatches") != 0)]
    cand = [(fp, m) for fp, m in cand if feasible(spec, m)]
    pts = [[float(m[o]) for o in spec.objectives] for _, m in cand]
    return [cand[i][0] for i in pareto_indices(pts, [METRICS[o] for o in spec.objectives])]


def _verify_front(spec: SearchSpec, records: dict[str, dict[str, Any]], scales: dict[str, Any], ex: Any,
                  workers: int, point_fn: sweep.PointFn, models: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Verify and synthesize every front point, recomputing the front until all of it is."""
    while True:
        todo = [fp for fp in front(spec, records, scales) if not records[fp].get("full")]
        if not todo:
            return scales
        say(f"search: verifying and synthesizing {len(todo)} front point(s)")
        for i in range(0, len(todo), workers):
            batch = todo[i:i + workers]
            for fp in batch:
                ex.submit(fp, trial_task, point_fn, point_of(spec, records[fp]), models, True)
            for _ in batch:
                fp, outcome = ex.next()
                rec = records[fp]
                tp = point_of(spec, rec)
                new = _record(tp, rec["trial"], outcome, True)
                if new["status"] != "ok":  # it ran before: the full flow failing is this point's verdict
                    new.update(status="ok", full=True, mismatches=new.get("mismatches"),
                               verify_error=new["error"])
                    sweep._atomic_json(tp.dir / RECORD, new)
                records[fp] = new
                if new.get("mismatches") not in (0, None) or new.get("verify_error"):
                    log.warning("front point %s failed verification: %s", new["slug"],
                                new.get("verify_error") or f"{new.get('mismatches')} mismatches")
        scales = estimate.calibrate(_synth_points(records.values()))


# ----------------------------------------------------------------------------- results and report

ROW_COLUMNS = ["trial", "slug", "on_front", "feasible", "verified", "source", "accuracy", "acc_qkeras", "acc_csim",
               "acc_rtl", "mismatches", "latency", "ii", "LUT", "FF", "DSP", "est_LUT", "est_FF", "est_DSP",
               "yosys_LUT", "yosys_FF", "yosys_DSP", "weight_sparsity", "seconds", "fingerprint", "dir"]


def write_results(spec: SearchSpec, records: Mapping[str, Mapping[str, Any]], failed: Sequence[Mapping[str, Any]],
                  scales: Mapping[str, Any]) -> dict[str, Any]:
    """results.csv / results.json (one row per finished trial) and search.json, each written atomically."""
    on_front = set(front(spec, records, scales))
    rows = []
    for fp, r in sorted(records.items(), key=lambda kv: kv[1]["trial"]):
        m = metrics(r, scales)
        ys = r.get("yosys") or {}
        row = {"trial": r["trial"], "slug": r["slug"], **{d.path: r["values"][d.path] for d in spec.space},
               "on_front": fp in on_front, "feasible": feasible(spec, m), "verified": verified(r),
               "source": m["source"], "accuracy": m["accuracy"], "acc_qkeras": r.get("acc_qkeras"),
               "acc_csim": r.get("acc_csim"), "acc_rtl": r.get("acc_rtl"), "mismatches": r.get("mismatches"),
               "latency": m["latency"], "ii": m["ii"], "LUT": m["LUT"], "FF": m["FF"], "DSP": m["DSP"],
               **{f"est_{k}": round(v, 1) for k, v in m["estimate"].items()},
               **{f"yosys_{k}": ys.get(k) for k in estimate.RESOURCES},
               "weight_sparsity": r.get("weight_sparsity"), "seconds": r.get("seconds"),
               "violation": max(violations(spec, m), default=0.0), "fingerprint": fp, "dir": r["dir"]}
        rows.append(row)
    errs = estimate.errors(_synth_points(records.values()))
    summary = {
        "objectives": list(spec.objectives), "constraints": [c.text() for c in spec.constraints],
        "trials": spec.trials, "finished": len(records), "failed": [{"slug": f["slug"], "error": f["error"]}
                                                                  for f in failed],
        "front": [r["trial"] for r in rows if r["on_front"]],
        "front_verified": all(r["verified"] for r in rows if r["on_front"]),
        "refuted": [r["trial"] for r in rows if r["source"] == "yosys" and r["mismatches"] != 0],
        "calibration": {"scales": dict(scales), "leave_one_out": {k: {x: v[x] for x in ("n", "median", "max")}
                                                                  for k, v in errs.items()}},
        "calibration_points": errs, "rows": rows,
    }
    spec.out.mkdir(parents=True, exist_ok=True)
    header = ROW_COLUMNS[:2] + [d.path for d in spec.space] + ROW_COLUMNS[2:]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else sweep._csv_value(r.get(k)) for k in header})
    sweep._atomic_write(spec.out / "results.csv", buf.getvalue())
    sweep._atomic_json(spec.out / "results.json", {"columns": header, "rows": rows})
    sweep._atomic_json(spec.out / "search.json", summary)
    return summary


def write_report(spec: SearchSpec, summary: Mapping[str, Any]) -> Path:
    """``<out>/report.html``: the front (dominated points grey), estimate vs Yosys, the front's configs."""
    from codesign.report import fmt, template_env

    rows = summary["rows"]
    pdir = spec.out / "plots"
    if pdir.exists():
        shutil.rmtree(pdir)
    res = [o for o in spec.objectives if o in estimate.RESOURCES] or ["LUT"]
    made = [(f"accuracy vs {x}: the front (all objectives) in red, dominated points grey, infeasible crossed",
             plots.search_front_plot(rows, x, "accuracy", pdir / f"front_{x.lower()}.png"))
            for x in res + [o for o in spec.objectives if o in ("latency", "ii")]]
    made.append(("calibrated estimate vs Yosys (leave-one-out), synthesized trials",
                 plots.estimate_plot(summary["calibration_points"], pdir / "estimate_vs_yosys.png")))
    figures = [{"title": t, "file": f"plots/{p.name}", "b64": plots.png_base64(p)} for t, p in made if p]
    params = [d.path for d in spec.space]
    fcols = ["trial"] + params + ["accuracy", "acc_rtl", "mismatches", "LUT", "FF", "DSP", "est_LUT", "latency", "ii"]
    acols = ["trial", "slug", "on_front", "feasible", "source", "accuracy", "LUT", "FF", "DSP", "latency", "ii"]
    cal = summary["calibration"]
    html = template_env(True).get_template("search.html.j2").render(
        out=str(spec.out), summary=summary, objectives=", ".join(spec.objectives),
        constraints=", ".join(summary["constraints"]) or "none",
        front_cols=fcols, front_rows=[[fmt(r.get(c)) for c in fcols] for r in rows if r["on_front"]],
        all_cols=acols, all_rows=[([fmt(r.get(c)) for c in acols], r["on_front"]) for r in rows],
        cal=[(k, _weights(cal["scales"].get(k)), v["n"], _pct(v["median"]), _pct(v["max"]))
             for k, v in cal["leave_one_out"].items()],
        figures=figures, note="Resources are Yosys synth_xilinx estimates, not vendor place-and-route results.")
    path = spec.out / "report.html"
    sweep._atomic_write(path, html)
    return path


def _weights(w: Sequence[float] | None) -> str:
    if w is None:
        return "uncalibrated"
    if len(w) == 1:
        return f"scale {w[0]:.4g}"
    return ", ".join(f"{name} x {x:.4g}" for name, x in zip(estimate.LUT_FEATURES, w))


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"
