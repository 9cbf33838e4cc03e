"""Seeded random QKeras MLPs pushed through convert -> golden -> RTL -> lint -> simulation.

Each case is drawn from ``numpy.random.default_rng([seed, index])``, so ``--seed S`` and a case
index reproduce one model exactly. A case checks, in order:

1. hls4ml conversion (Vitis, io_parallel, Latency strategy) and C-sim compilation;
2. the integer golden model (:mod:`codesign.golden`) equals the C-sim on every output integer;
3. :func:`codesign.rtlgen.generate` either builds the design or refuses with an
   :class:`~codesign.errors.RtlGenError` that names one of the graph's layers ("refused");
4. ``verilator --lint-only -Wall`` is clean;
5. the cocotb testbench finds 0 mismatches and measures latency / II equal to design.json.

The model families: random MLPs (:mod:`codesign.tools.fuzz_mlp`) and CNNs
(:mod:`codesign.tools.fuzz_cnn`).

Command line: ``python -m codesign.tools.fuzz --cases N --seed S [--family mlp|cnn|cnn-stream] [--jobs J] [--simulator auto|verilator|icarus|both]``
prints one line per case and ``fuzz: P passed, F failed, R refused (N cases, T s)``; exit code 1
when any case failed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from codesign.errors import CodesignError, ConversionError, RtlGenError, ToolError
from codesign.tools import fuzz_cnn
from codesign.tools.fuzz_mlp import CaseSpec, make_case

#: Model families the campaign draws from.
FAMILIES = ("mlp", "cnn", "cnn-stream")
#: Cycles above which "auto" picks Verilator (Icarus simulates at ~2.6k cycles/s, docs/TOOLCHAIN.md).
ICARUS_MAX_CYCLES = 6000
#: Verilog-relevant size above which "auto" picks Verilator regardless of cycles.
ICARUS_MAX_TERMS = 400


# ----------------------------------------------------------------------------- one case

@dataclass
class CaseResult:
    spec: CaseSpec
    status: str = "failed"  #: "passed", "failed", "refused", "invalid" (hls4ml's C-sim aborts)
    stage: str = ""  #: where it ended
    detail: str = ""
    simulators: list[str] = field(default_factory=list)
    latency: int | None = None
    ii: int | None = None
    golden_mismatches: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    design: dict[str, Any] | None = None

    def line(self) -> str:
        t = sum(self.seconds.values())
        head = f"case {self.spec.seed}/{self.spec.index}: {self.status.upper()}"
        if self.status == "passed":
            head += f" ({'+'.join(self.simulators) or 'no sim'}, latency {self.latency}, II {self.ii})"
        elif self.detail:
            head += f" at {self.stage}: {self.detail.splitlines()[0][:300]}"
        return f"{head} [{t:.1f} s] {self.spec.describe()}"


def corner_codes(graph: Any) -> np.ndarray:
    """All-min, all-max, all-zero, all-one-LSB and alternating min/max input vectors."""
    t, n = graph.input_type, graph.n_in
    rows = [np.full(n, t.min_code), np.full(n, t.max_code), np.zeros(n), np.full(n, min(1, t.max_code)),
            np.where(np.arange(n) % 2 == 0, t.min_code, t.max_code),
            np.where(np.arange(n) % 2 == 1, t.min_code, t.max_code)]
    return np.array(rows, dtype=np.int64)


def pick_simulator(design: dict[str, Any], n_vectors: int, simulator: str) -> list[str]:
    if simulator == "both":
        return ["icarus", "verilator"]
    if simulator != "auto":
        return [simulator]
    cycles = (n_vectors + 8) * max(int(design["ii"]), 1) * 1.4 + design["latency"]
    size = sum(layer["nonzero_weights"] for layer in design["layers"])
    return ["icarus"] if cycles <= ICARUS_MAX_CYCLES and size <= ICARUS_MAX_TERMS else ["verilator"]


def run_case(spec: Any, work_dir: Path, *, simulator: str = "auto", vectors: int = 300,
             simulate: bool = True, lint: bool = True) -> CaseResult:
    """Run one case in ``work_dir`` (created); never raises for a case failure."""
    from codesign import pipeline, rtlgen, simtools
    from codesign import vectors as vec

    res = CaseResult(spec)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / "case.log"

    def clock(name: str, t0: float) -> None:
        res.seconds[name] = round(res.seconds.get(name, 0.0) + time.monotonic() - t0, 3)

    try:
        res.stage = "build"
        t0 = time.monotonic()
        import tensorflow as tf

        tf.keras.backend.clear_session()
        cfg = spec.config(vectors)
        with simtools.redirect_output(log_path):
            model = spec.build()
            res.stage = "convert"
            converted = pipeline.convert(cfg, model, work_dir / "hls")
            graph = converted.graph
        clock("convert", t0)

        res.stage = "golden"
        t0 = time.monotonic()
        inputs = np.concatenate([corner_codes(graph), vec.random_codes(graph, vectors, spec.index + 1)])
        try:
            arrays = pipeline.reference(graph, converted.csim(), inputs)
        except ConversionError as e:  # the reference itself aborts (an ap_fixed assertion): no reference
            clock("golden", t0)
            res.status, res.detail = "invalid", str(e)
            return res
        agree = pipeline.golden_agreement(graph, arrays)
        res.golden_mismatches = agree["mismatched_outputs"]
        clock("golden", t0)
        if agree["mismatched_outputs"]:
            last = arrays[f"golden_{graph.layers[-1].name}"]
            bad = int(np.flatnonzero((last != arrays["expected"]).any(axis=1))[0])
            res.detail = (f"golden != C-sim on {agree['mismatched_vectors']}/{agree['vectors']} vectors; first "
                          f"vector {bad}: input {inputs[bad].tolist()} golden {last[bad].tolist()} "
                          f"C-sim {arrays['expected'][bad].tolist()}")
            return res

        res.stage = "rtl"
        t0 = time.monotonic()
        try:
            design = pipeline.generate(graph, work_dir / "rtl")
        except RtlGenError as e:
            clock("rtl", t0)
            names = [layer.name for layer in graph.layers]
            if any(f"layer {n}:" in str(e) for n in names):
                res.status, res.detail = "refused", str(e)
            else:
                res.detail = f"RtlGenError does not name a layer of {names}: {e}"
            return res
        res.design = design
        res.latency, res.ii = design["latency"], design["ii"]
        clock("rtl", t0)
        again = work_dir / "rtl_again"
        rtlgen.generate(graph, again)
        for f in design["files"]:
            if (again / f).read_bytes() != (work_dir / "rtl" / f).read_bytes():
                res.detail = f"generate is not deterministic: {f} differs between two runs"
                return res
        shutil.rmtree(again)

        lint_error = ""
        if lint:
            res.stage = "lint"
            t0 = time.monotonic()
            rtl = work_dir / "rtl"
            try:
                pipeline.lint(rtl, design, work_dir / "lint.log")
            except ToolError as e:  # a failure, but simulate anyway: bit-exactness is checked separately
                warn = [ln for ln in str(e).splitlines() if ln.startswith("%Warning") or ln.startswith("%Error")]
                lint_error = f"lint: {warn[0] if warn else e} (see {work_dir / 'lint.log'})"
            clock("lint", t0)

        if simulate:
            res.stage = "simulate"
            for sim in pick_simulator(design, len(inputs), simulator):
                t0 = time.monotonic()
                out = pipeline.simulate(work_dir / "rtl", design, arrays, work_dir, simulator=sim,
                                        seed=spec.index + 1)
                clock(sim, t0)
                res.simulators.append(sim)
                if out["problems"]:
                    res.detail = f"{sim}: " + "; ".join(out["problems"])
                    return res
        if lint_error:
            res.stage, res.detail = "lint", lint_error + ("; simulation passed" if simulate else "")
            return res
        res.status, res.stage = "passed", "done"
        return res
    except CodesignError as e:
        res.detail = f"{type(e).__name__}: {e}"
        return res
    except Exception as e:  # a crash is a failed case, with its traceback in case.log
        with open(log_path, "a") as f:
            traceback.print_exc(file=f)
        res.detail = f"{type(e).__name__}: {e} (traceback in {log_path})"
        return res


# ----------------------------------------------------------------------------- campaign

def family_case(family: str, seed: int, index: int) -> Any:
    """Case ``index`` of a family: "mlp" (:func:`make_case`), "cnn" or "cnn-stream" (io_stream;
    :mod:`codesign.tools.fuzz_cnn`)."""
    if family in ("cnn", "cnn-stream"):
        return fuzz_cnn.make_case(seed, index, stream=family == "cnn-stream")
    if family != "mlp":
        raise ValueError(f"fuzz family {family!r}; valid: {', '.join(FAMILIES)}")
    return make_case(seed, index)


def _run_one(family: str, seed: int, index: int, work_root: str, simulator: str, vectors: int,
             keep: bool) -> CaseResult:
    """One campaign case in its own directory; passed/refused cases are cleaned up unless ``keep``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    spec = family_case(family, seed, index)
    work = Path(work_root) / f"case_{seed}_{index}"
    if work.exists():
        shutil.rmtree(work)
    r = run_case(spec, work, simulator=simulator, vectors=vectors)
    r.design = None  # keep results small when they cross a process boundary
    if r.status != "failed" and not keep:
        shutil.rmtree(work, ignore_errors=True)
    return r


