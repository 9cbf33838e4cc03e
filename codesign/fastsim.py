"""Fast bulk regression of a generated design: the compiled, file-driven ``codesign/testbenches/tb_stream.v``.

The cocotb testbench (``codesign/testbenches/tb_network.py``) is the primary checker (protocol rules, latency/II
against design.json, layer localisation) but is Python-bound at ~10-20k cycles/s. This module runs
the same kind of stream (random input gaps, random output back-pressure, AXI4-Stream hold rule)
entirely inside the simulator: inputs go in through a hex file, outputs come back through a text
file, so millions of cycles take seconds under ``verilator --binary``. Icarus runs the same
testbench with the same xorshift stimulus, so both simulators must give identical outputs and cycle
counts.

Build reuse: the build directory holds ``key.txt``, a hash of the design files, the testbench, the
build parameters and the simulator command; an unchanged design is not rebuilt. The vector count,
gap/back-pressure percentages, seed, timeout and drain are run-time plusargs, and the compiled
vector capacity ``N`` is rounded up to a power of two, so one build serves many runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from codesign import resources, simtools, verilator_build
from codesign.errors import SimulationError, ToolError
from codesign.proc import run as proc_run
from codesign.testbenches import bus

log = logging.getLogger(__name__)

TB_FILE = resources.TESTBENCHES / "tb_stream.v"
TB_TOP = "tb_stream"
RESET_CYCLES = 4
_SUMMARY = re.compile(r"^# done (.*)$")


def load_design(rtl_dir: Path) -> dict[str, Any]:
    """design.json of ``rtl_dir``, checked (StageError names what is missing)."""
    from codesign.verify import load_design as checked_design

    return checked_design(rtl_dir)


def pack_hex(codes: np.ndarray, width: int) -> list[str]:
    """One hex word per row of N x n codes (tb_stream's input file): element i at bits [i*W +: W],
    two's complement, n*W/4 digits rounded up. ValueError for a code that no W-bit field holds
    (a silent wrap here would test the design on other inputs than the caller's)."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError(f"expected N x n codes, got shape {codes.shape}")
    bus.check_range(codes, width)
    return bus.hex_words(bus.pack_rows(codes, width), codes.shape[1] * width)


#: Inverse of :func:`pack_hex` on integers: N x n int64 codes (``codesign.testbenches.bus``).
unpack_words = bus.unpack_words


def _capacity(n: int) -> int:
    cap = 1024
    while cap < n:
        cap *= 2
    return cap


def _digest(paths: list[Path], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for p in paths:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _run(cmd: list[str], cwd: Path, env: dict[str, str], log_path: Path, what: str) -> subprocess.CompletedProcess[str]:
    log.info("Running command %s in directory %s", shlex.join(cmd), cwd)
    proc = proc_run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    with open(log_path, "a") as f:
        f.write(f"$ {shlex.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ToolError(what, proc.returncode, log_path, tail)
    return proc


def build(rtl_dir: Path, design: dict[str, Any], build_dir: Path, n_vectors: int,
          simulator: str = "verilator") -> tuple[list[str], float, bool]:
    """Build tb_stream around the design (unless the same build exists); return (run command
    prefix, build seconds, whether it was built now)."""
    sim = simtools.simulator(simulator)
    build_dir.mkdir(parents=True, exist_ok=True)
    env = sim.env()
    top = str(design["top"])
    sources = [(Path(rtl_dir) / f).resolve() for f in design["files"]] + [TB_FILE]
    params = {"IN_BITS": int(design["input"]["n"]) * int(design["input"]["type"]["width"]),
              "OUT_BITS": int(design["output"]["n"]) * int(design["output"]["type"]["width"]),
              "N": _capacity(n_vectors), "RESET_CYCLES": RESET_CYCLES,
              "BEATS": int(design["input"].get("beats", 1))}
    bench = sim.compiled_bench(TB_TOP, sources, params, {"TOP": top}, build_dir)
    cmd, exe = bench.cmd, bench.exe
    # the key leaves out cmd[0], the simulator's path: a build is reused whichever install path ran it
    key = _digest(sources, json.dumps({"cmd": cmd[1:], "sim": sim.name}, sort_keys=True))
    key_file = build_dir / "key.txt"
    if exe.is_file() and key_file.is_file() and key_file.read_text().strip() == key:
        return bench.run_prefix, 0.0, False
    key_file.unlink(missing_ok=True)
    if bench.make_dir is not None and bench.make_dir.exists():
        # objects of an older or interrupted build can look newer than their sources to make
        shutil.rmtree(bench.make_dir)
    log_path = build_dir / "build.log"
    log_path.write_text("")
    t0 = time.monotonic()
    _run(cmd, build_dir, env, log_path, f"{simulator} build of tb_stream + {top}")
    if bench.make_dir is not None:
        verilator_build.make(bench.make_dir, env, log_path)
    if not exe.is_file():
        raise SimulationError(f"{simulator} build of tb_stream + {top} wrote no {exe}; see {log_path}")
    key_file.write_text(key + "\n")
    return bench.run_prefix, time.monotonic() - t0, True


def run_stream(rtl_dir: Path, inputs: np.ndarray, *, simulator: str = "verilator", gap_pct: int = 20,
               bp_pct: int = 20, seed: int = 1, build_dir: Path | None = None,
               timeout_cycles: int | None = None) -> dict[str, Any]:
    """Stream ``inputs`` through the design in ``rtl_dir`` with the compiled testbench.

    Args:
        rtl_dir: holds design.json and the Verilog files it lists.
        inputs: N x n_in integer codes of the input type.
        simulator: "verilator" (``--binary``) or "icarus".
        gap_pct: percent chance that the source stays idle on a cycle it could present a vector.
        bp_pct: percent chance that out_ready is low on a cycle.
        seed: seed of both xorshift streams (same stimulus in every simulator).
        build_dir: build directory, reused while the design is unchanged (default
            ``<rtl_dir>/../.cache/fastsim/<simulator>``).
        timeout_cycles: watchdog; default 8 x (N x II + latency) + 10,000.

    Returns:
        outputs (N x n_out int64 codes, signed per design.json), latencies (per received vector:
        output edge - accept edge) and their min/max, ii_min (smallest distance between accept edges), cycles, accepted, received,
        protocol_violations (hold-rule and X on out_valid), spurious_outputs (an output with no
        accepted input), extra_outputs (after the last one), timeout, build_seconds, built,
        run_seconds, cycles_per_second, simulator, and the files used.

    Raises:
        StageError: design.json or a file it lists is missing.
        SimulationError / ToolError: the build or the simulator failed, or the output file is
            malformed (the message names the file and line).
    """
    rtl_dir = Path(rtl_dir)
    design = load_design(rtl_dir)
    inputs = np.asarray(inputs, dtype=np.int64)
    beats = int(design["input"].get("beats", 1))  # io_stream: one input word per pixel
    n_in, n_out = int(design["input"]["n"]) * beats, int(design["output"]["n"])
    if inputs.ndim != 2 or inputs.shape[1] != n_in or len(inputs) == 0:
        raise ValueError(f"expected N x {n_in} input codes (N >= 1) for {rtl_dir / 'design.json'}, "
                         f"got shape {inputs.shape}")
    for name, v in (("gap_pct", gap_pct), ("bp_pct", bp_pct)):
        if not 0 <= v <= 99:
            raise ValueError(f"{name}={v} is outside 0..99")
    build_dir = (Path(build_dir) if build_dir is not None else rtl_dir.parent / ".cache" / "fastsim" / simulator).resolve()
    run_prefix, build_s, built = build(rtl_dir, design, build_dir, len(inputs), simulator)

    w_in = int(design["input"]["type"]["width"])
    t_out = design["output"]["type"]
    in_file, out_file = build_dir / "stream_in.hex", build_dir / "stream_out.txt"
    in_file.write_text("\n".join(pack_hex(inputs.reshape(-1, n_in // beats), w_in)) + "\n")
    out_file.unlink(missing_ok=True)
    n = len(inputs)
    ii, latency = max(1, int(design["ii"])), int(design["latency"])
    if timeout_cycles is None:
        timeout_cycles = 8 * (n * ii + latency) + 10_000
    cmd = run_prefix + [f"+in={in_file}", f"+out={out_file}", f"+n={n}", f"+gap_pct={gap_pct}",
                        f"+bp_pct={bp_pct}", f"+seed={seed}", f"+timeout={timeout_cycles}",
                        f"+drain={latency + ii + 16}"]
    log_path = build_dir / "run.log"
    log_path.write_text("")
    t0 = time.monotonic()
    _run(cmd, build_dir, simtools.simulator(simulator).env(), log_path,
         f"{simulator} run of tb_stream + {design['top']}")
    run_s = time.monotonic() - t0
    if not out_file.is_file():
        raise SimulationError(f"{simulator} run of tb_stream wrote no {out_file}; see {log_path}")

    words, acc, out_edge, summary = [], [], [], None
    for lineno, line in enumerate(out_file.read_text().splitlines(), 1):
        m = _SUMMARY.match(line)
        if m:
            summary = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
            continue
        parts = line.split()
        try:
            words.append(int(parts[0], 16))
            acc.append(int(parts[1]))
            out_edge.append(int(parts[2]))
        except (ValueError, IndexError) as e:
            raise SimulationError(f"{out_file}:{lineno}: cannot read output line {line!r} "
                                  f"(X/Z in out_data on a transfer?)") from e
    if summary is None:
        raise SimulationError(f"{out_file} has no '# done' summary: the simulator stopped early; see {log_path}")
    outputs = bus.unpack_words(words, n_out, int(t_out["width"]), bool(t_out["signed"]))
    lat = np.asarray(out_edge, dtype=np.int64) - np.asarray(acc, dtype=np.int64)
    acc_edges = np.asarray(acc, dtype=np.int64)
    cycles = summary["cycles"]
    return {
        "outputs": outputs, "latencies": lat, "vectors": n, "accepted": summary["sent"], "received": summary["received"],
        "latency_expected": latency, "ii_expected": int(design["ii"]),
        "latency_min": int(lat.min()) if len(lat) else None, "latency_max": int(lat.max()) if len(lat) else None,
        "ii_min": int(np.diff(acc_edges).min()) if len(acc_edges) > 1 else None,
        "cycles": cycles, "protocol_violations": summary["violations"],
        "spurious_outputs": summary["spurious"], "extra_outputs": summary["extra"],
        "timeout": bool(summary["timeout"]), "simulator": simulator, "gap_pct": gap_pct, "bp_pct": bp_pct,
        "seed": seed, "build_seconds": round(build_s, 3), "built": built, "run_seconds": round(run_s, 3),
        "cycles_per_second": round(cycles / run_s) if run_s > 0 else None,
        "files": {"inputs": str(in_file), "outputs": str(out_file), "build_log": str(build_dir / "build.log"),
                  "run_log": str(log_path)},
    }


def compare(outputs: np.ndarray, expected: np.ndarray) -> dict[str, Any]:
    """Integer comparison of RTL outputs with the reference (C-sim), row by row.

    A missing or surplus row counts as a mismatching vector (``missing_vectors`` says how many).

    Returns:
        vectors, mismatched_vectors, mismatched_outputs, missing_vectors, and first_mismatch
        ``{"vector", "output", "got", "expected"}`` (None when everything matches; ``output`` and
        ``got`` are None for a missing row).
    """
    outputs, expected = np.asarray(outputs, dtype=np.int64), np.asarray(expected, dtype=np.int64)
    if outputs.ndim != 2 or expected.ndim != 2 or (len(outputs) and outputs.shape[1] != expected.shape[1]):
        raise ValueError(f"outputs {outputs.shape} and expected {expected.shape} are not comparable")
    k = min(len(outputs), len(expected))
    diff = outputs[:k] != expected[:k]
    bad_rows = np.flatnonzero(diff.any(axis=1))
    missing = abs(len(expected) - len(outputs))
    first = None
    if len(bad_rows):
        r = int(bad_rows[0])
        c = int(np.flatnonzero(diff[r])[0])
        first = {"vector": r, "output": c, "got": int(outputs[r, c]), "expected": int(expected[r, c])}
    elif missing:
        first = {"vector": k, "output": None, "got": None,
                 "expected": expected[k].tolist() if len(expected) > k else None}
    return {"vectors": int(len(expected)), "mismatched_vectors": int(len(bad_rows)) + missing,
            "mismatched_outputs": int(diff.sum()), "missing_vectors": missing, "first_mismatch": first}
