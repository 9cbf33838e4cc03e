"""Benchmark (issue 14): streaming (io_stream) CNN cores at real image sizes, each verified.

``python -m codesign.tools.bench_stream [--case mnist28,strided25,conv1d100] [--vectors 200] [--no-synth] [--work DIR]``

Cases (random on-grid QKeras weights, 40 % of them zero; seeded, so every run builds the same cores):

- ``mnist28``: 28x28x1, QConv2D 16 3x3 -> quantized ReLU -> MaxPool 2 -> QConv2D 16 3x3 -> quantized
  ReLU -> MaxPool 2 -> Flatten -> QDense 10, at RF 1 and folded at RF 9 (every layer); its test
  images are the digits test set resized to 28x28 (``data.digits_size: 28``).
- ``strided25``: 25x25x1, QConv2D 8 3x3 stride 3 'same' -> quantized ReLU -> Flatten -> QDense 10 at
  RF 1; test images: digits resized to 25x25.
- ``conv1d100``: a 100-sample x 7-channel signal, three QConv1D of 32 filters, kernel 40, 'same'
  (quantized ReLU after each), Flatten -> QDense 50 -> quantized ReLU -> QDense 5 (about 250,000
  weights), at the per-layer reuse factors in :data:`CASES`; random signals only.

For every point: hls4ml converts with io_type io_stream and compiles its C-sim; the golden model
must equal the C-sim on every integer; the RTL is generated (seconds printed), linted
(``verilator --lint-only -Wall``), and the cocotb testbench streams the test images plus
``--vectors`` random images through Verilator pixel by pixel with random gaps and back-pressure:
0 mismatches, measured latency and II equal design.json. Yosys (``synth_xilinx -family xcup
-flatten -noiopad``) then counts LUT/FF/DSP/BRAM. The table prints cycles per image (II), latency,
Verilator build-and-start seconds (a fresh build directory; ccache as the flow sets it) and simulated
images per second, all measured in this run; they
also go to ``<work>/bench_stream.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from codesign.tools.tables import log, table

REPO = Path(__file__).resolve().parents[2]
TOP = "codesign_top"


def _q(bits: int, integer: int = 0) -> Any:
    from qkeras import quantized_bits

    return quantized_bits(bits, integer, alpha=1)


def _randomize(model: Any, seed: int, sparsity: float = 0.4) -> Any:
    rng = np.random.default_rng(seed)
    model.set_weights([(rng.uniform(-0.9, 0.9, w.shape) * (rng.random(w.shape) >= sparsity)).astype(np.float32)
                       for w in model.get_weights()])
    return model


def mnist28(seed: int = 0) -> Any:
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((28, 28, 1), name="x_in")
    x = QActivation(quantized_bits_unsigned(8), name="inq")(inp)
    for i in range(2):
        x = QConv2D(16, (3, 3), kernel_quantizer=_q(6), bias_quantizer=_q(6), name=f"conv_{i}")(x)
        x = QActivation(quantized_relu(6, 2), name=f"crelu_{i}")(x)
        x = tf.keras.layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = QDense(10, kernel_quantizer=_q(6), bias_quantizer=_q(6), name="dense_0")(x)
    return _randomize(tf.keras.Model(inp, x), seed)


def strided25(seed: int = 1) -> Any:
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((25, 25, 1), name="x_in")
    x = QActivation(quantized_bits_unsigned(8), name="inq")(inp)
    x = QConv2D(8, (3, 3), strides=(3, 3), padding="same", kernel_quantizer=_q(6), bias_quantizer=_q(6),
                name="conv_0")(x)
    x = QActivation(quantized_relu(6, 2), name="crelu_0")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = QDense(10, kernel_quantizer=_q(6), bias_quantizer=_q(6), name="dense_0")(x)
    return _randomize(tf.keras.Model(inp, x), seed)


def conv1d100(seed: int = 2) -> Any:
    import tensorflow as tf
    from qkeras import QActivation, QConv1D, QDense, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((100, 7), name="x_in")
    x = QActivation(_q(8, 1), name="inq")(inp)
    for i in range(3):
        x = QConv1D(32, 40, padding="same", kernel_quantizer=_q(6), bias_quantizer=_q(6), name=f"conv_{i}")(x)
        x = QActivation(quantized_relu(6, 2), name=f"crelu_{i}")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = QDense(50, kernel_quantizer=_q(6), bias_quantizer=_q(6), name="dense_0")(x)
    x = QActivation(quantized_relu(6, 2), name="drelu_0")(x)
    x = QDense(5, kernel_quantizer=_q(6), bias_quantizer=_q(6), name="dense_1")(x)
    return _randomize(tf.keras.Model(inp, x), seed)


def quantized_bits_unsigned(bits: int) -> Any:
    from qkeras import quantized_bits

    return quantized_bits(bits, 0, keep_negative=False, alpha=1)


@dataclass(frozen=True)
class Case:
    build: Callable[[], Any]
    #: name -> hls overrides (reuse factors) of each benchmarked point
    points: dict[str, dict[str, Any]]
    digits_size: int | None = None  #: test images: the digits test set at this size (None: none)
    notes: tuple[str, ...] = field(default_factory=tuple)


CASES: dict[str, Case] = {
    "mnist28": Case(mnist28, {"RF 1": {"reuse_factor": 1}, "RF 9": {"reuse_factor": 9}}, 28),
    "strided25": Case(strided25, {"RF 1": {"reuse_factor": 1}}, 25),
    "conv1d100": Case(conv1d100, {"RF 64 (convs), 400 / 25 (Dense)": {
        "reuse_factor": 64, "layer_reuse_factor": {"dense_0": 400, "dense_1": 25}}}),
}


def _test_images(graph: Any, size: int | None) -> np.ndarray:
    from codesign.config import DataConfig
    from codesign.convert import on_grid_inputs
    from codesign.data import load_dataset

    if size is None:
        return np.zeros((0, graph.n_in), dtype=np.int64)
    return on_grid_inputs(graph, load_dataset(DataConfig(digits_size=size), seed=0).X_test)


def run_point(case: Case, hls: dict[str, Any], out: Path, n_random: int, do_synth: bool, seed: int) -> dict[str, Any]:
    from codesign import pipeline
    from codesign import vectors as vec
    from codesign.config import from_dict
    from codesign.verify import verify_design

    cfg = from_dict({"hls": {"io_type": "io_stream", **hls}})
    if out.exists():  # nothing of an earlier run is read as this one's, nor its simulator build reused
        shutil.rmtree(out)
    t0 = time.time()
    conv = pipeline.convert(cfg, case.build(), out / "hls")
    res: dict[str, Any] = {"convert_seconds": round(time.time() - t0, 1), "io_type": conv.graph.io_type}
    inputs = np.concatenate([_test_images(conv.graph, case.digits_size), vec.random_codes(conv.graph, n_random, seed)])
    arrays = pipeline.reference(conv.graph, conv.csim(), inputs)
    res["golden_vs_csim"] = pipeline.golden_agreement(conv.graph, arrays)
    t0 = time.time()
    design = pipeline.generate(conv.graph, out / "rtl", top=TOP)
    res["generate_seconds"] = round(time.time() - t0, 1)
    pipeline.lint(out / "rtl", design, out / "lint.log")
    res.update(latency=design["latency"], ii=design["ii"], beats=design["input"].get("beats", 1),
               multipliers=design["multipliers"],
               verilog_lines=sum(len((out / "rtl" / f).read_text().splitlines()) for f in design["files"]))
    np.savez_compressed(out / "vectors.npz", **arrays)
    sim = verify_design(out / "rtl", out / "vectors.npz", out / "sim", seed=seed, build_dir=out / "build")
    res.update(images=len(inputs), test_images=len(inputs) - n_random, mismatches=sim.get("mismatches"),
               passed=bool(sim.get("passed")), failures=sim.get("failures"),
               measured_latency=sim.get("latency_max"), measured_ii=sim.get("ii"),
               build_seconds=sim.get("build_and_startup_seconds"),
               images_per_second=round(sim["vectors_checked"] / sim["stream_wall_seconds"], 2)
               if sim.get("stream_wall_seconds") else None)
    if do_synth:
        from codesign.tools.bench_da4ml import synth

        s = synth(out / "rtl", TOP, design["files"], out / "synth")
        res.update({k: s.get(k) for k in ("LUT", "FF", "DSP", "BRAM", "CARRY", "LUTRAM", "SRL")},
                   synth_cpu_seconds=s.get("cpu_seconds"))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m codesign.tools.bench_stream", description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", default="mnist28,strided25", help=f"cases, of {', '.join(CASES)}")
    ap.add_argument("--vectors", type=int, default=200, help="random images per point (besides the test images)")
    ap.add_argument("--no-synth", action="store_true", help="skip Yosys")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_stream", help="work directory")
    args = ap.parse_args(argv)
    names = [c.strip() for c in args.case.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        ap.error(f"unknown case {unknown[0]!r}; valid: {', '.join(CASES)}")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    rows = [["case", "point", "LUT", "FF", "DSP", "BRAM", "cycles/image (II)", "latency", "verified",
             "gen s", "Verilator build s", "images/s"]]
    failed = False
    for name in names:
        for point, hls in CASES[name].points.items():
            tag = f"{name} {point}"
            log(f"{tag}: convert, generate, verify{'' if args.no_synth else ', synthesize'}")
            slug = "".join(ch if ch.isalnum() else "_" for ch in f"{name}_{point}")
            try:
                r = run_point(CASES[name], hls, work / slug, args.vectors, not args.no_synth, args.seed)
            except Exception as e:  # a failed point is reported, the others still run
                r = {"error": f"{type(e).__name__}: {e}"}
            results[tag] = r
            (work / "bench_stream.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
            ok = (r.get("passed") and r.get("mismatches") == 0 and r.get("measured_latency") == r.get("latency")
                  and r.get("measured_ii") == r.get("ii") and r["golden_vs_csim"]["mismatched_outputs"] == 0)
            failed |= not ok
            verified = (f"{r['images']} images ({r['test_images']} test), 0 mismatches, lat/II as design.json"
                        if ok else f"FAILED: {r.get('error') or r.get('failures')}")
            rows.append([name, point, *(str(r.get(k, "-")) for k in ("LUT", "FF", "DSP", "BRAM")),
                         str(r.get("ii", "-")), str(r.get("latency", "-")), verified,
                         str(r.get("generate_seconds", "-")), str(r.get("build_seconds", "-")),
                         str(r.get("images_per_second", "-"))])
            log(f"{tag}: {verified}")
    print(table(rows))
    print(f"(figures in {work / 'bench_stream.json'})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
