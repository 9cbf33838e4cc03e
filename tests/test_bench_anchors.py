"""bench_da4ml's anchors (codesign.tools.anchors): rounding/overflow mapping, the worker spec, the
testbench wrapper's format mapping, and the printed goal. No network, no venv, no anchor run."""

from __future__ import annotations

import re

import numpy as np
import pytest

from codesign.tools import anchors
from codesign.tools.bench_da4ml import report


def _t(width: int, integer: int, signed: bool, rounding: str = "TRN", overflow: str = "WRAP") -> dict:
    return {"width": width, "integer": integer, "signed": signed, "rounding": rounding, "overflow": overflow}


def test_cast_modes_exact_where_the_anchor_has_the_mode() -> None:
    assert anchors.cast_modes(anchors.ALKAID, "RND_CONV", "SAT") == ("SAT", "RND_CONV", True)
    assert anchors.cast_modes(anchors.ALKAID, "TRN", "WRAP") == ("WRAP", "TRN", True)
    # da4ml 0.6.0 has no RND_CONV: same hardware shape with RND, and the cast is not exact
    assert anchors.cast_modes(anchors.DA4ML, "RND_CONV", "SAT") == ("SAT", "RND", False)
    assert anchors.cast_modes(anchors.DA4ML, "RND", "SAT_SYM") == ("SAT_SYM", "RND", True)
    assert anchors.cast_modes(anchors.ALKAID, "RND_ZERO", "SAT_ZERO") == ("SAT", "RND", False)
    with pytest.raises(ValueError, match="'RND_UP'.*valid: TRN"):
        anchors.cast_modes(anchors.ALKAID, "RND_UP", "WRAP")
    with pytest.raises(ValueError, match="'CLAMP'.*valid: WRAP"):
        anchors.cast_modes(anchors.ALKAID, "TRN", "CLAMP")


def _graph() -> dict:
    relu_t = _t(6, 0, False, "RND_CONV", "SAT")
    acc = _t(20, 8, True)
    return {"input": {"n": 2, "type": _t(8, 3, True)}, "output": {"n": 1, "type": relu_t},
            "layers": [{"kind": "dense", "name": "fc", "weights": [[1], [-2]], "bias": [3], "weight_frac": 2,
                        "bias_frac": 4, "accum_type": acc, "out_type": acc},
                       {"kind": "relu", "name": "act", "out_type": relu_t}]}


def test_make_spec_maps_every_cast_and_names_the_inexact_ones() -> None:
    spec = anchors.make_spec(anchors.ALKAID, _graph(), latency_cutoff=5.0)
    assert spec["input"] == [1, 2, 5, "WRAP", "TRN"]
    assert spec["layers"][0]["casts"] == [[1, 7, 12, "WRAP", "TRN"]] * 2
    assert spec["layers"][1]["casts"] == [[0, 0, 6, "SAT", "RND_CONV"]]
    assert spec["inexact"] == [] and spec["output_frac"] == 6 and spec["latency_cutoff"] == 5.0
    da = anchors.make_spec(anchors.DA4ML, _graph())
    assert da["layers"][1]["casts"] == [[0, 0, 6, "SAT", "RND"]]
    assert da["inexact"] == ["act out: RND_CONV,SAT as RND,SAT"]
    g = _graph()
    g["layers"].append({"kind": "softmax", "name": "sm", "out_type": _t(8, 1, False)})
    with pytest.raises(ValueError, match="'sm' of kind 'softmax'"):
        anchors.make_spec(anchors.ALKAID, g)


def _eval(expr: str, word: int) -> tuple[int, int]:
    """Evaluate element_expr's Verilog (parts: x[h:l], x[i], N'b0, {N{x[i]}}) on ``word``: (value, width)."""
    parts = [expr] if not expr.startswith("{") or expr.startswith("{{") and expr.count("}}") == 1 and "," not in expr \
        else [p.strip() for p in re.split(r",\s*(?![^{]*\})", expr[1:-1])]
    value, width = 0, 0
    for p in parts:
        if m := re.fullmatch(r"(\d+)'b0", p):
            n, bits = int(m.group(1)), 0
        elif m := re.fullmatch(r"\{(\d+)\{\w+\[(\d+)\]\}\}", p):
            n = int(m.group(1))
            bits = ((1 << n) - 1) if (word >> int(m.group(2))) & 1 else 0
        elif m := re.fullmatch(r"\w+\[(\d+):(\d+)\]", p):
            hi, lo = int(m.group(1)), int(m.group(2))
            n, bits = hi - lo + 1, (word >> lo) & ((1 << (hi - lo + 1)) - 1)
        elif m := re.fullmatch(r"\w+\[(\d+)\]", p):
            n, bits = 1, (word >> int(m.group(1))) & 1
        else:
            raise AssertionError(f"unexpected part {p!r} of {expr!r}")
        value, width = (value << n) | bits, width + n
    return value, width


