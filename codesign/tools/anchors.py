"""The QoR anchors of ``bench_da4ml``: da4ml 0.6.0 and alkaid, each in a virtual environment of its own.

Both need numpy >= 2, which breaks TensorFlow 2.14 in the project's venv, so each runs as a worker
script in ``.venv-<name>`` (created on demand with the pinned version from PyPI; both directories are
git-ignored). The worker gets a spec (JSON) of our hardware IR — the same integer weights, biases and
fixed-point types hls4ml chose — traces it with the anchor's API, writes the anchor's Verilog project
and, given input codes, runs the anchor's own bit-exact emulator of the traced logic on them.

Every hls4ml cast is handed to the anchor with the rounding and overflow modes it supports exactly
(:func:`cast_modes`); a mode it lacks is replaced by the nearest one of the same hardware shape and the
spec records the cast as inexact, so its design is synthesized but cannot be called bit-exact.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codesign.tools.tables import log

REPO = Path(__file__).resolve().parents[2]

#: The anchors' stand-in for a mode they lack: the same hardware shape, different ties or limits.
_NEAREST_ROUNDING = {"TRN": "TRN", "TRN_ZERO": "TRN", "RND": "RND", "RND_ZERO": "RND", "RND_MIN_INF": "RND",
                     "RND_INF": "RND", "RND_CONV": "RND"}
_NEAREST_OVERFLOW = {"WRAP": "WRAP", "SAT": "SAT", "SAT_ZERO": "SAT", "SAT_SYM": "SAT"}


@dataclass(frozen=True)
class Anchor:
    """One anchor: its PyPI package, pinned version, venv, exact modes and worker."""

    name: str
    package: str
    version: str
    #: hls4ml (ap_fixed) rounding modes the anchor's quantize reproduces bit for bit
    rounding: tuple[str, ...]
    #: ap_fixed overflow modes the anchor's quantize reproduces bit for bit
    overflow: tuple[str, ...]
    worker: str

    @property
    def venv(self) -> Path:
        return REPO / f".venv-{self.name}"


# Both workers: argv spec.json, project dir; the last stdout line is a JSON summary. The spec's casts
# carry (k, i, f, overflow, rounding) already mapped by cast_modes, so the workers hold no policy.
_WORKER_HEAD = r'''
import json, sys, time
from pathlib import Path
import numpy as np

spec = json.loads(Path(sys.argv[1]).read_text())
out = Path(sys.argv[2])
t0 = time.time()

def build(inp, quantize, relu):
    x = quantize(inp, *spec["input"])
    for L in spec["layers"]:
        if L["kind"] == "dense":
            w = np.array(L["weights"], dtype=np.float64) * 2.0 ** -L["weight_frac"]
            b = np.array(L["bias"], dtype=np.float64) * 2.0 ** -L["bias_frac"]
            x = x @ w + b
        elif L["kind"] == "relu":
            x = relu(x)
        elif L["kind"] != "cast":
            raise SystemExit(f"worker: layer kind {L['kind']} not handled")
        for c in L["casts"]:
            x = quantize(x, *c)
    return x

def check(comb):
    """The anchor's emulator of the traced logic on the spec's input codes: output codes (.npy)."""
    if not spec.get("check_inputs"):
        return None
    k, i, f = spec["input"][:3]
    codes = np.load(spec["check_inputs"]).astype(np.float64) * 2.0 ** -f
    y = np.asarray(comb.predict(codes), dtype=np.float64) * 2.0 ** spec["output_frac"]
    got = np.round(y).astype(np.int64)
    if not np.array_equal(got, y):
        raise SystemExit("worker: emulator output off the output type's grid")
    np.save(out.parent / "check_outputs.npy", got)
    return str(out.parent / "check_outputs.npy")
'''

DA4ML_WORKER = _WORKER_HEAD + r'''
from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace
from da4ml.trace.ops import quantize, relu
from da4ml.codegen import VerilogModel

inp = FixedVariableArrayInput((spec["n_in"],), hwconf=HWConfig(1, -1, -1),
                              solver_options={"hard_dc": spec["hard_dc"]})
x = build(inp, quantize, relu)
comb = comb_trace(inp, x)
model = VerilogModel(comb, "model", out, latency_cutoff=spec["latency_cutoff"], clock_period=spec["clock_ns"])
model.write()
gen = time.time() - t0
meta = json.loads((out / "metadata.json").read_text())
print(json.dumps({"stages": meta.get("latency"), "cost": float(comb.cost), "reg_bits": meta.get("reg_bits"),
                  "generate_seconds": round(gen, 3), "check_outputs": check(comb)}))
'''

ALKAID_WORKER = _WORKER_HEAD + r'''
from alkaid.trace import FVArrayInput, trace
from alkaid.trace.ops import quantize, relu
from alkaid.codegen import RTLModel

inp = FVArrayInput((spec["n_in"],))  # alkaid's defaults: HWConfig(1, 1, -1), default solver options
x = build(inp, quantize, relu)
comb = trace(inp, x)
model = RTLModel(comb, out, prj_name="model", latency_cutoff=spec["latency_cutoff"],
                 clock_period=spec["clock_ns"], flavor="verilog")
model.write()
gen = time.time() - t0
meta = json.loads((out / "metadata.json").read_text())
sigs = model.fsm.inp_signals + model.fsm.out_signals
# each element's (keep sign, integer, fractional) bits in the packed ports, element 0 at the LSBs
io = ({"port_in": sigs[0].name, "port_out": sigs[1].name,
       "inp": [[int(v) for v in p] for p in sigs[0].precisions],
       "out": [[int(v) for v in p] for p in sigs[1].precisions]} if len(sigs) == 2 else None)
print(json.dumps({"stages": meta.get("latency"), "cost": float(comb.cost), "reg_bits": meta.get("reg_bits"),
                  "generate_seconds": round(gen, 3), "check_outputs": check(comb), "io": io}))
'''

#: da4ml's last release (its successor is alkaid); TRN and RND only (docs/TOOLCHAIN.md).
DA4ML = Anchor("da4ml", "da4ml", "0.6.0", ("TRN", "RND"), ("WRAP", "SAT", "SAT_SYM"), DA4ML_WORKER)
#: alkaid's quantize: TRN, RND and RND_CONV; SAT clamps at full precision and then rounds, which
#: equals ap_fixed's round-then-saturate because both limits lie on the target grid.
ALKAID = Anchor("alkaid", "alkaid", "0.8.2", ("TRN", "RND", "RND_CONV"), ("WRAP", "SAT", "SAT_SYM"), ALKAID_WORKER)
ANCHORS = (DA4ML, ALKAID)


def cast_modes(anchor: Anchor, rounding: str, overflow: str) -> tuple[str, str, bool]:
    """(overflow, rounding, exact): the anchor's modes for an ap_fixed cast; exact False when the
    anchor lacks one of them and gets the nearest mode of the same hardware shape instead."""
    if rounding not in _NEAREST_ROUNDING:
        raise ValueError(f"rounding mode {rounding!r}; valid: {', '.join(_NEAREST_ROUNDING)}")
    if overflow not in _NEAREST_OVERFLOW:
        raise ValueError(f"overflow mode {overflow!r}; valid: {', '.join(_NEAREST_OVERFLOW)}")
    exact = rounding in anchor.rounding and overflow in anchor.overflow
    r = rounding if rounding in anchor.rounding else _NEAREST_ROUNDING[rounding]
    o = overflow if overflow in anchor.overflow else _NEAREST_OVERFLOW[overflow]
    return o, r, exact


def _kif(t: dict[str, Any]) -> tuple[int, int, int]:
    """ap_fixed<W, I> as the anchors' (keep sign, integer bits without the sign, fractional bits)."""
    return int(t["signed"]), int(t["integer"]) - int(t["signed"]), int(t["width"]) - int(t["integer"])


