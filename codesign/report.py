"""The report stage: one HTML page, one Markdown page, summary.json and plots for a run directory.

It reads whatever stage results exist (``model``, ``hls`` + ``graph.json``, ``rtl/design.json``,
``sim``, ``synth``); a stage that has not run is shown as "not run" and none of its numbers appear.
Python computes every figure and string; the Jinja2 templates (``codesign/templates/report.*.j2``,
StrictUndefined) only lay them out.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from codesign import plots, resources, rundir
from codesign.flow import COMMANDS, FLOW
from codesign.synth import NOTE as SYNTH_NOTE

log = logging.getLogger(__name__)

TEMPLATES = resources.TEMPLATES
#: Stages the report looks at, with the label it shows.
STAGE_LABELS = {s.name: s.label for s in FLOW if s.name in COMMANDS["report"].reads_stages}
NOT_RUN = "not run"


def template_env(autoescape: bool) -> Any:
    """A Jinja2 environment over codesign/templates/ that fails on any undefined name."""
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                              autoescape=autoescape, keep_trailing_newline=True, trim_blocks=True,
                              lstrip_blocks=True)


def fmt(v: Any, digits: int = 4) -> str:
    """Human text for a value: None -> '-', floats to ``digits`` significant digits."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v == int(v) and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.{digits}g}"
    return str(v)


def pct(v: Any) -> str:
    """A fraction as a percentage with two decimals ('97.12 %'), '-' for None."""
    return "-" if v is None else f"{100.0 * float(v):.2f} %"


def _load(run_dir: Path, stage: str) -> dict[str, Any] | None:
    path = run_dir / stage / "result.json"
    return rundir.read_json(path) if path.is_file() else None


