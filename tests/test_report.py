"""codesign.report / plots: a report built from small synthetic stage results (a formatter test)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from codesign import plots, report, rundir
from codesign.config import Config

RNG = np.random.default_rng(3)


def _codes(n_in: int, n_out: int, sparsity: float) -> np.ndarray:
    c = RNG.integers(-31, 32, size=(n_in, n_out))
    c[RNG.random((n_in, n_out)) < sparsity] = 0
    return c


def _write_stage(run: Path, stage: str, result: dict, extra: dict | None = None) -> None:
    (run / stage).mkdir(parents=True, exist_ok=True)
    rundir.write_json(run / stage / "result.json", result)
    for name, data in (extra or {}).items():
        rundir.write_json(run / stage / name, data)


@pytest.fixture
def full_run(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    run = tmp_path / "run"
    w0, w1 = _codes(8, 6, 0.5), _codes(6, 3, 0.25)
    w0[0, 0], w1[0, 0] = 5, -7  # at least one nonzero each
    codes = {"dense_0": w0, "dense_1": w1}
    layers_m = [{"name": n, "kind": "QDense", "bits": 6, "input_bits": 8, "weights": int(c.size),
                 "nonzero": int(np.count_nonzero(c)), "sparsity": 1 - np.count_nonzero(c) / c.size}
                for n, c in codes.items()]
    _write_stage(run, "model", {"source": "trained", "dataset": "digits", "n_features": 8, "n_classes": 3,
                                "n_train": 100, "n_test": 37, "test_accuracy": 0.9712, "weight_sparsity": 0.4321,
                                "total_weights": 66, "total_nonzero": 38, "bops": 1824, "epochs_total": 3,
                                "train_seconds": 1.5, "layers": layers_m})
    # Float kernels: the quantized value plus a known error below half an LSB (frac = 5).
    err = {n: RNG.uniform(-0.5, 0.5, c.shape) * 2.0 ** -5 for n, c in codes.items()}
    with h5py.File(run / "model" / "model.h5", "w") as f:
        for n, c in codes.items():
            f.create_dataset(f"model_weights/{n}/{n}/kernel:0", data=c * 2.0 ** -5 + err[n])
            f.create_dataset(f"model_weights/{n}/{n}/bias:0", data=np.zeros(c.shape[1]))
    graph = {"format": 1, "softmax_stripped": True, "layers": [
        {"name": "dense_0", "kind": "dense", "n_in": 8, "n_out": 6, "weights": w0.tolist(), "weight_frac": 5,
         "nonzero_weights": int(np.count_nonzero(w0)), "reuse_factor": 2},
        {"name": "relu_0", "kind": "relu", "n_in": 6, "n_out": 6, "reuse_factor": 1},
        {"name": "dense_1", "kind": "dense", "n_in": 6, "n_out": 3, "weights": w1.tolist(), "weight_frac": 5,
         "nonzero_weights": int(np.count_nonzero(w1)), "reuse_factor": 2}]}
    _write_stage(run, "hls", {"csim_vs_qkeras": {"rows": 37, "exact_rows": 37, "argmax_agree": 1.0, "max_abs_err": 0.0},
                              "csim_accuracy": 0.9654,
                              "layers": [{"name": "dense_0", "class": "Dense", "reuse_factor": 2,
                                          "strategy": "Latency", "types": {}}]},
                 {"graph.json": graph})
    design = {"top": "digits_top", "files": ["digits_top.v"], "latency": 17, "ii": 2, "clock_period_ns": 5.0,
              "input": {"n": 8, "type": {"width": 8, "integer": 0, "signed": False}},
              "output": {"n": 3, "type": {"width": 12, "integer": 6, "signed": True}}, "softmax_stripped": True,
              "layers": [{"name": "dense_0", "kind": "dense", "n_in": 8, "n_out": 6, "reuse_factor": 2,
                          "multipliers": 13, "nonzero_weights": int(np.count_nonzero(w0)), "latency": 9, "ii": 2},
                         {"name": "relu_0", "kind": "relu", "n_in": 6, "n_out": 6, "reuse_factor": 1,
                          "multipliers": 0, "nonzero_weights": 0, "latency": 1, "ii": 1},
                         {"name": "dense_1", "kind": "dense", "n_in": 6, "n_out": 3, "reuse_factor": 2,
                          "multipliers": 7, "nonzero_weights": int(np.count_nonzero(w1)), "latency": 7, "ii": 2}]}
    _write_stage(run, "rtl", {"top": "digits_top"}, {"design.json": design})
    _write_stage(run, "sim", {"passed": True, "vectors": 10037, "mismatches": 0, "accuracy": 0.9599,
                              "qkeras_agreement": 0.9911, "latency_min": 17, "latency_max": 17, "ii": 2,
                              "cycles": 30111, "wall_seconds": 3.2})
    _write_stage(run, "synth", {"LUT": 4321, "FF": 987, "CARRY": 55, "DSP": 3, "BRAM": 0.0, "LUTRAM": 0, "SRL": 0,
                                "family": "xcup", "nodsp": False, "yosys_version": "Yosys 0.23",
                                "wall_seconds": 12.5, "note": "Yosys estimates, not vendor P&R",
                                "per_layer": [
                                    {"name": "dense_0", "LUT": 3001, "FF": 601, "CARRY": 40, "DSP": 3, "BRAM": 0,
                                     "LUTRAM": 0, "SRL": 0},
                                    {"name": "relu_0", "LUT": 17, "FF": 0, "CARRY": 0, "DSP": 0, "BRAM": 0,
                                     "LUTRAM": 0, "SRL": 0},
                                    {"name": "dense_1", "LUT": 1299, "FF": 380, "CARRY": 15, "DSP": 0, "BRAM": 0,
                                     "LUTRAM": 0, "SRL": 0}],
                                "hierarchy_total": {"LUT": 4317, "FF": 981, "CARRY": 55, "DSP": 3, "BRAM": 0,
                                                    "LUTRAM": 0, "SRL": 0, "LUT_vs_flat": -0.0009,
                                                    "FF_vs_flat": -0.0061},
                                "timing": {"critical_path_ns": 4.12, "lut_levels": 6, "carry_cells": 3,
                                           "fmax_mhz": 242.7, "clock_period_ns": 5.0, "met": True,
                                           "model": "UltraScale+ -2 estimate",
                                           "per_layer": [{"name": "dense_0", "critical_path_ns": 3.98,
                                                          "lut_levels": 5, "carry_cells": 3, "fmax_mhz": 251.3}]},
                                "asic": {"gates": 23456, "flip_flops": 981, "nand2_eq": 51234.5,
                                         "note": "ASIC estimate without a PDK",
                                         "per_layer": [{"name": "dense_0", "gates": 16001, "flip_flops": 601,
                                                        "nand2_eq": 34000.1}]}})
    return run, codes


def _valid_png(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_full_report_numbers_and_plots(full_run: tuple[Path, dict[str, np.ndarray]]) -> None:
    run, codes = full_run
    result = report.run(Config(), run)
    out = run / "report"
    html, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    for text in (html, md):
        for needle in ("97.12 %", "96.54 %", "95.99 %", "4321", "987", "10037", "43.21 %", "digits_top",
                       "PASSED", "Yosys estimates, not vendor P&amp;R" if text is html else "Yosys estimates",
                       "yes: the outputs are the logits", "Resources per layer", "3001", "1299",
                       "sum (hierarchical synthesis)", "LUT -0.1 %", "ASIC estimate", "51,234", "34,000", "Timing estimate", "242.7 MHz", "5 ns met", "251.3",
                       "without a PDK"):
            assert needle in text, needle
        assert "not run" not in text
    assert summary["accuracy"] == {"qkeras": 0.9712, "csim": 0.9654, "rtl": 0.9599}
    assert summary["resources"]["LUT"] == 4321 and summary["softmax_stripped"] is True
    rows = {r["name"]: r for r in summary["layers"]}
    assert [r["name"] for r in summary["layers"]] == ["dense_0", "relu_0", "dense_1"]
    assert rows["dense_0"]["multipliers"] == 13 and rows["dense_0"]["shape"] == "8 x 6"
    assert rows["dense_0"]["nonzero"] == int(np.count_nonzero(codes["dense_0"]))
    assert rows["dense_1"]["reuse_factor"] == 2 and rows["dense_0"]["bits"] == 6
    # Every plot is a real PNG, referenced in the summary and embedded in the HTML.
    expected = {"plots/sparsity_dense_0.png", "plots/sparsity_dense_1.png", "plots/weights_dense_0.png",
                "plots/weights_dense_1.png", "plots/quant_error.png"}
    assert set(summary["plots"]) == set(result["plots"]) == expected
    for rel in expected:
        w, h = _valid_png(out / rel)
        assert w > 100 and h > 100
        assert plots.png_base64(out / rel) in html
        assert f"]({rel})" in md
    assert "float weights not available" not in html.lower()


def test_quant_error_uses_float_weights(full_run: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    run, codes = full_run
    got = report.float_kernels(run / "model" / "model.h5", ["dense_0", "dense_1", "missing"])
    assert set(got) == {"dense_0", "dense_1"}
    assert np.all(np.abs(got["dense_0"] - codes["dense_0"] * 2.0 ** -5) <= 2.0 ** -6)
    # Without model.h5 the plot falls back to the code histogram and says so.
    (run / "model" / "model.h5").unlink()
    summary = report.build(run, tmp_path / "rep")
    assert any("Float weights were not available" in n for n in summary["notes"])
    assert "float weights not available" in (tmp_path / "rep" / "report.html").read_text()


def test_empty_run_shows_not_run(tmp_path: Path) -> None:
    run = tmp_path / "empty"
    run.mkdir()
    report.run(Config(), run)
    out = run / "report"
    summary = rundir.read_json(out / "summary.json")
    assert set(summary["stages"].values()) == {"not run"}
    assert summary["accuracy"] == {"qkeras": None, "csim": None, "rtl": None}
    assert summary["layers"] == [] and summary["plots"] == [] and summary["resources"] is None
    html, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    for text in (html, md):
        assert "Synth: not run" in text and "Verify: not run" in text and "Training: not run" in text
        assert "%" not in text.split("Accuracy at each stage")[1].split("Model")[0]
    assert not list((out).glob("plots/*.png"))


def test_partial_run_only_shows_what_ran(full_run: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    run, _ = full_run
    for stage in ("sim", "synth"):
        (run / stage / "result.json").unlink()
    summary = report.build(run, tmp_path / "rep")
    assert summary["stages"]["sim"] == "not run" and summary["stages"]["synth"] == "not run"
    assert summary["accuracy"]["rtl"] is None and summary["resources"] is None
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "4321" not in md and "95.99" not in md and "Synth: not run" in md


def test_pareto_front() -> None:
    xs = [10, 5, 20, 5, 8, 30]
    ys = [0.9, 0.8, 0.95, 0.7, 0.9, 0.95]
    # (5,0.8) beats (5,0.7); (8,0.9) beats (10,0.9); (20,0.95) beats (30,0.95).
    assert plots.pareto_front(xs, ys) == [1, 4, 2]
    assert plots.pareto_front([], []) == []
