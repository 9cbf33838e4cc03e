"""The deliverable IP core: the generated RTL plus AXI4-Stream top, FuseSoC core, testbenches, datasheet.

The 'ip' stage (:func:`run`) copies the rtl stage's Verilog and design.json into ``<run>/ip/`` and
:func:`package` adds:

- ``<top>_axis.v``: AXI4-Stream wrapper (``aclk``, ``aresetn`` active low and synchronous,
  ``s_axis_*`` in, ``m_axis_*`` out) around the core; tdata widths rounded up to whole bytes
  (input padding ignored, output padding driven 0). No registers: same latency and II as the core.
- ``<top>.core``: FuseSoC CAPI2 core ``codesign:nn:<top>:0.1.0`` with targets ``lint``
  (Verilator ``--lint-only -Wall``) and ``sim`` (Verilator ``--binary`` of ``tb_<top>.v``).
- ``tb_<top>.v`` + ``tb_<top>_in.hex`` / ``tb_<top>_expected.hex``: a self-checking Verilog
  testbench of the wrapper streaming up to :data:`TB_VECTORS` vectors (empty hex files and a
  testbench that fails saying so when no vectors were available).
- ``datasheet.md``: ports, element types and bit layout, latency, II, clock, per-layer table,
  resources and accuracy as the run measured them (sim and synth figures marked STALE when they
  were measured on another design.json; "not measured yet" when the run has none).
- ``tb_network.py`` + ``bus.py`` (the cocotb testbench and its bus packing), ``run_tb.py`` (runs
  it on this directory alone) and ``vectors.npz`` when vectors are available.

Vectors come from ``<run>/sim/vectors.npz`` when that file fits the design (same input/output
sizes and layer probes) and is newer than ``<run>/hls/graph.json``. The stage runs after verify
and synth, so it reads their results; it writes only ``<run>/ip/``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from codesign import design as design_io
from codesign import resources, rundir
from codesign.errors import StageError
from codesign.testbenches import bus

log = logging.getLogger(__name__)

TEMPLATES = resources.TEMPLATES / "ip"
CORE_VERSION = "0.1.0"
#: Vectors streamed by the FuseSoC ``sim`` testbench (the cocotb run checks all of them).
TB_VECTORS = 64
#: Vectors of the full-rate phase of that testbench (latency and II checked on each).
TB_FULL_RATE = 8


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, trim_blocks=False, lstrip_blocks=False,
    )


def tdata_bits(bits: int) -> int:
    """AXI4-Stream tdata width for a payload of ``bits``: the next multiple of 8."""
    return (int(bits) + 7) // 8 * 8


def vlnv(design: dict[str, Any]) -> str:
    return f"codesign:nn:{design['top']}:{CORE_VERSION}"


def _bits(design: dict[str, Any], side: str) -> int:
    d = design[side]
    return int(d.get("bits", int(d["n"]) * int(d["type"]["width"])))


def _description(design: dict[str, Any]) -> str:
    beats = int(design["input"].get("beats", 1))
    size = (f"{beats} pixels of {design['input']['n']} channel(s) per image" if beats > 1
            else str(design["input"]["n"]))
    return (f"{len(design.get('layers', []))}-layer quantized network, {size} -> "
            f"{design['output']['n']}, latency {design['latency']} cycles, II {design['ii']}")


def _hex_lines(codes: np.ndarray, width: int, bits: int) -> str:
    """A $readmemh file of the rows of ``codes``: each packed as the core packs its data
    (``codesign.testbenches.bus``), one ``bits``-wide tdata word per line."""
    return "".join(f"{h}\n" for h in bus.hex_words(bus.pack_rows(codes, width), bits))


# --------------------------------------------------------------------------------------- vectors
def check_vectors(path: Path, design: dict[str, Any]) -> None:
    """Raise StageError naming ``path`` unless its inputs/expected fit the design's sizes."""
    with np.load(path) as z:
        for key, side in (("inputs", "input"), ("expected", "output")):
            if key not in z.files:
                raise StageError(f"vectors file {path} has no {key!r} array")
            shape = z[key].shape
            n = int(design[side]["n"]) * int(design[side].get("beats", 1))
            if len(shape) != 2 or shape[1] != n:
                raise StageError(f"vectors file {path}: {key!r} has shape {shape}; design {design['top']} has "
                                 f"{n} {side} elements")
        if z["inputs"].shape[0] != z["expected"].shape[0]:
            raise StageError(f"vectors file {path}: {z['inputs'].shape[0]} inputs but "
                             f"{z['expected'].shape[0]} expected rows")
        for lay in design.get("layers", []):
            key = f"golden_{lay['name']}"
            if key in z.files and z[key].shape[1:] != (int(lay["n_out"]),):
                raise StageError(f"vectors file {path}: {key!r} has shape {z[key].shape}; layer {lay['name']} "
                                 f"has {lay['n_out']} outputs")