def _dense_layers(graph: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not graph:
        return []
    return [layer for layer in graph.get("layers", []) if "weights" in layer]


def float_kernels(h5_path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """Float (pre-quantizer) kernels of the named layers from a Keras 2 ``.h5`` file, via h5py.

    Layers that are not found are left out; an unreadable file gives an empty dict.
    """
    import h5py

    out: dict[str, np.ndarray] = {}
    try:
        with h5py.File(h5_path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            for name in names:
                if name not in root:
                    continue
                found: list[np.ndarray] = []

                def visit(key: str, obj: Any, found: list[np.ndarray] = found) -> None:
                    if isinstance(obj, h5py.Dataset) and key.rsplit("/", 1)[-1].startswith("kernel"):
                        found.append(np.asarray(obj))

                root[name].visititems(visit)
                if found:
                    out[name] = found[0]
    except (OSError, KeyError) as e:
        log.warning("cannot read float weights from %s: %s", h5_path, e)
        return {}
    return out


def _layer_rows(model: dict[str, Any] | None, hls: dict[str, Any] | None,
                design: dict[str, Any] | None, graph: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per layer, merged by name across stages, in hardware order when the RTL exists."""
    sources = [("rtl", (design or {}).get("layers") or []), ("hls", (hls or {}).get("layers") or []),
               ("graph", (graph or {}).get("layers") or []), ("model", (model or {}).get("layers") or [])]
    order: list[str] = []
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for src, layers in sources:
        for layer in layers:
            name = str(layer.get("name"))
            if name not in by:
                by[name] = {}
                order.append(name)
            by[name][src] = layer
    rows = []
    for name in order:
        s = by[name]
        m, h, r, g = s.get("model", {}), s.get("hls", {}), s.get("rtl", {}), s.get("graph", {})
        n_in = r.get("n_in", g.get("n_in"))
        n_out = r.get("n_out", g.get("n_out"))
        weights = m.get("weights") or r.get("weights") or (n_in * n_out if g.get("kind") == "dense" and n_in and n_out else None)
        nonzero = r.get("nonzero_weights", g.get("nonzero_weights", m.get("nonzero")))
        sparsity = m.get("sparsity")
        if sparsity is None and weights and nonzero is not None:
            sparsity = 1.0 - nonzero / weights
        rows.append({
            "name": name,
            "kind": r.get("kind") or g.get("kind") or h.get("class") or m.get("kind"),
            "shape": f"{n_in} x {n_out}" if n_in is not None and n_out is not None else None,
            "bits": m.get("bits"),
            "nonzero": nonzero,
            "weights": weights or None,
            "sparsity": sparsity,
            "reuse_factor": r.get("reuse_factor", h.get("reuse_factor")),
            "strategy": h.get("strategy"),
            "multipliers": r.get("multipliers"),
            "adders": r.get("adders"),
            "latency": r.get("latency"),
            "ii": r.get("ii"),
        })
    return rows


LAYER_COLUMNS = [("name", "layer"), ("kind", "kind"), ("shape", "n_in x n_out"), ("bits", "bits"),
                 ("nonzero", "nonzero w"), ("weights", "weights"), ("sparsity", "sparsity"),
                 ("reuse_factor", "RF"), ("strategy", "strategy"), ("multipliers", "general multipliers"),
                 ("adders", "adders"), ("latency", "latency"), ("ii", "II")]


def build_summary(run_dir: Path) -> dict[str, Any]:
    """Collect every stage's numbers into one JSON-able record (None where a stage did not run)."""
    run_dir = Path(run_dir)
    res = {s: _load(run_dir, s) for s in STAGE_LABELS}
    design = None
    if res["rtl"] is not None and (run_dir / "rtl" / "design.json").is_file():
        design = rundir.read_json(run_dir / "rtl" / "design.json")
    graph = None
    if res["hls"] is not None and (run_dir / "hls" / "graph.json").is_file():
        graph = rundir.read_json(run_dir / "hls" / "graph.json")
    model, hls, sim, syn = res["model"], res["hls"], res["sim"], res["synth"]
    softmax = None
    if design is not None and "softmax_stripped" in design:
        softmax = bool(design["softmax_stripped"])
    elif graph is not None and "softmax_stripped" in graph:
        softmax = bool(graph["softmax_stripped"])
    resources = None
    if syn is not None:
        resources = {k: syn.get(k) for k in ("LUT", "FF", "CARRY", "DSP", "BRAM", "LUTRAM", "SRL")}
        resources.update(family=syn.get("family"), nodsp=syn.get("nodsp"), yosys_version=syn.get("yosys_version"),
                         wall_seconds=syn.get("wall_seconds"), note=syn.get("note", SYNTH_NOTE),
                         per_layer=syn.get("per_layer"), hierarchy_total=syn.get("hierarchy_total"),
                         asic=syn.get("asic"), timing=syn.get("timing"))
    return {
        "run": run_dir.name,
        "stages": {s: ("done" if res[s] is not None else NOT_RUN) for s in STAGE_LABELS},
        "accuracy": {
            "qkeras": model.get("test_accuracy") if model else None,
            "csim": hls.get("csim_accuracy") if hls else None,
            "rtl": sim.get("accuracy") if sim else None,
        },
        "model": None if model is None else {
            k: model.get(k) for k in ("source", "dataset", "n_features", "n_classes", "n_train", "n_test",
                                      "test_accuracy", "weight_sparsity", "total_weights", "total_nonzero",
                                      "bops", "epochs_total", "train_seconds", "pruning")},
        "csim_vs_qkeras": hls.get("csim_vs_qkeras") if hls else None,
        "verification": None if sim is None else {
            k: sim.get(k) for k in ("passed", "vectors", "mismatches", "accuracy", "qkeras_agreement",
                                    "latency_min", "latency_max", "ii", "cycles", "wall_seconds")},
        "design": None if design is None else {
            k: design.get(k) for k in ("top", "latency", "ii", "clock_period_ns", "input", "output")},
        "softmax_stripped": softmax,
        "resources": resources,
        "layers": _layer_rows(model, hls, design, graph),
        "ptq": hls.get("ptq") if hls else None,
        "training_levers": None if model is None else {
            k: model.get(k) for k in ("distill", "low_rank", "curves")},
    }


def _lever_rows(summary: dict[str, Any]) -> list[tuple[str, str]] | None:
    """The report's "Training levers" rows (distillation, rewinding, pruning criterion, low rank);
    None when the model used none of them."""
    levers, m = summary.get("training_levers") or {}, summary["model"] or {}
    p = m.get("pruning") or {}
    rows: list[tuple[str, str]] = []
    d = levers.get("distill")
    if d:
        rows.append(("distillation", f"teacher {d['teacher']} (test accuracy {pct(d['teacher_accuracy'])}), "
                                     f"T = {fmt(d['temperature'])}, alpha = {fmt(d['alpha'])}"))
    if p.get("rewind_epoch") is not None:
        rows.append(("lottery-ticket rewinding", f"{p['rounds']} round(s) to {pct(p['target_sparsity'])}, "
                                                 f"rewound to epoch {p['rewind_epoch']}"))
    if p.get("criterion") not in (None, "magnitude"):
        rows.append(("structured pruning criterion", str(p["criterion"])))
    for name, lr in sorted((levers.get("low_rank") or {}).items()):
        rows.append((f"low rank {name}", f"rank {lr['rank']} ({lr['n_in']} x {lr['n_out']}): {lr['multipliers']} "
                                         f"multipliers instead of {lr['multipliers_full']}, {lr['nonzero']} nonzero"))
    return rows or None


def lever_plots(run_dir: Path, plot_dir: Path) -> list[dict[str, str]]:
    """The learning curve of a distilled or rewound model (model/result.json ``curves``)."""
    model = _load(Path(run_dir), "model")
    curves = (model or {}).get("curves")
    if not curves or not curves.get("test_accuracy"):
        return []
    p = plots.learning_curves(curves["test_accuracy"], plot_dir / "learning_curve.png",
                              curves.get("round_starts") or (), curves.get("teacher_test_accuracy"))
    return [{"title": "Learning curve: test accuracy per epoch (distillation / rewinding)", "file": f"plots/{p.name}"}]


def make_plots(run_dir: Path, plot_dir: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Write the per-run plots; return [{title, file}] (relative to the report dir) and notes."""
    graph_path = run_dir / "hls" / "graph.json"
    notes: list[str] = []
    if not (run_dir / "hls" / "result.json").is_file() or not graph_path.is_file():
        return [], ["Weight plots need hls/graph.json: the convert stage has not run."]
    dense = _dense_layers(rundir.read_json(graph_path))
    if not dense:
        return [], ["hls/graph.json has no dense layers with weights: no weight plots."]
    out: list[dict[str, str]] = []
    # a Dense matrix is n_in x n_out; a conv kernel is (k_h*k_w*n_chan) x n_filt, one row per bias
    codes = {d["name"]: np.asarray(d["weights"], dtype=np.int64).reshape(
        (-1, len(d["bias"])) if d["kind"] == "conv" else (d["n_in"], d["n_out"])) for d in dense}
    fracs = {d["name"]: int(d.get("weight_frac", 0)) for d in dense}
    for name, c in codes.items():
        p = plots.sparsity_heatmap(name, c, plot_dir / f"sparsity_{name}.png")
        out.append({"title": f"Weight sparsity mask, {name} (neuron x input)", "file": f"plots/{p.name}"})
    for name, c in codes.items():
        p = plots.weight_histogram(name, c, fracs[name], plot_dir / f"weights_{name}.png")
        out.append({"title": f"Weight code histogram, {name}", "file": f"plots/{p.name}"})
    h5 = run_dir / "model" / "model.h5"
    floats = float_kernels(h5, list(codes)) if h5.is_file() else {}
    errors, lsb = {}, {}
    for name, c in codes.items():
        f = floats.get(name)
        if f is not None and f.ndim > 2 and f.size == c.size:  # conv kernel (k_h, k_w, n_chan, n_filt)
            f = f.reshape(c.shape)
        if f is None or f.shape != c.shape:
            continue
        q = c.astype(np.float64) * 2.0 ** -fracs[name]
        kept = c != 0  # pruned weights are zero in both: their error says nothing about quantization
        errors[name] = (f.astype(np.float64) - q)[kept]
        lsb[name] = 2.0 ** -fracs[name]
    if errors:
        p = plots.quant_error_histogram(errors, plot_dir / "quant_error.png", lsb)
        out.append({"title": "Quantization error (float weight - quantized weight, nonzero weights)",
                    "file": f"plots/{p.name}"})
        missing = sorted(set(codes) - set(errors))
        if missing:
            notes.append(f"No float weights matched layers {', '.join(missing)}: not in the error histogram.")
    else:
        p = plots.code_histograms(codes, plot_dir / "quant_error.png")
        out.append({"title": "Weight codes per layer (float weights not available for an error histogram)",
                    "file": f"plots/{p.name}"})
        notes.append("Float weights were not available (model/model.h5 missing or without matching kernels); "
                     "the quantization plot shows the integer codes instead.")
    return out, notes


def _context(summary: dict[str, Any], plot_list: list[dict[str, str]], notes: list[str],
             report_dir: Path, embed: bool) -> dict[str, Any]:
    acc = summary["accuracy"]
    stages = summary["stages"]
    m, v, r, d = summary["model"], summary["verification"], summary["resources"], summary["design"]
    ctx_rows = []
    for row in summary["layers"]:
        cells = []
        for key, _ in LAYER_COLUMNS:
            val = row[key]
            cells.append(pct(val) if key == "sparsity" and val is not None else fmt(val))
        ctx_rows.append(cells)
    cmp = summary["csim_vs_qkeras"]
    sm = summary["softmax_stripped"]
    return {
        "run": summary["run"],
        "stages": [{"name": s, "label": STAGE_LABELS[s], "status": stages[s]} for s in STAGE_LABELS],
        "accuracy": [
            {"stage": "QKeras (trained model)", "value": pct(acc["qkeras"]) if stages["model"] == "done" else NOT_RUN},
            {"stage": "hls4ml C-sim", "value": pct(acc["csim"]) if stages["hls"] == "done" else NOT_RUN},
            {"stage": "RTL simulation", "value": pct(acc["rtl"]) if stages["sim"] == "done" else NOT_RUN},
        ],
        "model": None if m is None else [
            ("source", fmt(m["source"])), ("dataset", fmt(m["dataset"])),
            ("features / classes", f"{fmt(m['n_features'])} / {fmt(m['n_classes'])}"),
            ("train / test samples", f"{fmt(m['n_train'])} / {fmt(m['n_test'])}"),
            ("test accuracy", pct(m["test_accuracy"])),
            ("weight sparsity", pct(m["weight_sparsity"])),
            ("nonzero / total weights", f"{fmt(m['total_nonzero'])} / {fmt(m['total_weights'])}"),
            ("BOPs", fmt(m["bops"])), ("epochs", fmt(m["epochs_total"])),
            ("training time", f"{fmt(m['train_seconds'], 3)} s" if m["train_seconds"] is not None else "-")],
        "csim": None if cmp is None else [(k, fmt(cmp.get(k))) for k in
                                          ("rows", "exact_rows", "argmax_agree", "max_abs_err")],
        "design": None if d is None else [
            ("top module", fmt(d["top"])), ("latency (cycles)", fmt(d["latency"])), ("II (cycles)", fmt(d["ii"])),
            ("clock period", f"{fmt(d['clock_period_ns'])} ns" if d["clock_period_ns"] is not None else "-"),
            ("input", _port(d["input"])), ("output", _port(d["output"]))],
        "verification": None if v is None else [
            ("result", {True: "PASSED", False: "FAILED"}.get(v["passed"], "-")), ("vectors", fmt(v["vectors"])),
            ("mismatches vs C-sim", fmt(v["mismatches"])), ("accuracy", pct(v["accuracy"])),
            ("agreement with QKeras", pct(v["qkeras_agreement"])),
            ("measured latency", f"{fmt(v['latency_min'])} .. {fmt(v['latency_max'])} cycles"),
            ("measured II", fmt(v["ii"])), ("cycles", fmt(v["cycles"])),
            ("wall time", f"{fmt(v['wall_seconds'], 3)} s" if v["wall_seconds"] is not None else "-")],
        "resources": None if r is None else [(k, fmt(r[k])) for k in ("LUT", "FF", "CARRY", "DSP", "BRAM", "LUTRAM",
                                                                        "SRL")],
        "resources_meta": None if r is None else
        f"Yosys synth_xilinx -family {r['family']}{' -nodsp' if r['nodsp'] else ''} ({r['yosys_version']}), "
        f"{fmt(r['wall_seconds'], 3)} s",
        "resources_note": (r or {}).get("note") or SYNTH_NOTE,
        **_layer_resources(r),
        "levers": _lever_rows(summary),
        "softmax": ("unknown (rtl and convert not run)" if sm is None else
                    "yes: the outputs are the logits (argmax unchanged)" if sm else "no"),
        "layer_columns": [label for _, label in LAYER_COLUMNS],
        "layer_rows": ctx_rows,
        "ptq": _ptq_rows(summary.get("ptq")),
        "plots": [dict(p, b64=plots.png_base64(report_dir / p["file"]) if embed else "") for p in plot_list],
        "notes": notes,
    }


#: columns of the per-layer resource table: (resources.json key, heading)
LAYER_RESOURCE_COLUMNS = (("LUT", "LUT"), ("FF", "FF"), ("CARRY", "CARRY"), ("DSP", "DSP"), ("BRAM", "BRAM"),
                          ("LUTRAM", "LUTRAM"), ("SRL", "SRL"))


def _layer_resources(r: dict[str, Any] | None) -> dict[str, Any]:
    """The per-layer FPGA table (with the hierarchy's sum against the flattened total) and the ASIC
    estimate's table, when the synth stage measured them."""
    out: dict[str, Any] = {"layer_resources": None, "layer_resources_note": "", "asic": None, "asic_note": "",
                           "timing": None, "timing_note": ""}
    if not r:
        return out
    if r.get("per_layer"):
        rows = [[row["name"], *(fmt(row.get(k)) for k, _ in LAYER_RESOURCE_COLUMNS)] for row in r["per_layer"]]
        h = r.get("hierarchy_total") or {}
        rows.append(["sum (hierarchical synthesis)", *(fmt(h.get(k)) for k, _ in LAYER_RESOURCE_COLUMNS)])
        out["layer_resources"] = {"columns": ["layer", *(c for _, c in LAYER_RESOURCE_COLUMNS)], "rows": rows}
        vs = [f"{k} {h[f'{k}_vs_flat'] * 100:+.1f} %" for k in ("LUT", "FF") if h.get(f"{k}_vs_flat") is not None]
        out["layer_resources_note"] = ("Each module synthesized on its own (the hierarchy kept); the sum against "
                                       "the flattened totals above: " + ", ".join(vs) + "." if vs else "")
    t = r.get("timing")
    if t:
        met = {True: "met", False: "NOT met", None: "no clock given"}[t.get("met")]
        rows = [[row["name"], fmt(row["critical_path_ns"]), fmt(row["lut_levels"]), fmt(row["carry_cells"]),
                 fmt(row["fmax_mhz"])] for row in t.get("per_layer", [])]
        rows.append(["whole design (flattened)", fmt(t["critical_path_ns"]), fmt(t["lut_levels"]),
                     fmt(t["carry_cells"]), fmt(t["fmax_mhz"])])
        out["timing"] = {"columns": ["layer", "critical path (ns)", "LUT levels", "carry cells", "Fmax (MHz)"],
                         "rows": rows}
        out["timing_note"] = (f"Estimated Fmax {fmt(t['fmax_mhz'])} MHz: hls.clock_period_ns "
                              f"{fmt(t.get('clock_period_ns'))} ns {met}. {t.get('model', '')}; not a timing sign-off.")
    a = r.get("asic")
    if a:
        def area(v: Any) -> str:
            return "-" if v is None else f"{round(float(v)):,}"

        rows = [[row["name"], fmt(row["gates"]), fmt(row["flip_flops"]), area(row["nand2_eq"])] for row in a["per_layer"]]
        rows.append(["total", fmt(a["gates"]), fmt(a["flip_flops"]), area(a["nand2_eq"])])
        out["asic"] = {"columns": ["layer", "gates", "flip-flops", "NAND2-equivalent area"], "rows": rows}
        out["asic_note"] = str(a.get("note", ""))
    return out


def _port(p: Any) -> str:
    if not isinstance(p, dict):
        return fmt(p)
    t = p.get("type")
    if isinstance(t, dict):
        t = f"{'fixed' if t.get('signed', True) else 'ufixed'}<{t.get('width')},{t.get('integer')}>"
    return f"{fmt(p.get('n'))} x {fmt(t)}"


def build(run_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Write report.html, report.md, summary.json and plots/ into out_dir; return the summary."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    summary = build_summary(run_dir)
    plot_list, notes = make_plots(run_dir, out_dir / "plots")
    plot_list += lever_plots(run_dir, out_dir / "plots")
    plot_list += ptq_plots(run_dir, out_dir / "plots")
    summary["plots"] = [p["file"] for p in plot_list]
    summary["notes"] = notes
    html = template_env(True).get_template("report.html.j2").render(
        **_context(summary, plot_list, notes, out_dir, embed=True))
    md = template_env(False).get_template("report.md.j2").render(
        **_context(summary, plot_list, notes, out_dir, embed=False))
    (out_dir / "report.html").write_text(html)
    (out_dir / "report.md").write_text(md)
    rundir.write_json(out_dir / "summary.json", summary)
    return summary


def run(cfg: Any, run_dir: Path) -> dict[str, Any]:
    """The report stage: ``<run>/report/`` from whatever stage results exist."""
    run_dir = Path(run_dir)
    with rundir.stage_dir(run_dir, "report") as tmp:
        summary = build(run_dir, tmp)
        result = {"files": {"html": "report.html", "markdown": "report.md", "summary": "summary.json"},
                  "plots": summary["plots"], "stages": summary["stages"], "accuracy": summary["accuracy"]}
        rundir.write_json(tmp / "result.json", result)
    del cfg  # the report depends only on the run directory's contents
    return result


def _ptq_rows(p: dict[str, Any] | None) -> list[tuple[str, str]] | None:
    """The report's "Post-training quantization" rows (hls/result.json ``ptq``); None when off."""
    if not p:
        return None
    rows = [("calibration", str(p["calibration"])),
            ("accuracy on it: float / PTQ", f"{pct(p['float_accuracy_calibration'])} / {pct(p['accuracy_calibration'])} "
                                            f"(target drop {pct(p['target_drop'])})"),
            ("fractional bits", f"uniform {p['uniform_frac_bits']}; " + (
                "mixed precision: " if p.get("mixed_precision") else "chosen: ")
             + ", ".join(f"{k} {v}" for k, v in p["frac_bits"].items())),
            ("input", str(p["input_precision"]))]
    for name, precs in p["layer_precision"].items():
        rows.append((name, ", ".join(f"{k} {v}" for k, v in precs.items())))
    return rows


def ptq_plots(run_dir: Path, plot_dir: Path) -> list[dict[str, str]]:
    """Accuracy vs bits and the per-layer sensitivity / quantization error of PTQ (hls/ptq.json)."""
    path = Path(run_dir) / "hls" / "ptq.json"
    if not path.is_file():
        return []
    p = plots.ptq_bits_plot(rundir.read_json(path), plot_dir / "ptq_bits.png")
    return [] if p is None else [{"title": "Post-training quantization: accuracy vs bits, per-layer sensitivity "
                                           "and quantization error", "file": f"plots/{p.name}"}]

