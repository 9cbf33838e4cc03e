"""Folded Dense layers (reuse factor R > 1): every architecture of codesign.arch.fold, bit-exact.

Random small Dense layers (signed and unsigned inputs of 1..10 bits, pruned weights, R from 2 to
n_in*n_out, R not dividing the input width) are generated with each architecture and simulated
(Icarus) against the golden model, comparing every integer, with the latency and II design.json
states; the cost model's choice and the ``rtl.fold_architecture`` override are checked too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codesign import golden, pipeline, rtlgen, simtools
from codesign.arch import digit_serial, fold, input_serial
from codesign.config import from_dict
from codesign.errors import ConfigError, RtlGenError
from codesign.fixedpoint import FixedType
from codesign.graph import Graph, Layer

ARCHS = ("lanes", "digit_serial", "input_serial")
NAMES = {"lanes": "folded", "digit_serial": "digit-serial", "input_serial": "input-serial"}


def dense(name: str, w: Any, b: Any, in_t: FixedType, out_t: FixedType, acc_t: FixedType, rf: int,
          weight_frac: int = 3, bias_frac: int = 3) -> Layer:
    w = np.asarray(w, dtype=np.int64)
    return Layer(name=name, kind="dense", n_in=w.shape[0], n_out=w.shape[1], in_type=in_t, out_type=out_t,
                 source="Dense(linear)", accum_type=acc_t, weights=w, weight_frac=weight_frac,
                 bias=np.asarray(b, dtype=np.int64), bias_frac=bias_frac, reuse_factor=rf)


def random_layer(seed: int, rf: int | None = None) -> Layer:
    """A random small Dense layer; the accum type keeps every product's fractional bits (so every
    architecture applies) and wraps, the result rounds and saturates."""
    rng = np.random.default_rng(seed)
    n_in, n_out = int(rng.integers(1, 6)), int(rng.integers(1, 5))
    width = int(rng.integers(1, 11))
    signed = bool(rng.integers(0, 2))
    in_t = FixedType(width, int(rng.integers(0, width + 1)), signed)
    w = rng.integers(-40, 41, size=(n_in, n_out))
    w[rng.random((n_in, n_out)) < 0.35] = 0
    if not w.any():
        w[0, 0] = 5
    wf = 3
    acc_frac = in_t.frac + wf
    acc_t = FixedType(24, 24 - acc_frac, True, "TRN", "WRAP")
    out_t = FixedType(8, 5, True, "RND_CONV", "SAT")
    if rf is None:
        rf = int(rng.integers(2, n_in * n_out + 1)) if n_in * n_out > 1 else 1
    return dense("fc", w, rng.integers(-60, 61, size=n_out), in_t, out_t, acc_t, rf, wf, 2)


def verify(tmp: Path, graph: Graph, arch: str, n: int = 120, seed: int = 0, multipliers: str = "auto") -> dict[str, Any]:
    rtl = tmp / "rtl"
    design = rtlgen.generate(graph, rtl, fold_architecture=arch, multipliers=multipliers)
    from codesign import design as design_io

    design_io.write(rtl, design)
    t = graph.input_type
    rng = np.random.default_rng(seed)
    x = rng.integers(t.min_code, t.max_code + 1, size=(n, graph.n_in), dtype=np.int64)
    x[0], x[1] = t.min_code, t.max_code
    outs = golden.layer_outputs(graph, x)
    arrays = {"inputs": x, "expected": outs[graph.layers[-1].name]}
    arrays.update({f"golden_{k}": v for k, v in outs.items()})
    res = pipeline.simulate(rtl, design, arrays, tmp / "sim", simulator="icarus")
    assert not res["problems"], res["problems"]
    assert res["mismatches"] == 0 and res["passed"]
    assert res["latency_min"] == res["latency_max"] == design["latency"]
    assert res["ii"] == design["ii"]
    return design


def lint(rtl: Path, design: dict[str, Any]) -> None:
    simtools.verilator_lint([rtl / f for f in design["files"]], design["top"], rtl / "lint.log")


# ----------------------------------------------------------------------------- arithmetic, fast

@pytest.mark.parametrize("seed", range(40))
def test_digit_serial_arithmetic_is_exact(seed: int) -> None:
    """The digit-serial datapath's integer model (graph codes, offsets, serial accumulation) equals
    sum_i w_ij x_i on every input code, for every R."""
    layer = random_layer(seed)
    t = layer.in_type
    x = np.random.default_rng(seed).integers(t.min_code, t.max_code + 1, size=(64, layer.n_in))
    x[0], x[1] = t.min_code, t.max_code
    for R in sorted({2, 3, max(2, t.width - 1), t.width, t.width + 1, 11}):
        p = digit_serial.plan(layer, R)
        assert p.D <= R and p.d * p.D >= t.width
        assert np.array_equal(digit_serial.evaluate(p, layer, x), x @ layer.weights), R


def test_digit_and_group_plans() -> None:
    assert digit_serial.digits(6, 2) == (3, 2)
    assert digit_serial.digits(6, 4) == (2, 3)  # R does not divide W: one idle cycle
    assert digit_serial.digits(6, 16) == (1, 6)
    assert digit_serial.digits(1, 5) == (1, 1)
    assert input_serial.groups(16, 4) == (4, 4)
    assert input_serial.groups(5, 3) == (2, 3)
    assert input_serial.groups(5, 20) == (1, 5)


# ----------------------------------------------------------------------------- simulation

CASES = [(seed, arch) for seed in range(12) for arch in ARCHS]


@pytest.mark.icarus
@pytest.mark.parametrize("seed,arch", CASES)
def test_random_layer_bit_exact(tmp_path: Path, seed: int, arch: str) -> None:
    layer = random_layer(seed)
    design = verify(tmp_path, Graph(layer.in_type, layer.n_in, (layer,)), arch)
    d = design["layers"][0]
    if layer.reuse_factor > 1:
        assert d["architecture"] == NAMES[arch] and d["ii"] == layer.reuse_factor
        assert design["ii"] == layer.reuse_factor


@pytest.mark.icarus
@pytest.mark.parametrize("arch", ARCHS)
def test_every_reuse_factor_bit_exact(tmp_path: Path, arch: str) -> None:
    """A signed 5-bit 3 -> 2 layer at every R from 2 to n_in*n_out = 6 (R = 2, 3, 4 do not divide
    5: digits of 3, 2, 2 bits, idle cycles), one design per R."""
    in_t = FixedType(5, 2, True)
    w = [[7, 0], [-13, 21], [0, -1]]
    for R in range(2, 7):
        layer = dense("fc", w, [9, -4], in_t, FixedType(9, 5, True, "RND", "SAT"), FixedType(20, 12), R)
        sub = tmp_path / f"rf{R}"
        d = verify(sub, Graph(in_t, 3, (layer,)), arch, n=60)["layers"][0]
        assert (d["architecture"], d["ii"]) == (NAMES[arch], R)
        if arch == "digit_serial":
            assert d["digit_bits"] == -(-5 // R)


@pytest.mark.icarus
@pytest.mark.parametrize("arch", ["lanes", "input_serial"])
def test_per_product_rounding_folded(tmp_path: Path, arch: str) -> None:
    """accum_t keeps 3 of the products' 8 fractional bits: each product rounds on its own into a
    wrapping accum_t (lanes, input-serial); digit-serial is unavailable, so auto avoids it."""
    rng = np.random.default_rng(11)
    w = rng.integers(-31, 32, size=(5, 4))
    w[rng.random((5, 4)) < 0.3] = 0
    in_t = FixedType(6, 2)
    layer = dense("fc", w, rng.integers(-20, 21, size=4), in_t, FixedType(10, 6, True, "RND", "SAT"),
                  FixedType(12, 9, True, "RND_CONV", "WRAP"), 3, 4, 4)
    d = verify(tmp_path, Graph(in_t, 5, (layer,)), arch)["layers"][0]
    assert d["architecture"] == NAMES[arch]
    assert "digit_serial" in fold.choose(layer).unavailable


@pytest.mark.icarus
@pytest.mark.verilator
def test_two_folded_layers_and_lint(tmp_path: Path) -> None:
    """A chain with different R per layer (the top paces at the largest), unsigned ReLU codes between."""
    rng = np.random.default_rng(3)
    in_t = FixedType(7, 3)
    d0 = dense("fc0", rng.integers(-20, 21, size=(4, 5)), rng.integers(-9, 10, size=5), in_t,
               FixedType(10, 6, True, "TRN", "WRAP"), FixedType(20, 10), 3)
    relu = Layer("act0", "relu", 5, 5, d0.out_type, FixedType(5, 2, False, "RND_CONV", "SAT"), "Activation(relu)")
    w1 = rng.integers(-20, 21, size=(5, 3))
    w1[1] = 0  # a pruned input
    d1 = dense("fc1", w1, rng.integers(-9, 10, size=3), relu.out_type, FixedType(8, 5, True, "RND", "SAT"),
               FixedType(20, 10), 5)
    for arch in ARCHS + ("auto",):
        design = verify(tmp_path / arch, Graph(in_t, 4, (d0, relu, d1)), arch, n=80)
        assert design["ii"] == 5
        # the ReLU is applied before fc0's output register (rtl.fuse_activations), whichever architecture
        by_name = {lay["name"]: lay for lay in design["layers"]}
        assert by_name["fc0"]["fused_activation"] == "act0" and by_name["act0"]["fused_into"] == "fc0"
        lint(tmp_path / arch / "rtl", design)


@pytest.mark.verilator
@pytest.mark.parametrize("seed", range(6))
def test_lint_clean(tmp_path: Path, seed: int) -> None:
    layer = random_layer(100 + seed)
    for arch in ARCHS:
        design = rtlgen.generate(Graph(layer.in_type, layer.n_in, (layer,)), tmp_path / arch, fold_architecture=arch)
        lint(tmp_path / arch, design)


# ----------------------------------------------------------------------------- choice and override

def test_cost_model_picks_the_cheapest_estimate() -> None:
    for seed in range(20):
        layer = random_layer(seed)
        if layer.reuse_factor == 1:
            continue
        c = fold.choose(layer)
        assert set(c.estimates) == set(ARCHS)
        best = min(c.estimates.values(), key=lambda e: (e["lut"] + e["ff"], e["lut"]))
        assert (c.estimates[c.arch]["lut"], c.estimates[c.arch]["ff"]) == (best["lut"], best["ff"])


def test_auto_prefers_digit_serial_for_small_r_on_a_wide_layer() -> None:
    rng = np.random.default_rng(0)
    w = rng.integers(-31, 32, size=(16, 12))
    w[rng.random(w.shape) < 0.4] = 0
    layer = dense("fc", w, np.zeros(12), FixedType(8, 3), FixedType(10, 5), FixedType(24, 12), 2)
    assert fold.choose(layer).arch == "digit_serial"


def test_design_json_records_the_architecture(tmp_path: Path) -> None:
    layer = random_layer(5, rf=2)
    for arch in ARCHS:
        d = rtlgen.generate(Graph(layer.in_type, layer.n_in, (layer,)), tmp_path / arch,
                            fold_architecture=arch)["layers"][0]
        assert d["fold_architecture"] == arch and d["architecture"] == NAMES[arch]
        assert arch in d["fold_estimates"]
    auto = rtlgen.generate(Graph(layer.in_type, layer.n_in, (layer,)), tmp_path / "auto")["layers"][0]
    assert auto["fold_architecture"] == fold.choose(layer).arch


@pytest.mark.icarus
def test_unavailable_override_falls_back_to_lanes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Digit-serial needs exact products without per-product rounding: forced on a layer whose
    products round, it falls back to the lanes, says why in the log and in design.json."""
    in_t = FixedType(6, 2)
    layer = dense("fc_round", [[3, 5], [7, -9]], [0, 0], in_t, FixedType(10, 6),
                  FixedType(12, 9, True, "RND", "WRAP"), 2, 4, 0)
    with caplog.at_level("WARNING"):
        d = verify(tmp_path, Graph(in_t, 2, (layer,)), "digit_serial", n=40)["layers"][0]
    assert d["architecture"] == "folded" and d["fold_architecture"] == "lanes"
    assert "fc_round" in d["fold_note"] and "digit_serial is not available" in d["fold_note"]
    assert "fc_round" in caplog.text
    # rtl.adder_graph off: no digit-serial either
    layer2 = random_layer(7, rf=2)
    c = fold.choose(layer2, "digit_serial", adder_graph=False)
    assert c.arch == "lanes" and "adder_graph" in c.note


