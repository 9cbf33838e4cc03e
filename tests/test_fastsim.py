"""codesign.fastsim and codesign/testbenches/tb_stream.v: the compiled, file-driven stream testbench.

The main design under test is a small QKeras MLP (tests/conftest.py), converted here by hls4ml with
every Dense layer at reuse factor 4 (II 4), its RTL generated, and checked against the C-sim
compiled by that conversion.
Small hand-written DUTs check the protocol monitor, the watchdog and the element packing.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codesign import fastsim, layers
from codesign.config import Config
from codesign.convert import convert_model
from codesign.csim import CSim
from codesign.rtlgen import generate
from codesign.vectors import random_codes

RF = 4
N_TEST, N_RANDOM = 40, 60


@dataclasses.dataclass
class Demo:
    rtl: Path
    design: dict[str, Any]
    inputs: np.ndarray
    expected: np.ndarray
    build_root: Path
    runs: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    tmp = tmp_path_factory.mktemp("fastsim")
    cfg = Config().replace(**{"hls.reuse_factor": RF})
    from conftest import small_qkeras_mlp

    hls_model, _, stripped = convert_model(cfg, small_qkeras_mlp(seed=4), tmp / "hls")
    g = layers.from_hls4ml(hls_model, softmax_stripped=stripped)
    assert all(layer.reuse_factor == RF for layer in g.layers if layer.kind == "dense")
    design = generate(g, tmp / "rtl")
    (tmp / "rtl" / "design.json").write_text(json.dumps(design, indent=1, sort_keys=True) + "\n")
    csim = CSim.for_graph(tmp / "hls", g)
    test_codes = random_codes(g, N_TEST, seed=4)
    inputs = np.concatenate([test_codes, random_codes(g, N_RANDOM, seed=5)]).astype(np.int64)
    return Demo(tmp / "rtl", design, inputs, csim.predict_codes(inputs), tmp / "build", {})


def stream(d: Demo, simulator: str, gap_pct: int = 20, bp_pct: int = 20, seed: int = 3) -> dict[str, Any]:
    key = f"{simulator}-{gap_pct}-{bp_pct}-{seed}"
    if key not in d.runs:
        d.runs[key] = fastsim.run_stream(d.rtl, d.inputs, simulator=simulator, gap_pct=gap_pct, bp_pct=bp_pct,
                                         seed=seed, build_dir=d.build_root / simulator)
    return d.runs[key]


def assert_clean(res: dict[str, Any], n: int) -> None:
    assert (res["accepted"], res["received"]) == (n, n)
    assert res["protocol_violations"] == 0
    assert (res["spurious_outputs"], res["extra_outputs"], res["timeout"]) == (0, 0, False)


# ------------------------------------------------------------------ the RF 4 digits network
@pytest.mark.hls4ml
@pytest.mark.icarus
@pytest.mark.verilator
def test_verilator_and_icarus_match_csim_with_identical_cycles(demo: Demo) -> None:
    assert demo.design["ii"] == RF
    ver = stream(demo, "verilator")
    ica = stream(demo, "icarus")
    for res in (ver, ica):
        assert_clean(res, len(demo.inputs))
        cmp = fastsim.compare(res["outputs"], demo.expected)
        assert cmp["mismatched_vectors"] == 0 and cmp["first_mismatch"] is None, cmp
        assert res["latency_min"] == demo.design["latency"]
        assert res["ii_min"] == demo.design["ii"]
    assert np.array_equal(ver["outputs"], ica["outputs"])
    for key in ("cycles", "latency_min", "latency_max", "ii_min"):
        assert ver[key] == ica[key], key
    # random gaps and back-pressure really happened: some vectors waited in the pipeline
    assert ver["latency_max"] > ver["latency_min"]
    assert ver["cycles"] > len(demo.inputs) * RF


@pytest.mark.hls4ml
@pytest.mark.verilator
def test_corrupted_expected_value_is_detected(demo: Demo) -> None:
    outputs = stream(demo, "verilator")["outputs"]
    bad = demo.expected.copy()
    bad[57, 3] += 1
    cmp = fastsim.compare(outputs, bad)
    assert cmp["mismatched_vectors"] == 1 and cmp["mismatched_outputs"] == 1
    assert cmp["first_mismatch"] == {"vector": 57, "output": 3, "got": int(demo.expected[57, 3]),
                                     "expected": int(demo.expected[57, 3]) + 1}
    short = fastsim.compare(outputs[:-1], demo.expected)  # a lost output is a mismatch too
    assert short["missing_vectors"] == 1 and short["mismatched_vectors"] == 1
    assert short["first_mismatch"]["vector"] == len(demo.inputs) - 1


@pytest.mark.hls4ml
@pytest.mark.verilator
def test_backpressure_makes_the_run_longer_not_different(demo: Demo) -> None:
    full = stream(demo, "verilator", gap_pct=0, bp_pct=0)
    assert not full["built"]  # same design, same build: run-time knobs need no rebuild
    pressed = stream(demo, "verilator", gap_pct=0, bp_pct=60)
    for res in (full, pressed):
        assert_clean(res, len(demo.inputs))
    assert np.array_equal(full["outputs"], pressed["outputs"])
    assert np.array_equal(full["outputs"], demo.expected)
    # full rate: every vector sees exactly the promised latency, one vector per II
    assert full["latency_min"] == full["latency_max"] == demo.design["latency"]
    assert full["ii_min"] == RF
    assert pressed["cycles"] > full["cycles"]
    assert pressed["latency_max"] > demo.design["latency"]


@pytest.mark.hls4ml
@pytest.mark.verilator
def test_seed_changes_the_schedule_not_the_outputs(demo: Demo) -> None:
    a, b = stream(demo, "verilator", seed=3), stream(demo, "verilator", seed=4)
    assert np.array_equal(a["outputs"], b["outputs"])
    assert not np.array_equal(a["latencies"], b["latencies"])


# ------------------------------------------------------------------ hand-written DUTs (Icarus)
_DUTS = {
    # a correct one-stage register slice: latency 1, II 1
    "slice": """
        assign in_ready = !out_valid || out_ready;
        always @(posedge clk)
          if (rst) out_valid <= 1'b0;
          else if (in_ready) begin out_valid <= in_valid; out_data <= in_data; end
    """,
    # breaks the hold rule: out_data changes while out_valid is high and out_ready low
    "fickle": """
        assign in_ready = !out_valid || out_ready;
        always @(posedge clk)
          if (rst) out_valid <= 1'b0;
          else if (in_ready) begin out_valid <= in_valid; out_data <= in_data; end
          else out_data <= out_data + 8'd1;
    """,
    # accepts everything, never answers
    "mute": """
        assign in_ready = 1'b1;
        always @(posedge clk) begin out_valid <= 1'b0; out_data <= 8'd0; end
    """,
}


def small_dut(tmp: Path, name: str) -> Path:
    rtl = tmp / name
    rtl.mkdir()
    (rtl / f"{name}.v").write_text(
        f"module {name} (input wire clk, input wire rst, input wire in_valid, output wire in_ready,\n"
        f"  input wire [7:0] in_data, output reg out_valid, input wire out_ready, output reg [7:0] out_data);\n"
        f"{_DUTS[name]}\nendmodule\n")
    t = {"width": 4, "integer": 4, "signed": True, "rounding": "TRN", "overflow": "WRAP", "frac": 0}
    design = {"format": 1, "top": name, "files": [f"{name}.v"], "latency": 1, "ii": 1,
              "input": {"n": 2, "type": t, "bits": 8}, "output": {"n": 2, "type": t, "bits": 8}}
    (rtl / "design.json").write_text(json.dumps(design))
    return rtl


def small_inputs(n: int = 200) -> np.ndarray:
    return np.random.default_rng(0).integers(-8, 8, size=(n, 2), dtype=np.int64)


@pytest.mark.icarus
def test_register_slice_passes_with_exact_latency(tmp_path: Path) -> None:
    x = small_inputs()
    res = fastsim.run_stream(small_dut(tmp_path, "slice"), x, simulator="icarus", bp_pct=40,
                             build_dir=tmp_path / "b")
    assert_clean(res, len(x))
    assert np.array_equal(res["outputs"], x)
    assert res["latency_min"] == 1 and res["ii_min"] == 1 and res["latency_max"] > 1


@pytest.mark.icarus
def test_hold_rule_violation_is_counted(tmp_path: Path) -> None:
    x = small_inputs()
    res = fastsim.run_stream(small_dut(tmp_path, "fickle"), x, simulator="icarus", bp_pct=40,
                             build_dir=tmp_path / "b")
    assert res["protocol_violations"] > 0
    assert fastsim.compare(res["outputs"], x)["mismatched_vectors"] > 0
    calm = fastsim.run_stream(tmp_path / "fickle", x,
                              simulator="icarus", bp_pct=0, build_dir=tmp_path / "b")
    assert calm["protocol_violations"] == 0  # without back-pressure the bug cannot show
    assert np.array_equal(calm["outputs"], x)


@pytest.mark.icarus
def test_watchdog_stops_a_silent_design(tmp_path: Path) -> None:
    x = small_inputs(20)
    res = fastsim.run_stream(small_dut(tmp_path, "mute"), x, simulator="icarus", timeout_cycles=300,
                             build_dir=tmp_path / "b")
    assert res["timeout"] and res["received"] == 0 and res["accepted"] == 20
    assert res["cycles"] == 300
    assert fastsim.compare(res["outputs"], x)["missing_vectors"] == 20


def test_packing_puts_element_i_at_bits_i_times_w() -> None:
    assert fastsim.pack_hex(np.array([[1, -1], [-8, 7]]), 4) == ["f1", "78"]
    rng = np.random.default_rng(1)
    for width, signed in ((3, True), (6, False), (13, True), (21, True)):
        lo, hi = (-(1 << (width - 1)), 1 << (width - 1)) if signed else (0, 1 << width)
        codes = rng.integers(lo, hi, size=(50, 7), dtype=np.int64)
        words = [int(h, 16) for h in fastsim.pack_hex(codes, width)]
        assert np.array_equal(fastsim.unpack_words(words, 7, width, signed), codes)


def test_bad_arguments_name_the_culprit(tmp_path: Path) -> None:
    rtl = small_dut(tmp_path, "slice")
    with pytest.raises(ValueError, match=r"N x 2 input codes"):
        fastsim.run_stream(rtl, np.zeros((3, 5), dtype=np.int64), simulator="icarus")
    with pytest.raises(ValueError, match="bp_pct=100"):
        fastsim.run_stream(rtl, small_inputs(3), simulator="icarus", bp_pct=100)
    with pytest.raises(Exception, match="design.json"):
        fastsim.run_stream(tmp_path / "nowhere", small_inputs(3), simulator="icarus")