def run_campaign(cases: int, seed: int, work_root: Path, *, simulator: str = "auto", vectors: int = 300,
                 keep: bool = False, start: int = 0, jobs: int = 1, family: str = "mlp",
                 indices: list[int] | None = None, print_fn: Any = print) -> list[CaseResult]:
    """Run cases ``start .. start+cases-1``; ``jobs`` > 1 runs them in worker processes.

    Lines are printed as cases finish (so a killed campaign has still reported every finished case);
    the returned list is in case order.
    """
    t_all = time.monotonic()
    if indices is None:
        indices = list(range(start, start + cases))
    args = (str(work_root), simulator, vectors, keep)
    done: dict[int, CaseResult] = {}
    if jobs <= 1:
        for index in indices:
            done[index] = _run_one(family, seed, index, *args)
            print_fn(done[index].line())
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        # spawn, not fork: TensorFlow's threads do not survive a fork
        ctx = multiprocessing.get_context("spawn")
        crashes: dict[int, int] = {}
        while len(done) < len(indices):
            todo = [i for i in indices if i not in done]
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                futures = {pool.submit(_run_one, family, seed, i, *args): i for i in todo}
                try:
                    for fut in as_completed(futures):
                        i = futures[fut]
                        done[i] = fut.result()
                        print_fn(done[i].line())
                except BrokenProcessPool:
                    # a worker died: the cases it may have been running (the oldest unfinished) get
                    # a strike and run again in a fresh pool; the second strike fails the case
                    for i in [i for i in todo if i not in done][:jobs + 1]:
                        crashes[i] = crashes.get(i, 0) + 1
                        if crashes[i] >= 2:
                            done[i] = CaseResult(family_case(family, seed, i),
                                                 detail="its worker process died twice (a crash, not a mismatch)")
                            print_fn(done[i].line())
    results = [done[i] for i in indices]
    print_fn(summary(results, time.monotonic() - t_all))
    return results