def _run_vectors(run_dir: Path, design: dict[str, Any]) -> Path | None:
    """``<run>/sim/vectors.npz`` when it fits the design and is newer than ``<run>/hls/graph.json``."""
    path = run_dir / "sim" / "vectors.npz"
    if not path.is_file():
        return None
    graph = run_dir / "hls" / "graph.json"
    if graph.is_file() and path.stat().st_mtime < graph.stat().st_mtime:
        log.info("ipcore: %s is older than %s; not packaging it", path, graph)
        return None
    try:
        check_vectors(path, design)
    except StageError as e:
        log.info("ipcore: not packaging %s: %s", path, e)
        return None
    return path


# --------------------------------------------------------------------------------------- renders
def _render_axis(env: jinja2.Environment, design: dict[str, Any]) -> str:
    ib, ob = _bits(design, "input"), _bits(design, "output")
    it, ot = design["input"]["type"], design["output"]["type"]
    return env.get_template("axis.v.j2").render(
        top=design["top"], description=_description(design), n_in=design["input"]["n"],
        n_out=design["output"]["n"], in_type=_type_text(it), out_type=_type_text(ot), w_in=it["width"],
        w_out=ot["width"], in_bits=ib, out_bits=ob, in_tdata=tdata_bits(ib), out_tdata=tdata_bits(ob),
        in_pad=tdata_bits(ib) - ib, out_pad=tdata_bits(ob) - ob, latency=design["latency"], ii=design["ii"],
    )


def _render_tb(env: jinja2.Environment, design: dict[str, Any], n_vectors: int, source: str) -> str:
    top = design["top"]
    period = float(design.get("clock_period_ns", design_io.DEFAULT_CLOCK_NS))
    return env.get_template("tb.v.j2").render(
        top=top, n_vectors=n_vectors, n_full=min(TB_FULL_RATE, n_vectors), latency=design["latency"],
        ii=design["ii"], beats=int(design["input"].get("beats", 1)), in_hex=f"tb_{top}_in.hex", expected_hex=f"tb_{top}_expected.hex",
        vectors_source=source, in_tdata=tdata_bits(_bits(design, "input")),
        out_tdata=tdata_bits(_bits(design, "output")), half_period=f"{period / 2:g}",
        timeout=64 * (int(design["latency"]) + int(design["ii"])) + 16 * n_vectors * (int(design["ii"]) + 4) + 1000,
    )


def _write_tb(rtl_dir: Path, design: dict[str, Any], vectors: Path | None) -> list[str]:
    """tb_<top>.v and its two hex files (empty without vectors), plus vectors.npz when given."""
    top = design["top"]
    in_hex, exp_hex = f"tb_{top}_in.hex", f"tb_{top}_expected.hex"
    written = [f"tb_{top}.v", in_hex, exp_hex]
    n = 0
    if vectors is not None:
        with np.load(vectors) as z:
            inputs = np.asarray(z["inputs"][:TB_VECTORS], dtype=np.int64)
            expected = np.asarray(z["expected"][:TB_VECTORS], dtype=np.int64)
        n = len(inputs)
        ib, ob = tdata_bits(_bits(design, "input")), tdata_bits(_bits(design, "output"))
        per_transfer = inputs.reshape(-1, int(design["input"]["n"]))  # io_stream: one word per pixel
        (rtl_dir / in_hex).write_text(_hex_lines(per_transfer, int(design["input"]["type"]["width"]), ib))
        (rtl_dir / exp_hex).write_text(_hex_lines(expected, int(design["output"]["type"]["width"]), ob))
        if Path(vectors).resolve() != (rtl_dir / "vectors.npz").resolve():
            shutil.copyfile(vectors, rtl_dir / "vectors.npz")
        written.append("vectors.npz")
    else:
        (rtl_dir / in_hex).write_text("")
        (rtl_dir / exp_hex).write_text("")
        (rtl_dir / "vectors.npz").unlink(missing_ok=True)
    (rtl_dir / f"tb_{top}.v").write_text(_render_tb(_env(), design, n, "vectors.npz"))
    return written