def make_spec(anchor: Anchor, graph_json: dict[str, Any], **options: Any) -> dict[str, Any]:
    """The worker's spec for a hardware-IR graph (``Graph.to_json()``): every cast hls4ml does, as
    [k, i, f, overflow, rounding] in the anchor's modes; ``inexact`` lists the casts it cannot
    reproduce (empty: the anchor's design can be bit-exact)."""
    inexact: list[str] = []

    def cast(t: dict[str, Any], where: str) -> list[Any]:
        o, r, exact = cast_modes(anchor, t["rounding"], t["overflow"])
        if not exact:
            inexact.append(f"{where}: {t['rounding']},{t['overflow']} as {r},{o}")
        return [*_kif(t), o, r]

    inp_t = graph_json["input"]["type"]
    layers = []
    for L in graph_json["layers"]:
        kind = L["kind"]
        if kind == "dense":
            # hls4ml: exact products accumulated in accum_t, then cast to the layer's result type
            casts = [cast(L["accum_type"], f"{L['name']} accum"), cast(L["out_type"], f"{L['name']} out")]
            layers.append({"kind": kind, "name": L["name"], "weights": L["weights"], "bias": L["bias"],
                           "weight_frac": L["weight_frac"], "bias_frac": L["bias_frac"], "casts": casts})
        elif kind in ("relu", "cast"):
            layers.append({"kind": kind, "name": L["name"], "casts": [cast(L["out_type"], f"{L['name']} out")]})
        else:
            raise ValueError(f"anchor {anchor.name}: layer {L['name']!r} of kind {kind!r} has no anchor equivalent "
                             f"(dense, relu, cast)")
    out_t = graph_json["output"]["type"]
    return {"anchor": anchor.name, "n_in": graph_json["input"]["n"], "input": cast(inp_t, "input"),
            "output_frac": int(out_t["width"]) - int(out_t["integer"]), "layers": layers, "inexact": inexact,
            **options}