def test_po2_and_refusals_are_unchanged(tmp_path: Path) -> None:
    in_t = FixedType(6, 2)
    sat = dense("fc_sat", [[31, 31], [31, 31]], [0, 0], in_t, FixedType(8, 4),
                FixedType(11, 3, True, "TRN", "SAT"), 2, 4, 0)
    for arch in fold.CHOICES:
        with pytest.raises(RtlGenError, match=r"layer fc_sat: saturating accum type .* can overflow"):
            rtlgen.generate(Graph(in_t, 2, (sat,)), tmp_path / arch, fold_architecture=arch)
    with pytest.raises(ValueError, match="fold architecture 'bogus'"):
        fold.choose(sat, "bogus")


def test_config_field_is_validated() -> None:
    assert from_dict({}).rtl.fold_architecture == "auto"
    assert from_dict({"rtl": {"fold_architecture": "input_serial"}}).rtl.fold_architecture == "input_serial"
    with pytest.raises(ConfigError, match="rtl.fold_architecture"):
        from_dict({"rtl": {"fold_architecture": "bit_serial"}})
    assert set(fold.CHOICES) == set(__import__("codesign.config", fromlist=["x"]).FOLD_ARCHITECTURES)


# ----------------------------------------------------------------------------- rtl.multipliers