def _render_core(env: jinja2.Environment, design: dict[str, Any]) -> str:
    top = design["top"]
    return env.get_template("core.j2").render(
        top=top, vlnv=vlnv(design), description=_description(design),
        rtl_files=list(design["files"]) + [f"{top}_axis.v"], tb_file=f"tb_{top}.v",
        tb_data=[f"tb_{top}_in.hex", f"tb_{top}_expected.hex"],
    )


def _type_row(stream: str, n: int, t: dict[str, Any]) -> dict[str, Any]:
    w, i, f, signed = int(t["width"]), int(t["integer"]), int(t.get("frac", int(t["width"]) - int(t["integer"]))), bool(t["signed"])
    lsb = 2.0 ** -f
    lo, hi = (-(2.0 ** (i - 1)), 2.0 ** (i - 1) - lsb) if signed else (0.0, 2.0 ** i - lsb)
    parts = [f"bit {w - 1}: sign (two's complement)"] if signed else []
    if 0 < f < w:
        parts.append(f"[{w - 1}:{f}] integer part" + (" incl. sign" if signed else ""))
        parts.append(f"[{f - 1}:0] fraction")
    else:
        parts.append(f"[{w - 1}:0] code, value = code x 2^{-f}")
    return {"stream": stream, "n": n, "text": _type_text(t), "width": w, "integer": i, "frac": f,
            "signed": "yes" if signed else "no", "range": f"[{lo!r}, {hi!r}], step 2^{-f}",
            "layout": "; ".join(parts)}


def _type_text(t: dict[str, Any]) -> str:
    """A type's hls4ml-style text (design.json carries it; built from the fields when absent)."""
    if t.get("text"):
        return str(t["text"])
    kind = "fixed" if t.get("signed", True) else "ufixed"
    return f"{kind}<{t['width']},{t['integer']},{t.get('rounding', 'TRN')},{t.get('overflow', 'WRAP')}>"


def _ports(design: dict[str, Any]) -> list[dict[str, Any]]:
    ib, ob = _bits(design, "input"), _bits(design, "output")
    it, ot = design["input"], design["output"]
    beats = int(it.get("beats", 1))
    what = f"one pixel ({beats} per image, row-major)" if beats > 1 else "input vector"
    return [
        {"name": "aclk", "direction": "in", "width": 1, "meaning": "clock; every register samples on its rising edge"},
        {"name": "aresetn", "direction": "in", "width": 1, "meaning": "reset, active low, synchronous to aclk"},
        {"name": "s_axis_tvalid", "direction": "in", "width": 1, "meaning": f"{what} valid"},
        {"name": "s_axis_tready", "direction": "out", "width": 1, "meaning": f"core accepts {what}"},
        {"name": "s_axis_tdata", "direction": "in", "width": tdata_bits(ib),
         "meaning": f"{what}: {it['n']} x `{_type_text(it['type'])}` in bits [{ib - 1}:0]"},
        {"name": "m_axis_tvalid", "direction": "out", "width": 1, "meaning": "output vector valid"},
        {"name": "m_axis_tready", "direction": "in", "width": 1, "meaning": "downstream accepts the output vector"},
        {"name": "m_axis_tdata", "direction": "out", "width": tdata_bits(ob),
         "meaning": f"output vector: {ot['n']} x `{_type_text(ot['type'])}` in bits [{ob - 1}:0]"},
    ]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _measured(run_dir: Path | None, design_path: Path) -> dict[str, Any]:
    """Resources and accuracy figures of the run, each with the file it came from."""
    out: dict[str, Any] = {"resources": None, "synth_family": None, "resources_note": "", "accuracy": [],
                           "layer_resources": None, "asic": None, "timing": None}
    if run_dir is None:
        return out
    design_fp = rundir.fingerprint(design_path)
    res_path = run_dir / "synth" / "resources.json"
    if res_path.is_file():
        res = rundir.read_json(res_path)
        out["resources"] = [(k, res[k]) for k in ("LUT", "FF", "CARRY", "DSP", "BRAM", "LUTRAM", "SRL", "LATCH",
                                                   "cells") if k in res]
        out["resources_note"] = str(res.get("note", ""))
        if res.get("per_layer"):
            out["layer_resources"] = [*res["per_layer"], {"name": "sum", **(res.get("hierarchy_total") or {})}]
        out["asic"] = res.get("asic")
        out["timing"] = res.get("timing")
        synth_res = run_dir / "synth" / "result.json"
        if synth_res.is_file():
            sr = rundir.read_json(synth_res)
            out["synth_family"] = sr.get("family")
            design = rundir.read_json(design_path)
            synth_fp = rundir.fingerprint(design_path, *[design_path.parent / f for f in design.get("files", [])])
            if sr.get("rtl_fingerprint") not in (None, synth_fp):
                out["resources_note"] = ("STALE: these figures were synthesized from a different design.json or "
                                         "Verilog. " + out["resources_note"])
    acc: list[dict[str, str]] = []
    ver_path = run_dir / "sim" / "verify.json"
    if ver_path.is_file():
        v = rundir.read_json(ver_path)
        sim_res = run_dir / "sim" / "result.json"
        src = "sim/verify.json"
        if sim_res.is_file() and rundir.read_json(sim_res).get("rtl_fingerprint") not in (None, design_fp):
            src += " (STALE: verified a different design.json)"
        acc.append({"name": "bit-exact check", "value": (
            f"{'passed' if v.get('passed') else 'FAILED'}: {v.get('mismatches')} mismatching of "
            f"{v.get('vectors_checked')} vectors"), "source": src})
        acc.append({"name": "measured latency / II", "value": (
            f"{v.get('latency_min')}..{v.get('latency_max')} cycles / {v.get('ii')}"), "source": src})
        for key, name in (("accuracy", "RTL accuracy on test labels"),
                          ("qkeras_agreement", "RTL argmax agreement with QKeras")):
            if v.get(key) is not None:
                labeled = f" ({v.get('labeled')} labeled vectors)" if key == "accuracy" and v.get("labeled") else ""
                acc.append({"name": name, "value": _fmt(v[key]) + labeled, "source": src})
    model_path = run_dir / "model" / "result.json"
    if model_path.is_file():
        m = rundir.read_json(model_path)
        if m.get("test_accuracy") is not None:
            acc.append({"name": "QKeras model test accuracy", "value": _fmt(m["test_accuracy"]),
                        "source": "model/result.json"})
    out["accuracy"] = acc
    return out