#: Case outcomes, in the order the summary line names them.
STATUSES = ("passed", "failed", "refused", "invalid")


def _counts(statuses: list[str]) -> str:
    """'P passed, F failed, R refused[, I invalid (...)]' for a list of case statuses."""
    n = {s: statuses.count(s) for s in STATUSES}
    invalid = f", {n['invalid']} invalid (hls4ml's C-sim aborts: no reference)" if n["invalid"] else ""
    return f"{n['passed']} passed, {n['failed']} failed, {n['refused']} refused{invalid}"


def summary(results: list[CaseResult], seconds: float | None = None) -> str:
    sims: dict[str, int] = {}
    for r in results:
        for s in r.simulators:
            sims[s] = sims.get(s, 0) + 1
    tail = f" ({len(results)} cases" + (f", {seconds:.0f} s" if seconds is not None else "")
    tail += "".join(f", {v} {k}" for k, v in sorted(sims.items())) + ")"
    return f"fuzz: {_counts([r.status for r in results])}{tail}"


_LINE = re.compile(r"^case (\d+)/(\d+): (PASSED|FAILED|REFUSED|INVALID)\b")


def log_statuses(paths: list[Path]) -> dict[tuple[int, int], str]:
    """(seed, index) -> status of every case line in campaign logs; a later line wins."""
    status: dict[tuple[int, int], str] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            m = _LINE.match(line)
            if m:
                status[(int(m.group(1)), int(m.group(2)))] = m.group(3).lower()
    return status