MULTIPLIER_CASES = [(seed, arch, mode) for seed in range(6) for arch in ("lanes", "input_serial")
                    for mode in ("dsp", "lut")]


@pytest.mark.icarus
@pytest.mark.parametrize("seed,arch,mode", MULTIPLIER_CASES)
def test_multipliers_as_dsp_or_lut_bit_exact(tmp_path: Path, seed: int, arch: str, mode: str) -> None:
    """rtl.multipliers dsp (``*`` marked use_dsp) and lut (shift-and-add partial products, no ``*``)
    give the same integers as the golden model; design.json records the mapping."""
    layer = random_layer(200 + seed, rf=2)
    design = verify(tmp_path, Graph(layer.in_type, layer.n_in, (layer,)), arch, multipliers=mode)
    d = design["layers"][0]
    assert d["fold_architecture"] == arch and d["multipliers_as"] == mode
    text = (tmp_path / "rtl" / f"{d['module']}.v").read_text()
    assert ('(* use_dsp = "yes" *)' in text) == (mode == "dsp")
    assert (" * " in text.replace("(* ", "").replace(" *)", "")) == (mode == "dsp")


def test_lut_multiplier_covers_every_operand_pair() -> None:
    """The shift-and-add product, evaluated bit by bit as the Verilog writes it (AND with the
    replicated bit of b, shift, add, the sign bit's term subtracted, all modulo 2^w), equals a * b
    for every signed a and b of 1..5 bits."""
    import re

    from codesign.arch import netlist
    from codesign.arch.dense import multiply

    for a_w in range(1, 6):
        for b_w in range(1, 6):
            m = netlist.Module("t")
            w = multiply(m, "p", "a", a_w, "b", b_w, "lut")
            expr = m.assigns[-1].split(" = ", 1)[1].rstrip(";")
            terms = re.findall(r"\{(\d+)\{b\[(\d+)\]\}\} & (?:p_a|\{p_a\[\d+:0\], (\d+)'b0\})", expr)
            assert len(terms) == b_w and expr.count(" - ") == 1
            for a in range(-(1 << (a_w - 1)), 1 << (a_w - 1)):
                for b in range(-(1 << (b_w - 1)), 1 << (b_w - 1)):
                    total = 0
                    for k, (_, bit, shift) in enumerate(terms):
                        part = ((a << int(shift or 0)) if (b >> int(bit)) & 1 else 0)
                        total += -part if k == b_w - 1 else part
                    got = total % (1 << w)
                    assert got - (1 << w) * (got >> (w - 1)) == a * b, (a_w, b_w, a, b)


