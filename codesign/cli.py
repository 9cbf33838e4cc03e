"""The ``codesign`` command. The only place that prints for the user or picks an exit code.

Exit codes: 0 success, 1 verification found mismatches (or a sweep point failed), 2 a user error
(config, data, model, stage order), 3 a tool failed (log named) or, for ``--version``, a required
tool is missing, 130 interrupted (SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from codesign.errors import CodesignError, ToolError
from codesign.flow import FLOW

EPILOG = """\
stages (each reads the previous stage's files in the run directory):
  train    QKeras model with quantization-aware training and pruning   -> <run>/model/
  convert  hls4ml Vitis project, compiled C-sim, hardware graph         -> <run>/hls/
  rtl      bit-exact Verilog, file list, design.json                    -> <run>/rtl/
  verify   cocotb + Verilator, every output integer vs hls4ml C-sim     -> <run>/sim/
  synth    Yosys synth_xilinx resource estimate                         -> <run>/synth/
  report   HTML/Markdown/JSON report with plots                         -> <run>/report/

examples:
  codesign flow                              the default digits MLP, end to end, into runs/digits
  codesign init my.yaml && codesign flow my.yaml --out runs/my
  codesign flow --from-model net.json --weights net_weights.h5 --out runs/imported
  codesign rtl my.yaml --out runs/my         re-run one stage
  codesign sweep sweep.yaml                  a grid of design points on Ray
  codesign search docs/search_example.yaml --trials 40 --out runs/search40
                                             the most accurate models within a LUT/latency budget
"""


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbose < 2:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if verbose == 0:  # the libraries' advice (legacy HDF5 saving, deprecations) is not the user's business
        for module in ("keras", "tensorflow", "qkeras", "hls4ml", "tf_keras"):
            warnings.filterwarnings("ignore", module=rf"{module}(\..*)?$")
            logging.getLogger(module).setLevel(logging.ERROR)


def _load_config(args: argparse.Namespace) -> Any:
    from codesign import config

    cfg = config.load(args.config)
    changes: dict[str, Any] = {}
    if getattr(args, "out", None):
        changes["output_dir"] = args.out
    if getattr(args, "from_model", None):
        changes["model.import_path"] = args.from_model
        changes["model.weights_path"] = args.weights
    if getattr(args, "reuse_factor", None):
        changes["hls.reuse_factor"] = args.reuse_factor
    if getattr(args, "vectors", None) is not None:
        changes["verify.random_vectors"] = args.vectors
    return cfg.replace(**changes) if changes else cfg


_tickers: dict[str, Any] = {}


def _progress(stage: str, state: str, seconds: float) -> None:
    from codesign import progress

    if state == "start":
        if progress.active():  # a live elapsed-time line on a terminal
            _tickers[stage] = progress.StageTicker(stage)
        else:
            print(f"[{stage:>6}] running ...", flush=True)
        return
    ticker = _tickers.pop(stage, None)
    if ticker is not None:
        ticker.close()
    print(f"[{stage:>6}] {'done' if state == 'done' else 'up to date'} ({seconds:.1f} s)", flush=True)


def _csim_headline(a: dict[str, Any], model: dict[str, Any] | None) -> str:
    """The C-sim against the Keras model: exact rows for a quantized (QKeras) model, where they
    should all match; argmax agreement and the largest error for a float model, whose fixed-point
    C-sim cannot equal it."""
    quantized = any(str(layer.get("kind", "")).startswith("Q") for layer in (model or {}).get("layers", []))
    if quantized:
        text = f"C-sim vs QKeras exact rows {a['exact_rows']}/{a['rows']}"
        return text if a["exact_rows"] == a["rows"] else f"{text}, argmax agreement {a['argmax_agree']}/{a['rows']}"
    return (f"C-sim (fixed point) vs the float model: argmax agreement {a['argmax_agree']}/{a['rows']}, "
            f"max |error| {a['max_abs_err']:.4g}")


def _summary(results: dict[str, Any]) -> int:
    """Print the end-of-flow summary; return the exit code (1 when verification failed)."""
    run_dir = results["run_dir"]
    lines = [f"run directory: {run_dir}"]
    m = results.get("model")
    if m:
        acc = m.get("test_accuracy")
        sp = m.get("global_sparsity", m.get("sparsity"))
        lines.append(f"model:   test accuracy {acc:.4f}" if isinstance(acc, float) else "model:   imported")
        if isinstance(sp, (int, float)):
            lines[-1] += f", weight sparsity {sp:.3f}"
    h = results.get("hls")
    if h and "csim_vs_qkeras" in h:
        lines.append("convert: " + _csim_headline(h["csim_vs_qkeras"], m))
    r = results.get("rtl")
    if r:
        adders = f"{r['adders']} adders, " if "adders" in r else ""
        lines.append(f"rtl:     latency {r['latency']} cycles, II {r['ii']}, {adders}{r['multipliers']} general "
                     f"multipliers, {r['verilog_lines']} lines")
    code = 0
    s = results.get("sim")
    if s:
        ok = s.get("passed")
        lines.append(f"verify:  {'PASS' if ok else 'FAIL'}: {s.get('vectors')} vectors, {s.get('mismatches')} "
                     f"mismatches, latency {s.get('latency_min')}..{s.get('latency_max')}, II {s.get('ii')}")
        if not ok:
            code = 1
    y = results.get("synth")
    if y:
        lines.append(f"synth:   LUT {y.get('LUT')} FF {y.get('FF')} DSP {y.get('DSP')} CARRY {y.get('CARRY')} "
                     f"BRAM {y.get('BRAM')} (Yosys estimate)")
    ip = results.get("ip")
    if ip:
        lines.append(f"ip:      {Path(run_dir) / 'ip'} ({ip['vlnv']}; datasheet.md, run_tb.py"
                     f"{', test vectors' if ip.get('vectors') else ''})")
    rep = results.get("report")
    if rep:
        lines.append(f"report:  {Path(run_dir) / 'report' / 'report.html'}")
    print("\n".join(lines))
    return code


def cmd_init(args: argparse.Namespace) -> int:
    from codesign.config import example_yaml

    path = Path(args.path)
    if path.exists() and not args.force:
        raise CodesignError(f"{path} exists", hint="use --force to overwrite")
    path.write_text(example_yaml())
    print(f"wrote {path}")
    return 0


def cmd_flow(args: argparse.Namespace) -> int:
    from codesign.flow import run_flow

    from codesign import progress

    cfg = _load_config(args)
    t0 = time.time()
    progress.enable()
    try:
        results = run_flow(cfg, Path(cfg.output_dir), stages=args.stages, force=args.force, progress=_progress)
    finally:
        for ticker in _tickers.values():
            ticker.close()
        _tickers.clear()
    code = _summary(results)
    print(f"total:   {time.time() - t0:.1f} s")
    return code


def cmd_stage(args: argparse.Namespace) -> int:
    from codesign.flow import COMMANDS, run_stage

    cfg = _load_config(args)
    stage = COMMANDS[args.command]
    t0 = time.time()
    res, _ = run_stage(stage, cfg, Path(cfg.output_dir), force=True)
    print(f"[{stage.name:>6}] done ({time.time() - t0:.1f} s): {Path(cfg.output_dir) / stage.name}")
    return _summary({"run_dir": cfg.output_dir, stage.name: res})


def cmd_sweep(args: argparse.Namespace) -> int:
    from codesign import sweep

    spec = sweep.load_spec(args.sweep, out=args.out)
    rows = sweep.run_sweep(spec, address=args.address, executor="local" if args.local else "ray",
                           num_cpus=args.workers, progress=lambda line: print(line, flush=True),
                           worker_output=args.verbose > 0)
    failed = [r for r in rows if r.get("status") != "ok"]
    print(f"sweep: {len(rows) - len(failed)} points ok, {len(failed)} failed; results in {spec.out}")
    return 1 if failed else 0


def cmd_search(args: argparse.Namespace) -> int:
    from codesign import search

    spec = search.load_spec(args.search, out=args.out, trials=args.trials)
    summary = search.run_search(spec, address=args.address, executor="local" if args.local else "ray",
                                num_cpus=args.workers, progress=lambda line: print(line, flush=True),
                                worker_output=args.verbose > 0)
    rows = {r["trial"]: r for r in summary["rows"]}
    print(f"search: {summary['finished']} trials finished, {len(summary['failed'])} failed; "
          f"Pareto front of {len(summary['front'])} point(s) ({', '.join(spec.objectives)}), "
          f"{'every one verified bit-exact and synthesized' if summary['front_verified'] else 'NOT all verified'}")
    for t in summary["front"]:
        r = rows[t]
        print(f"  trial {t:3d} {r['slug']}: accuracy {r['accuracy']:.4f}, LUT {r['LUT']}, FF {r['FF']}, "
              f"DSP {r['DSP']}, latency {r['latency']}, II {r['ii']}, mismatches {r['mismatches']}")
    for k, v in summary["calibration"]["leave_one_out"].items():
        if v["n"]:
            print(f"estimate vs Yosys {k}: {v['n']} points, median error {100 * v['median']:.1f} %, "
                  f"max {100 * v['max']:.1f} % (leave-one-out)")
    if summary["refuted"]:
        print(f"refuted by verification: trials {summary['refuted']}")
    print(f"results: {spec.out / 'results.csv'}, report: {spec.out / 'report.html'}")
    return 1 if summary["failed"] or summary["refuted"] or not summary["front_verified"] else 0


class _VersionAction(argparse.Action):
    """``--version``: codesign's version and the tools it finds (codesign.toolinfo), then exit."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from codesign import toolinfo

        text, code = toolinfo.report()
        print(text, end="", flush=True)
        parser.exit(code)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="codesign", description="Quantized neural network -> verified, bit-exact Verilog IP core.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action=_VersionAction, nargs=0,
                   help="print the versions of codesign and of the packages and tools it finds, then exit "
                        "(exit code 3 when a required one is missing)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("init", help="write a commented example configuration")
    s.add_argument("path", nargs="?", default="codesign.yaml")
    s.add_argument("--force", action="store_true", help="overwrite an existing file")
    s.set_defaults(func=cmd_init)

    def run_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("config", nargs="?", help="YAML configuration (default: the digits example)")
        sp.add_argument("--out", help="run directory (overrides output_dir)")
        sp.add_argument("--reuse-factor", type=int, help="global reuse factor (overrides hls.reuse_factor)")
        sp.add_argument("--vectors", type=int, help="random verification vectors (overrides verify.random_vectors)")

    s = sub.add_parser("flow", help=" -> ".join(st.command for st in FLOW) + " (train or import)")
    run_args(s)
    s.add_argument("--from-model", metavar="MODEL", help="import a Keras/QKeras .h5 or .json instead of training")
    s.add_argument("--weights", metavar="H5", help="weights .h5 for a .json model")
    s.add_argument("--stages", help="comma-separated subset, e.g. rtl,verify (default: all)")
    s.add_argument("--force", action="store_true", help="re-run stages even when up to date")
    s.set_defaults(func=cmd_flow)

    for stage in FLOW:
        s = sub.add_parser(stage.command, help=stage.help)
        run_args(s)
        if stage.name == "model":
            s.add_argument("--from-model", metavar="MODEL", help="import instead of training")
            s.add_argument("--weights", metavar="H5", help="weights .h5 for a .json model")
        s.set_defaults(func=cmd_stage)

    s = sub.add_parser("sweep", help="run a grid of design points (Ray) and report the trade-offs")
    s.add_argument("sweep", help="sweep YAML: base config, grid of dotted fields -> values, out")
    s.add_argument("--address", help="Ray cluster address (default: a local Ray instance)")
    s.add_argument("--out", help="sweep output directory (overrides the file's out)")
    s.add_argument("--workers", type=int, help="parallel points (default: CPU count)")
    s.add_argument("--local", action="store_true", help="run points in this process instead of on Ray")
    s.set_defaults(func=cmd_sweep)

    s = sub.add_parser("search", help="hardware-aware search: the accuracy / resources / latency Pareto front "
                                      "under constraints (Optuna on Ray)")
    s.add_argument("search", help="search YAML: base config, space, objectives, constraints, trials, out")
    s.add_argument("--trials", type=int, help="trial budget, replayed trials included (overrides the file's)")
    s.add_argument("--address", help="Ray cluster address (default: a local Ray instance)")
    s.add_argument("--out", help="search output directory (overrides the file's out)")
    s.add_argument("--workers", type=int, help="parallel trials (default: CPU count)")
    s.add_argument("--local", action="store_true", help="run trials in this process instead of on Ray")
    s.set_defaults(func=cmd_search)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every stage cleans up the same way (exit 143)."""


def _on_signal(signum: int, frame: Any) -> None:
    """SIGINT/SIGTERM: pass the signal on to the tools we started in our process group, then raise.

    cocotb's runner starts make/Verilator/the simulation in our process group. A terminal's Ctrl-C
    reaches them anyway, a signal sent to our pid alone does not: when we lead our own process
    group (a shell job, or started with start_new_session), forward it to the group, ignoring it
    ourselves meanwhile. When we do not lead it the group is someone else's: forward nothing.
    Tools codesign starts itself (codesign.proc) run in their own session and are killed by
    codesign.proc when the exception passes.
    """
    if os.getpgrp() == os.getpid():
        previous = signal.signal(signum, signal.SIG_IGN)
        try:
            os.killpg(0, signum)
        except OSError:
            pass
        finally:
            signal.signal(signum, previous)
    global _received
    _received = signum
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


#: the last SIGINT/SIGTERM :func:`_on_signal` took in this command. The exception raised there need
#: not be the one that arrives: Ray's wait, interrupted by a signal, raises its own KeyboardInterrupt.
_received: int | None = None


def _install_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) in (signal.SIG_IGN,):
            continue  # e.g. started with nohup / in the background: keep ignoring
        signal.signal(sig, _on_signal)


def _os_error_line(e: OSError) -> str:
    """One line for an OS error: the path(s) and the reason."""
    reason = e.strerror or str(e)
    if e.filename is not None and e.filename2 is not None:
        return f"{e.filename} -> {e.filename2}: {reason}"
    if e.filename is not None:
        return f"{e.filename}: {reason}"
    return reason


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    show_tb = args.debug or args.verbose > 0
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    global _received
    _received = None
    _install_signal_handlers()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as e:
        if show_tb:
            traceback.print_exc()
        terminated = isinstance(e, Terminated) or _received == signal.SIGTERM
        what = "terminated (SIGTERM)" if terminated else "interrupted (SIGINT)"
        stage = getattr(e, "stage", None)
        where = f" during stage {stage}" if stage else ""
        print(f"{what}{where} of `codesign {args.command}`; finished stages are kept", file=sys.stderr)
        return 143 if terminated else 130
    except ToolError as e:
        if args.debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 3
    except CodesignError as e:
        if args.debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 2
    except OSError as e:  # a user's path: missing, not a directory, not writable, disk full
        if show_tb:
            traceback.print_exc()
        print(f"error: {_os_error_line(e)}", file=sys.stderr)
        return 2
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, h in previous.items():
                if h is not None:
                    signal.signal(sig, h)


if __name__ == "__main__":
    sys.exit(main())