def summarize_logs(paths: list[Path]) -> str:
    """One summary over campaign logs (a campaign resumed with --start): each case counted once,
    its last reported status wins; names the failed cases."""
    status = log_statuses(paths)
    seeds = sorted({k[0] for k in status})
    failed = sorted(k for k, v in status.items() if v == "failed")
    tail = f" ({len(status)} distinct cases, seeds {', '.join(map(str, seeds))})"
    if failed:
        tail += "; failed: " + ", ".join(f"{a}/{b}" for a, b in failed)
    return f"fuzz: {_counts(list(status.values()))}{tail}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codesign.tools.fuzz", description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0, help="first case index (re-run one case: --start K --cases 1)")
    p.add_argument("--simulator", default="auto", choices=("auto", "verilator", "icarus", "both"))
    p.add_argument("--vectors", type=int, default=300, help="random vectors per case (plus 6 corner vectors)")
    p.add_argument("--work", help="work directory (default: a temporary one; failed cases are kept)")
    p.add_argument("--keep", action="store_true", help="keep passed cases' files too")
    p.add_argument("--jobs", type=int, default=1, help="cases run in parallel worker processes")
    p.add_argument("--family", default="mlp", choices=FAMILIES, help="random QKeras MLPs, CNNs (io_parallel) or CNNs on io_stream")
    p.add_argument("--summarize", nargs="+", metavar="LOG", help="only summarize campaign logs (no cases run)")
    p.add_argument("--rerun", metavar="LOG", help="run again the cases a campaign log reports as --rerun-status")
    p.add_argument("--rerun-status", default="refused", choices=("refused", "failed"))
    args = p.parse_args(argv)
    if args.summarize:
        line = summarize_logs([Path(x) for x in args.summarize])
        print(line)
        return 1 if " 0 failed" not in line else 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    indices = None
    if args.rerun:
        indices = sorted(i for (seed, i), st in log_statuses([Path(args.rerun)]).items()
                         if seed == args.seed and st == args.rerun_status)
        args.cases, args.start = len(indices), indices[0] if indices else 0
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="codesign-fuzz-"))
    what = (f"{len(indices)} cases reported {args.rerun_status} in {args.rerun}" if indices is not None
            else f"cases {args.start}..{args.start + args.cases - 1}")
    print(f"fuzz: {args.family}, seed {args.seed}, {what}, work {work}", flush=True)
    results = run_campaign(args.cases, args.seed, work, simulator=args.simulator, vectors=args.vectors,
                           keep=args.keep, start=args.start, jobs=args.jobs, family=args.family, indices=indices,
                           print_fn=lambda s: print(s, flush=True))
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