@pytest.mark.verilator
def test_multiplier_modes_lint_clean(tmp_path: Path) -> None:
    for seed in range(3):
        layer = random_layer(300 + seed, rf=2)
        for arch in ("lanes", "input_serial"):
            for mode in ("dsp", "lut"):
                out = tmp_path / f"{seed}_{arch}_{mode}"
                design = rtlgen.generate(Graph(layer.in_type, layer.n_in, (layer,)), out,
                                         fold_architecture=arch, multipliers=mode)
                lint(out, design)


def test_dsp_multipliers_move_the_cost_off_luts() -> None:
    """With rtl.multipliers: dsp the cost model counts each multiplier as DSP blocks, not LUTs: the
    lanes' and input-serial estimates fall and state their DSPs."""
    rng = np.random.default_rng(4)
    w = rng.integers(-31, 32, size=(16, 12))
    layer = dense("fc", w, np.zeros(12), FixedType(8, 3), FixedType(10, 5), FixedType(24, 12), 16)
    lut, dsp = fold.choose(layer, multipliers="lut"), fold.choose(layer, multipliers="dsp")
    for a in ("lanes", "input_serial"):
        assert dsp.estimates[a]["lut"] < lut.estimates[a]["lut"] and dsp.estimates[a]["dsp"] > 0
        assert "dsp" not in lut.estimates[a]
    assert dsp.estimates["digit_serial"] == lut.estimates["digit_serial"]
    assert dsp.estimates[dsp.arch]["lut"] <= lut.estimates[lut.arch]["lut"]