def ensure_venv(anchor: Anchor) -> tuple[Path | None, str]:
    """The anchor venv's python (created and installed on demand), or None and the reason."""
    venv = anchor.venv
    py = venv / "bin" / "python"
    check = [str(py), "-c", f"import importlib.metadata as m; print(m.version({anchor.package!r}))"]
    if py.is_file():
        proc = subprocess.run(check, capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip() == anchor.version:
            return py, proc.stdout.strip()
    log(f"creating {venv} and installing {anchor.package}=={anchor.version} (separate from the project venv)")
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(py), "-m", "pip", "install", "-q", f"{anchor.package}=={anchor.version}"]]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return None, f"`{' '.join(cmd)}` failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
    proc = subprocess.run(check, capture_output=True, text=True)
    if proc.returncode != 0 or proc.stdout.strip() != anchor.version:
        return None, f"{anchor.package}=={anchor.version} not importable in {venv}: " \
                     f"{(proc.stderr.strip().splitlines() or [proc.stdout.strip()])[-1:]}"
    return py, proc.stdout.strip()


class AnchorError(Exception):
    pass


def run(anchor: Anchor, py: Path, spec: dict[str, Any], out: Path,
        check_inputs: np.ndarray | None = None) -> dict[str, Any]:
    """Write the anchor's Verilog project for ``spec`` into ``out/prj``; return its figures, the
    files to synthesize (top ``model``) and, given input codes, the emulator's output codes."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if check_inputs is not None:
        np.save(out / "check_inputs.npy", np.asarray(check_inputs, dtype=np.int64))
        spec = {**spec, "check_inputs": str(out / "check_inputs.npy")}
    (out / "spec.json").write_text(json.dumps(spec))
    (out / "worker.py").write_text(anchor.worker)
    proc = subprocess.run([str(py), str(out / "worker.py"), str(out / "spec.json"), str(out / "prj")],
                          capture_output=True, text=True, cwd=out)
    (out / "worker.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise AnchorError(f"{anchor.name} worker failed (see {out / 'worker.log'}): "
                          f"{proc.stderr.strip().splitlines()[-3:]}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    src = out / "prj" / "src"
    top_file = src / "model.v"
    if not top_file.is_file():
        raise AnchorError(f"{anchor.name} wrote no {top_file}")
    # da4ml's lookup_table.v reads a memory placeholder at parse time and is unused without tables
    files = sorted(str(p.relative_to(src)) for p in (src / "static").glob("*.v") if p.name != "lookup_table.v")
    files += sorted(p.name for p in src.glob("*.v") if p.name not in ("model.v", "model_wrapper.v"))
    files.append("model.v")
    info.update(src=str(src), files=files, top="model", latency_cycles=register_levels(top_file.read_text()))
    if info.get("check_outputs"):
        info["check_outputs"] = np.load(info["check_outputs"])
    return info


def register_levels(top_text: str) -> int:
    """Clock cycles from input to output of an anchor's pipelined top: its registers form one chain
    (input register, one per stage, output register), each assigned once in the clocked block."""
    import re

    body = top_text.split("always @(posedge clk)", 1)
    if len(body) < 2:
        return 0  # combinational
    return len(re.findall(r"^\s*[A-Za-z_][A-Za-z0-9_]*(?:\[[^\]]*\])?\s*<=", body[1], flags=re.M))


# ----------------------------------------------------------------------------- testbench wrapper
# An anchor's top is a free-running pipeline (clk, packed model_inp, packed model_out; every element
# in the narrowest format its range allows). Our cocotb testbench drives a valid/ready top with every
# element in the hls4ml type, so the anchor is wrapped: its formats mapped to ours, a valid bit
# travelling with each vector and an output FIFO that holds what back-pressure stalls (the pipeline
# itself cannot stall); in_ready reserves a FIFO entry for every vector in flight.

Kif = tuple[int, int, int]


def element_expr(src: str, offset: int, src_kif: Kif, dst_kif: Kif, allow_drop: bool) -> str:
    """A Verilog expression of one element of the packed vector ``src`` (at bit ``offset``, format
    ``src_kif``) in format ``dst_kif``: fractional bits zero-padded or dropped, integer bits sign- or
    zero-extended or (``allow_drop``) dropped. Without ``allow_drop`` a destination that cannot hold
    every source value is refused."""
    k0, i0, f0 = src_kif
    k1, i1, f1 = dst_kif
    if min(k0, k1) < 0 or not 0 <= k0 <= 1 or not 0 <= k1 <= 1:
        raise ValueError(f"sign bit must be 0 or 1: {src_kif} -> {dst_kif}")
    w0, w1 = k0 + i0 + f0, k1 + i1 + f1
    if w1 <= 0:
        raise ValueError(f"destination format {dst_kif} has no bits")
    if not allow_drop and w0 > 0 and (f0 > f1 or i0 > i1 or k0 > k1):
        raise ValueError(f"format {src_kif} does not fit into {dst_kif}")
    bits: list[tuple[str, int]] = []  # MSB first: ("0", -1), ("s", index) sign copy, ("b", index)
    for b in range(w1 - 1, -1, -1):
        s = b - f1 + f0
        if w0 <= 0 or s < 0 or (s >= w0 and not k0):
            bits.append(("0", -1))
        elif s >= w0:
            bits.append(("s", offset + w0 - 1))
        else:
            bits.append(("b", offset + s))
    parts: list[str] = []
    n = 0
    while n < len(bits):
        kind, idx = bits[n]
        m = n + 1
        if kind == "b":
            while m < len(bits) and bits[m][0] == "b" and bits[m][1] == bits[m - 1][1] - 1:
                m += 1
            lo = bits[m - 1][1]
            parts.append(f"{src}[{idx}]" if m - n == 1 else f"{src}[{idx}:{lo}]")
        else:
            while m < len(bits) and bits[m] == (kind, idx):
                m += 1
            parts.append(f"{m - n}'b0" if kind == "0" else f"{{{m - n}{{{src}[{idx}]}}}}")
        n = m
    return parts[0] if len(parts) == 1 else "{" + ", ".join(parts) + "}"


def handshake_top(top: str, inner: str, port_in: str, port_out: str, ours_in: Kif, ours_out: Kif,
                  anchor_in: list[Kif], anchor_out: list[Kif], latency: int) -> str:
    """Verilog of a valid/ready top (our testbench's ports, element i at bits [i*W +: W]) around an
    anchor's free-running pipeline of ``latency`` register levels."""
    if latency < 1:
        raise ValueError(f"anchor pipeline latency {latency}: the wrapper needs a registered pipeline")
    w_in, w_out = sum(ours_in), sum(ours_out)
    a_in_bits = sum(sum(p) for p in anchor_in)
    a_out_bits = sum(sum(p) for p in anchor_out)
    depth = latency + 1
    cw = (2 * depth).bit_length()
    pw = max(1, (depth - 1).bit_length())
    lines = [
        f"// {top}: our valid/ready interface around the anchor's free-running pipeline {inner}",
        f"// ({latency} register levels). Generated by codesign.tools.anchors for the bit-exact check only.",
        "`default_nettype none",
        f"module {top} (",
        "  input  wire clk,", "  input  wire rst,", "  input  wire in_valid,", "  output wire in_ready,",
        f"  input  wire [{len(anchor_in) * w_in - 1}:0] in_data,", "  output wire out_valid,",
        "  input  wire out_ready,", f"  output wire [{len(anchor_out) * w_out - 1}:0] out_data", ");",
        f"  localparam L = {latency};", f"  localparam D = {depth};",
        f"  wire [{max(a_in_bits, 1) - 1}:0] a_in;", f"  wire [{a_out_bits - 1}:0] a_out;",
        f"  wire [{len(anchor_out) * w_out - 1}:0] a_out_ours;",
    ]
    off = 0
    for j, p in enumerate(anchor_in):
        if sum(p) > 0:
            lines.append(f"  assign a_in[{off + sum(p) - 1}:{off}] = "
                         f"{element_expr('in_data', j * w_in, ours_in, tuple(p), True)};")  # type: ignore[arg-type]
        off += sum(p)
    if a_in_bits == 0:
        lines.append("  assign a_in = 1'b0;")
    off = 0
    for j, p in enumerate(anchor_out):
        lines.append(f"  assign a_out_ours[{(j + 1) * w_out - 1}:{j * w_out}] = "
                     f"{element_expr('a_out', off, tuple(p), ours_out, False)};")  # type: ignore[arg-type]
        off += sum(p)
    shift = "accept" if latency == 1 else "{vpipe[L-2:0], accept}"
    lines += [
        f"  {inner} u_anchor (.clk(clk), .{port_in}(a_in), .{port_out}(a_out));",
        "  reg  [L-1:0] vpipe;  // vpipe[k]: the vector in register level k+1 is valid",
        f"  reg  [{cw - 1}:0] inflight, count;",
        f"  reg  [{len(anchor_out) * w_out - 1}:0] fifo [0:D-1];",
        f"  reg  [{pw - 1}:0] rd, wr;",
        "  wire accept = in_valid & in_ready;",
        "  wire arrive = vpipe[L-1];",
        "  wire empty = (count == 0);",
        "  wire push = arrive & ~(empty & out_ready);  // an arriving vector leaves at once if it can",
        "  wire pop = ~empty & out_ready;",
        f"  assign in_ready = (count + inflight) < {cw}'d{depth};",
        "  assign out_valid = ~empty | arrive;",
        "  assign out_data = empty ? a_out_ours : fifo[rd];",
        "  always @(posedge clk) begin",
        "    if (rst) begin",
        "      vpipe <= 0; inflight <= 0; count <= 0; rd <= 0; wr <= 0;",
        "    end else begin",
        f"      vpipe <= {shift};",
        "      inflight <= inflight + {{(" + str(cw - 1) + "){1'b0}}, accept} - {{(" + str(cw - 1) + "){1'b0}}, arrive};",
        "      count <= count + {{(" + str(cw - 1) + "){1'b0}}, push} - {{(" + str(cw - 1) + "){1'b0}}, pop};",
        f"      if (push) begin fifo[wr] <= a_out_ours; wr <= (wr == {pw}'d{depth - 1}) ? {pw}'d0 : wr + {pw}'d1; end",
        f"      if (pop) rd <= (rd == {pw}'d{depth - 1}) ? {pw}'d0 : rd + {pw}'d1;",
        "    end",
        "  end",
        "endmodule",
        "`default_nettype wire",
    ]
    return "\n".join(lines) + "\n"


def testbench_rtl(info: dict[str, Any], graph_json: dict[str, Any], out: Path, top: str = "anchor_top") -> Path:
    """``out``: the anchor's Verilog (copied from ``info['src']``), :func:`handshake_top` and a
    design.json our testbench (:func:`codesign.verify.verify_design`) reads; returns ``out``."""
    io = info.get("io")
    if not io:
        raise AnchorError("the anchor's top has not exactly one input and one output port")
    if out.exists():
        shutil.rmtree(out)
    src = Path(info["src"])
    for f in info["files"]:
        (out / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / f, out / f)
    inp, outp = graph_json["input"], graph_json["output"]
    if len(io["inp"]) != inp["n"] or len(io["out"]) != outp["n"]:
        raise AnchorError(f"the anchor's ports carry {len(io['inp'])} -> {len(io['out'])} elements, "
                          f"the model {inp['n']} -> {outp['n']}")
    text = handshake_top(top, info["top"], io["port_in"], io["port_out"], _kif(inp["type"]), _kif(outp["type"]),
                         [tuple(p) for p in io["inp"]], [tuple(p) for p in io["out"]],  # type: ignore[misc]
                         int(info["latency_cycles"]))
    (out / f"{top}.v").write_text(text)
    design = {"format": 1, "top": top, "files": [*info["files"], f"{top}.v"],
              "input": {"n": inp["n"], "type": inp["type"], "port": "in_data", "bits": inp["n"] * inp["type"]["width"]},
              "output": {"n": outp["n"], "type": outp["type"], "port": "out_data",
                         "bits": outp["n"] * outp["type"]["width"]},
              "latency": int(info["latency_cycles"]), "ii": 1, "clock_period_ns": float(info.get("clock_ns", 5.0))}
    (out / "design.json").write_text(json.dumps(design, indent=1, sort_keys=True) + "\n")
    return out