def _stream_facts(design: dict[str, Any]) -> dict[str, Any] | None:
    """An io_stream core's rate facts for the datasheet (None for io_parallel)."""
    if design.get("io_type") != "io_stream":
        return None
    st = design.get("stream", {})
    fifos = st.get("fifos") if isinstance(st.get("fifos"), list) else []
    return {"beats": design["input"].get("beats", 1), "latency_after_last_pixel": design.get("latency_after_last_pixel"),
            "bottleneck": st.get("bottleneck"), "bottleneck_cycles_per_image": st.get("bottleneck_cycles_per_image"),
            "fifos": fifos}


def _render_datasheet(env: jinja2.Environment, rtl_dir: Path, design: dict[str, Any],
                      run_dir: Path | None, has_vectors: bool) -> str:
    top = design["top"]
    period = design.get("clock_period_ns")
    ib, ob = _bits(design, "input"), _bits(design, "output")
    layers = [{
        "name": lay["name"], "kind": lay["kind"], "source": lay.get("source", ""), "n_in": lay["n_in"],
        "n_out": lay["n_out"], "rf": lay["reuse_factor"] if lay.get("reuse_factor") is not None else "-",
        "multipliers": lay.get("multipliers", 0), "adders": lay.get("adders", "-"), "latency": lay["latency"],
        "ii": lay["ii"],
        "architecture": lay.get("architecture", ""),
    } for lay in design.get("layers", [])]
    other = [
        {"name": f"{top}_axis.v", "meaning": "AXI4-Stream top (this datasheet)"},
        {"name": f"{top}.core", "meaning": f"FuseSoC CAPI2 core `{vlnv(design)}`: targets default, lint, sim"},
        {"name": f"tb_{top}.v", "meaning": "self-checking Verilog testbench of the AXI4-Stream top (target sim)"},
        {"name": f"tb_{top}_in.hex, tb_{top}_expected.hex",
         "meaning": "its input words and expected output words ($readmemh, one tdata word per line)"},
        {"name": "design.json", "meaning": "machine-readable ports, types, latency, II, per-layer figures"},
        {"name": "tb_network.py, bus.py, run_tb.py",
         "meaning": "cocotb testbench, its bus packing and its stand-alone runner"},
    ]
    if has_vectors:
        other.append({"name": "vectors.npz", "meaning": "test vectors: inputs, expected (hls4ml C-sim), labels, "
                                                        "per-layer golden outputs"})
    note = ("" if has_vectors else "No vectors were packaged yet, so the `sim` target fails saying so and "
            "`run_tb.py` needs `--vectors`.")
    return env.get_template("datasheet.md.j2").render(
        top=top, vlnv=vlnv(design), description=_description(design), latency=design["latency"],
        ii=design["ii"], clock_period_ns=period if period is not None else "not given",
        fmax_mhz=f"{1000.0 / float(period):g}" if period else "unknown",
        throughput=f"{1e9 / (float(period) * int(design['ii'])):,.0f}" if period else "unknown",
        multipliers=design.get("multipliers", 0), nonzero_weights=design.get("nonzero_weights", 0),
        adders=design_io.total_adders(design),
        ports=_ports(design), in_bits=ib, out_bits=ob, in_tdata=tdata_bits(ib), out_tdata=tdata_bits(ob),
        in_pad=tdata_bits(ib) - ib, out_pad=tdata_bits(ob) - ob,
        types=[_type_row("input (s_axis_tdata)", design["input"]["n"], design["input"]["type"]),
               _type_row("output (m_axis_tdata)", design["output"]["n"], design["output"]["type"])],
        softmax_stripped=bool(design.get("softmax_stripped", False)), layers=layers, n_in=design["input"]["n"],
        n_out=design["output"]["n"], rtl_files=list(design["files"]) + [f"{top}_axis.v"], other_files=other,
        vectors_note=note, stream=_stream_facts(design), **_measured(run_dir, rtl_dir / "design.json"),
    )