@pytest.mark.parametrize("sparsity", [0.0, 0.45])
def test_dsp_mode_spends_at_most_a_dsp_per_product_per_cycle(sparsity: float) -> None:
    """With rtl.multipliers: dsp, auto keeps a layer within ceil(nonzeros / R) DSP blocks. Input-serial
    has the fewest LUTs + FFs on this 64x32 layer at RF 16, but multiplies pruned weights too: 45 %
    sparse it would take 128 DSPs for ~70 products per cycle, so another architecture is built; dense,
    its 128 are the bound and it stays the choice."""
    rng = np.random.default_rng(0)
    w = rng.integers(1, 32, size=(64, 32)) * rng.choice([-1, 1], size=(64, 32))
    w[rng.random(w.shape) < sparsity] = 0
    layer = dense("fc2", w, np.zeros(32), FixedType(6, 0, False), FixedType(6, 0, False), FixedType(20, 8), 16)
    bound = -(-layer.nonzero_weights // 16)
    c = fold.choose(layer, multipliers="dsp")
    cheapest = min(c.estimates, key=lambda a: c.estimates[a]["lut"] + c.estimates[a]["ff"])
    assert cheapest == "input_serial"
    assert c.estimates[c.arch].get("dsp", 0) <= bound
    if sparsity:
        assert c.estimates["input_serial"]["dsp"] > bound and c.arch != "input_serial"
        within = [a for a in c.estimates if c.estimates[a].get("dsp", 0) <= bound]
        assert c.arch == min(within, key=lambda a: c.estimates[a]["lut"] + c.estimates[a]["ff"])
    else:
        assert c.arch == "input_serial"


@pytest.mark.yosys
def test_yosys_maps_dsp_mode_to_dsp_blocks_and_lut_mode_to_none(tmp_path: Path) -> None:
    from codesign import synth

    rng = np.random.default_rng(5)
    w = rng.integers(-100, 101, size=(6, 4))
    layer = dense("fc", w, np.zeros(4), FixedType(16, 6), FixedType(12, 6), FixedType(36, 16), 6)
    for arch in ("lanes", "input_serial"):
        counts, mults = {}, {}
        for mode in ("dsp", "lut"):
            out = tmp_path / f"{arch}_{mode}"
            design = rtlgen.generate(Graph(layer.in_type, layer.n_in, (layer,)), out, fold_architecture=arch,
                                     multipliers=mode)
            res = synth.synthesize(out, design["top"], design["files"], tmp_path / f"syn_{arch}_{mode}")
            counts[mode], mults[mode] = res["DSP"], design["layers"][0]["multipliers"]
        # 16-bit inputs times 8-bit weights fit one DSP48E2 (27 x 18) each: one block per multiplier
        # (operands sign-extended to the 24-bit product in the Verilog map to two)
        assert counts["lut"] == 0 and mults["dsp"] > 0 and counts["dsp"] == mults["dsp"], (arch, counts, mults)


def test_multipliers_config_is_validated() -> None:
    from codesign.arch.dense import MULTIPLIERS

    assert from_dict({}).rtl.multipliers == "auto"
    assert from_dict({"rtl": {"multipliers": "lut"}}).rtl.multipliers == "lut"
    with pytest.raises(ConfigError, match="rtl.multipliers"):
        from_dict({"rtl": {"multipliers": "bram"}})
    assert MULTIPLIERS == __import__("codesign.config", fromlist=["x"]).MULTIPLIERS