@pytest.mark.parametrize("src,dst,drop", [((1, 3, 11), (1, 6, 11), False), ((0, 0, 6), (1, 6, 11), False),
                                          ((1, 5, 10), (1, 5, 10), True), ((1, 5, 10), (1, 3, 8), True),
                                          ((0, 4, 2), (0, 6, 5), False), ((1, 2, 0), (1, 4, 3), False)])
def test_element_expr_maps_values_between_formats(src: tuple, dst: tuple, drop: bool) -> None:
    k0, i0, f0 = src
    k1, i1, f1 = dst
    w0, w1 = sum(src), sum(dst)
    rng = np.random.default_rng(3)
    offset = 7  # the element sits inside a wider packed vector with other bits around it
    for _ in range(200):
        code = int(rng.integers(-(1 << (w0 - 1)) if k0 else 0, (1 << (w0 - 1)) if k0 else (1 << w0)))
        noise = int(rng.integers(0, 1 << 20))
        word = (noise & ~(((1 << w0) - 1) << offset)) | ((code & ((1 << w0) - 1)) << offset)
        got, width = _eval(anchors.element_expr("v", offset, src, dst, drop), word)
        assert width == w1
        want = code << (f1 - f0) if f1 >= f0 else code >> (f0 - f1)  # floor: dropped LSBs truncate
        want &= (1 << w1) - 1  # two's complement in the destination width (wraps when bits are dropped)
        assert got == want, (code, src, dst)


def test_element_expr_refuses_a_lossy_output_mapping() -> None:
    with pytest.raises(ValueError, match=r"\(1, 6, 11\) does not fit into \(1, 3, 11\)"):
        anchors.element_expr("v", 0, (1, 6, 11), (1, 3, 11), False)
    with pytest.raises(ValueError, match="no bits"):
        anchors.element_expr("v", 0, (1, 6, 11), (0, 0, 0), True)


@pytest.mark.verilator
def test_handshake_top_lints_clean(tmp_path) -> None:
    from codesign import simtools

    inner = tmp_path / "model.v"
    inner.write_text("module model (input wire clk, input wire [31:0] model_inp, output reg [30:0] model_out);\n"
                     "  always @(posedge clk) model_out <= model_inp[30:0] ^ {31{model_inp[31]}};\nendmodule\n")
    top = tmp_path / "anchor_top.v"
    top.write_text(anchors.handshake_top("anchor_top", "model", "model_inp", "model_out", (1, 5, 10), (1, 6, 11),
                                         [(1, 5, 10)] * 2, [(1, 3, 11), (1, 4, 11)], 3))
    simtools.verilator_lint([inner, top], "anchor_top", tmp_path / "lint.log")  # raises on any warning


def _synth(lut: int, ff: int, dsp: int = 0, latency: int = 8) -> dict:
    return {"LUT": lut, "FF": ff, "DSP": dsp, "CARRY": 10, "latency_cycles": latency, "generate_seconds": 1.0,
            "wall_seconds": 2.0, "cpu_seconds": 1.5}


def test_report_compares_with_the_better_anchor_and_states_the_goal() -> None:
    ours = {**_synth(700, 500), "passed": True, "verified": "PASSED"}
    found = {"da4ml": {**_synth(1000, 700), "status": "da4ml 0.6.0", "verified": "emulator"},
             "alkaid": {**_synth(1200, 1400, latency=11), "status": "alkaid 0.8.2", "verified": "PASSED"}}
    text = report(ours, found)
    lut_row = next(line for line in text.splitlines() if line.startswith("| LUT "))
    assert [c.strip() for c in lut_row.strip("|").split("|")] == ["LUT", "700", "1000", "1200", "0.700", "0.583", "0.700"]
    assert "ours/best (da4ml)" in text
    assert "goal (issue 15, RF 1 vs the better anchor, da4ml): met" in text
    # FF 600 > 0.8 x 700: not met, and it says which item
    text = report({**ours, "FF": 600}, found)
    assert ": NOT met" in text and "FF <= 0.80 x better anchor: NOT met" in text
    assert "LUT <= 0.80 x better anchor: met" in text
    text = report({**ours, "passed": False}, found)
    assert "verified bit-exact vs C-sim: NOT met" in text
    # no anchor ran: reported, not a crash, and the goal cannot be judged
    text = report(ours, {"da4ml": {"status": "skipped (--skip-da4ml)"}, "alkaid": {"status": "NOT RUN: offline"}})
    assert "cannot be judged" in text and "skipped (--skip-da4ml)" in text and "NOT RUN: offline" in text
