"""Benchmark (issue 16): post-training quantization of float Keras models against hls4ml's default.

``python -m codesign.tools.bench_ptq [--models digits,keras3] [--variants ptq,default] [--epochs 60]
[--target-drop 0] [--vectors 200] [--work DIR]``

* ``digits``: a float Keras MLP (64-32-32-10, ReLU, softmax; no QKeras) trained on sklearn digits,
  then :func:`codesign.convert.post_training_quantization` (codesign.ptq) calibrated on its training inputs (mixed precision on);
* ``keras3``: hls4ml's float reference model ``tests/reference_models/KERAS_3layer`` (16-64-32-32-5),
  calibrated on random N(0, 1) in-range inputs (no data set: accuracy is agreement with the float
  model's argmax on fresh random inputs).

For each model and variant (``ptq``: the chosen per-layer types; ``default``: hls4ml's automatic
config, ``fixed<16,6>`` inputs and weights): hls4ml converts and compiles the C-sim, the test
accuracy (digits) or float agreement (keras3) is measured on the C-sim, the golden model is checked
against the C-sim, our RTL is generated, verified bit-exactly against the C-sim with the cocotb
testbench (Verilator; ``--vectors 0`` skips it) and synthesized with Yosys (``synth_xilinx -family
xcup -flatten``) for LUT/FF/CARRY/DSP. Every figure printed is measured by this run; the records
go to ``<work>/bench_ptq.json`` and the accuracy-vs-bits plot to ``<work>/<model>_ptq_bits.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from codesign.tools.tables import log, table

REPO = Path(__file__).resolve().parents[2]
REF = REPO / "tests" / "reference_models"
TOP = "codesign_top"


def digits_model(epochs: int, seed: int) -> tuple[Any, Any]:
    """(the float Keras MLP trained on digits, the data set)."""
    import tensorflow as tf

    from codesign.config import from_dict
    from codesign.data import load_dataset

    data = load_dataset(from_dict({}).data, seed)
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((data.n_features,), name="x")
    h = tf.keras.layers.Dense(32, activation="relu", name="fc1")(inp)
    h = tf.keras.layers.Dense(32, activation="relu", name="fc2")(h)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(data.n_classes, activation="softmax", name="fc3")(h))
    model.compile(tf.keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(data.X_train, data.y_train, epochs=epochs, batch_size=64, verbose=0, shuffle=True)
    return model, data


def keras3_model() -> Any:
    from codesign.model_io import load_model

    return load_model(REF / "KERAS_3layer.json", REF / "KERAS_3layer_weights.h5")


def run_variant(name: str, cfg: Any, model: Any, out: Path, x_eval: np.ndarray, y_eval: np.ndarray,
                n_vectors: int, seed: int, synth: bool) -> dict[str, Any]:
    """Convert (C-sim), accuracy, golden vs C-sim, RTL, bit-exact simulation, Yosys."""
    from codesign import convert, pipeline
    from codesign import vectors as vec

    if out.exists():
        shutil.rmtree(out)
    res: dict[str, Any] = {"variant": name}
    t0 = time.time()
    conv = pipeline.convert(cfg, model, out / "hls")
    graph, csim = conv.graph, conv.csim()
    res["convert_seconds"] = round(time.time() - t0, 1)
    res["input_type"] = str(graph.input_type)
    res["layers"] = [{"name": layer.name, "kind": layer.kind, "out_type": str(layer.out_type),
                      "accum_type": str(layer.accum_type) if layer.accum_type else None,
                      "weight_frac": layer.weight_frac if layer.weights is not None else None}
                     for layer in graph.layers]
    codes = convert.on_grid_inputs(graph, x_eval)
    res["accuracy"] = float(np.mean(csim.predict_codes(codes).argmax(1) == y_eval))
    log(f"{name}: C-sim accuracy {res['accuracy']:.4f} (converted in {res['convert_seconds']} s)")
    inputs = np.vstack([codes[: n_vectors // 2], vec.random_codes(graph, n_vectors - n_vectors // 2, seed)])
    arrays = pipeline.reference(graph, csim, inputs)
    res["golden_vs_csim"] = pipeline.golden_agreement(graph, arrays)
    t0 = time.time()
    design = pipeline.generate(graph, out / "rtl", top=TOP)
    res["generate_seconds"] = round(time.time() - t0, 1)
    res["latency"], res["ii"] = design["latency"], design["ii"]
    log(f"{name}: RTL generated in {res['generate_seconds']} s (latency {design['latency']})")
    if n_vectors:
        sim = pipeline.simulate(out / "rtl", design, arrays, out / "sim", seed=seed)
        res["verify"] = {"vectors": sim.get("vectors_checked"), "mismatches": sim.get("mismatches"),
                         "problems": sim["problems"], "passed": not sim["problems"]}
        log(f"{name}: simulated {sim.get('vectors_checked')} vectors, {sim.get('mismatches')} mismatches")
    if synth:
        from codesign.synth import synthesize

        t0 = time.time()
        s = synthesize(out / "rtl", TOP, design["files"], out / "synth", family="xcup")
        res["synth"] = {k: s.get(k) for k in ("LUT", "FF", "CARRY", "DSP", "BRAM")}
        res["synth_seconds"] = round(time.time() - t0, 1)
        log(f"{name}: Yosys LUT {s.get('LUT')} FF {s.get('FF')} DSP {s.get('DSP')} ({res['synth_seconds']} s)")
    return res


def bench_model(which: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from codesign import plots
    from codesign.convert import post_training_quantization
    from codesign.config import from_dict

    ptq_opts = {"target_drop": args.target_drop, "calibration_samples": args.calibration, "seed": args.seed}
    cfg = from_dict({"hls": {"ptq": ptq_opts}})
    if which == "digits":
        model, data = digits_model(args.epochs, args.seed)
        x_eval, y_eval = data.X_test, data.y_test
        qcfg, rec = post_training_quantization(cfg, model, data.X_train, data.y_train)
        eval_what = f"test accuracy ({len(y_eval)} digits test images)"
    else:
        model = keras3_model()
        qcfg, rec = post_training_quantization(cfg, model)  # no data: random in-range calibration
        rng = np.random.default_rng(args.seed + 1000)  # fresh random inputs, not the calibration ones
        x_eval = rng.standard_normal((2000, int(model.inputs[0].shape[-1])))
        y_eval = np.asarray(model.predict(x_eval, verbose=0)).argmax(1)
        eval_what = "agreement with the float model's argmax (2000 fresh random N(0,1) inputs)"
    float_acc = float(np.mean(np.asarray(model.predict(x_eval, verbose=0)).argmax(1) == y_eval))
    log(f"{which}: float {float_acc:.4f}; PTQ chose {rec['frac_bits']} in {rec['seconds']} s "
        f"({rec['evaluations']} golden-model evaluations)")
    png = plots.ptq_bits_plot(rec, work / f"{which}_ptq_bits.png")
    out: dict[str, Any] = {"model": which, "evaluated_on": eval_what, "float_accuracy": float_acc,
                           "ptq": rec, "plot": str(png) if png else None, "variants": {}}
    for variant in args.variants:
        vcfg = qcfg if variant == "ptq" else from_dict({})
        out["variants"][variant] = run_variant(f"{which}/{variant}", vcfg, model, work / which / variant, x_eval,
                                               y_eval, args.vectors, args.seed, not args.no_synth)
        (work / "bench_ptq.json").write_text(json.dumps(out, indent=1, default=str))  # partial results survive
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m codesign.tools.bench_ptq", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="digits,keras3", help="digits, keras3 (comma-separated)")
    ap.add_argument("--variants", default="ptq,default", help="ptq, default (hls4ml's fixed<16,6>)")
    ap.add_argument("--epochs", type=int, default=60, help="training epochs of the float digits MLP")
    ap.add_argument("--target-drop", type=float, default=0.0, help="hls.ptq.target_drop")
    ap.add_argument("--calibration", type=int, default=1000, help="hls.ptq.calibration_samples")
    ap.add_argument("--vectors", type=int, default=200, help="vectors of the bit-exact RTL check (0: none)")
    ap.add_argument("--no-synth", action="store_true", help="skip Yosys")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_ptq", help="work directory")
    args = ap.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in args.variants if v not in ("ptq", "default")]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad += [m for m in models if m not in ("digits", "keras3")]
    if bad:
        ap.error(f"unknown model/variant {bad[0]!r}; models: digits, keras3; variants: ptq, default")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for which in models:
        results[which] = bench_model(which, args, work)
        (work / "bench_ptq.json").write_text(json.dumps(results, indent=1, default=str))
    print_tables(results)
    return 0


def print_tables(results: dict[str, Any]) -> None:
    for which, r in results.items():
        rec = r["ptq"]
        print(f"\n{which}: {r['evaluated_on']}; float {100 * r['float_accuracy']:.2f} %")
        print(f"PTQ: uniform {rec['uniform_frac_bits']} fractional bits, then mixed precision {rec['frac_bits']}; "
              f"calibration: {rec['calibration']}; drop on it {100 * rec['drop_calibration']:.2f} points "
              f"(target {100 * rec['target_drop']:.2f})")
        print(f"input {rec['input_precision']}")
        rows = [["layer", "weight", "bias", "accum", "result"]]
        rows += [[name, p.get("weight", ""), p.get("bias", ""), p.get("accum", ""), p.get("result", "")]
                 for name, p in rec["layer_precision"].items()]
        print(table(rows))
        rows = [["variant", "input", "widest accum", "acc %", "vs float", "LUT", "FF", "DSP", "latency",
                 "golden!=C-sim", "RTL mismatches / vectors"]]
        for v, res in r["variants"].items():
            syn, ver = res.get("synth") or {}, res.get("verify") or {}
            widest = max((int(t.split("<")[1].split(",")[0]) for t in
                          [layer["accum_type"] for layer in res["layers"] if layer["accum_type"]]), default=0)
            rows.append([str(c) for c in (
                v, res["input_type"], widest, f"{100 * res['accuracy']:.2f}",
                f"{100 * (res['accuracy'] - r['float_accuracy']):+.2f}",
                syn.get("LUT", "-"), syn.get("FF", "-"), syn.get("DSP", "-"), res["latency"],
                res["golden_vs_csim"]["mismatched_outputs"],
                f"{ver.get('mismatches', '-')} / {ver.get('vectors', '-')}" if ver else "not run")])
        print(table(rows))


if __name__ == "__main__":
    raise SystemExit(main())