# --------------------------------------------------------------------------------------- public
def package(core_dir: Path, design: dict[str, Any], vectors: Path | None = None,
            run_dir: Path | None = None) -> list[str]:
    """Write the IP core files into ``core_dir``, beside the Verilog and design.json it holds.

    Args:
        core_dir: holds design.json and the Verilog it lists (never modified here).
        design: the design.json contents.
        vectors: vectors.npz for the testbenches (checked against the design), or None: the
            testbenches then fail saying no vectors were packaged.
        run_dir: the run whose measured figures (synth, sim, model) the datasheet shows, if any.

    Returns:
        The files written, relative to ``core_dir``, sorted.

    Raises:
        StageError: design.json lacks a field, or the vectors file is missing or does not fit.
    """
    core_dir = Path(core_dir)
    for key in ("top", "files", "input", "output", "latency", "ii"):
        if key not in design:
            raise StageError(f"ipcore: design.json in {core_dir} has no {key!r} field")
    if vectors is not None:
        vectors = Path(vectors)
        if not vectors.is_file():
            raise StageError(f"ipcore: vectors file {vectors} does not exist")
        check_vectors(vectors, design)
    env = _env()
    top = design["top"]
    written = [f"{top}_axis.v"]
    (core_dir / f"{top}_axis.v").write_text(_render_axis(env, design))
    written += _write_tb(core_dir, design, vectors)
    (core_dir / f"{top}.core").write_text(_render_core(env, design))
    written.append(f"{top}.core")
    for name in ("tb_network.py", "bus.py"):  # the cocotb testbench and the sibling module it imports
        shutil.copyfile(resources.TESTBENCHES / name, core_dir / name)
    shutil.copyfile(TEMPLATES / "run_tb.py", core_dir / "run_tb.py")
    written += ["tb_network.py", "bus.py", "run_tb.py", "datasheet.md"]
    (core_dir / "datasheet.md").write_text(_render_datasheet(env, core_dir, design, run_dir, vectors is not None))
    return sorted(written)


def run(cfg: Any, run_dir: Path) -> dict[str, Any]:
    """The 'ip' stage: ``<run>/ip/``, the deliverable IP core.

    The rtl stage's Verilog, filelist.f and design.json (copied unchanged), the AXI4-Stream top,
    FuseSoC core, testbenches with the run's vectors (``<run>/sim/vectors.npz`` when it fits the
    design) and a datasheet with the figures the run measured (sim, synth, model; each marked
    STALE if it was measured on another design). The folder stands alone: ``run_tb.py`` verifies it.
    """
    del cfg  # the core depends only on the stages it reads
    run_dir = Path(run_dir)
    rtl_dir = run_dir / "rtl"
    rundir.require(run_dir, "rtl", "package")
    design = design_io.read(rtl_dir, "package", hint=f"run `codesign rtl --out {run_dir}` first")
    with rundir.stage_dir(run_dir, "ip") as out:
        copied = [*design["files"], "filelist.f", design_io.FILE]
        for name in copied:
            shutil.copyfile(rtl_dir / name, out / name)
        vectors = _run_vectors(run_dir, design)
        written = package(out, design, vectors, run_dir)
        result = {"top": design["top"], "vlnv": vlnv(design), "files": sorted(set(copied) | set(written)),
                  "vectors": vectors is not None, "datasheet": "datasheet.md"}
        rundir.write_json(out / "result.json", result)
    return result
