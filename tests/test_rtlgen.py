"""Tests of the RTL backend (codesign/rtlgen): determinism, lint, design.json, refusals, bit-exactness.

Most tests build the hardware IR directly (no hls4ml), so they are fast; the rounding x overflow
test converts one small hls4ml model and compares every layer's C-sim trace with the golden model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codesign import golden, pipeline, rtlgen, simtools
from codesign.errors import RtlGenError
from codesign.fixedpoint import OVERFLOW_MODES, QUANT_MODES, FixedType, cast
from codesign.graph import Graph, Layer


def dense_layer(name: str, weights: Any, bias: Any, in_t: FixedType, out_t: FixedType, acc_t: FixedType,
                rf: int = 1, weight_frac: int = 0, bias_frac: int = 0) -> Layer:
    w = np.asarray(weights, dtype=np.int64)
    return Layer(name=name, kind="dense", n_in=w.shape[0], n_out=w.shape[1], in_type=in_t, out_type=out_t,
                 source="Dense(linear)", accum_type=acc_t, weights=w, weight_frac=weight_frac,
                 bias=np.asarray(bias, dtype=np.int64), bias_frac=bias_frac, reuse_factor=rf)


def random_dense(rng: np.random.Generator, n_in: int, n_out: int, rf: int = 1, sparsity: float = 0.3,
                 in_t: FixedType = FixedType(6, 2), name: str = "fc") -> Layer:
    w = rng.integers(-31, 32, size=(n_in, n_out))
    w[rng.random((n_in, n_out)) < sparsity] = 0
    b = rng.integers(-20, 21, size=n_out)
    return dense_layer(name, w, b, in_t, FixedType(8, 4, True, "RND_CONV", "SAT"), FixedType(24, 12),
                       rf=rf, weight_frac=4, bias_frac=4)


def lint(rtl: Path, design: dict[str, Any]) -> None:
    simtools.verilator_lint([rtl / f for f in design["files"]], design["top"], rtl / "lint.log")


def simulate_against_golden(tmp: Path, graph: Graph, n: int = 200, seed: int = 0,
                            simulator: str = "icarus", fold_architecture: str = "auto") -> dict[str, Any]:
    """Generate, write design.json, and verify the RTL against the golden model on random inputs."""

    rtl = tmp / "rtl"
    design = pipeline.generate(graph, rtl, fold_architecture=fold_architecture)
    t = graph.input_type
    rng = np.random.default_rng(seed)
    x = rng.integers(t.min_code, t.max_code + 1, size=(n, graph.n_in), dtype=np.int64)
    x[0], x[1] = t.min_code, t.max_code
    outs = golden.layer_outputs(graph, x)
    arrays = {"inputs": x, "expected": outs[graph.layers[-1].name]}
    arrays.update({f"golden_{k}": v for k, v in outs.items()})
    from conftest import assert_verifies

    assert_verifies(rtl, design, arrays, tmp, simulator)
    return design


# ----------------------------------------------------------------------------- reproducers

@pytest.mark.verilator
@pytest.mark.icarus
def test_folded_lane_shared_by_wide_and_narrow_neuron(tmp_path: Path) -> None:
    """Bug: a folded lane whose register p is wider than a neuron's accumulator crashed generate.

    Lane 0 carries fc's products x*100 (neuron 0) and x*1 (neuron 1); acc1 needs fewer bits than
    p0, and generate raised ``ValueError: cannot fit p0 (.. bits) into .. bits``. Found by
    ``python -m codesign.tools.fuzz --seed 0 --start 2 --cases 1`` (layer fc0, RF 12).
    """
    in_t = FixedType(5, 2)
    out_t = FixedType(16, 12, True, "RND_CONV", "SAT")
    layer = dense_layer("fc", [[100, 1], [0, 0]], [3, -2], in_t, out_t, FixedType(20, 14), rf=2)
    graph = Graph(in_t, 2, (layer,))
    design = simulate_against_golden(tmp_path, graph, fold_architecture="lanes")  # the lanes' reproducer
    assert design["layers"][0]["architecture"] == "folded"
    lint(tmp_path / "rtl", design)


@pytest.mark.verilator
def test_lint_trn_result_cast_that_drops_bits(tmp_path: Path) -> None:
    """Reproducer for a lint warning in the fxp_cast primitive: a TRN result that drops 3 bits."""
    in_t = FixedType(5, 2)
    layer = dense_layer("fc", [[3, 1]], [0, 0], in_t, FixedType(16, 12), FixedType(20, 13))
    design = rtlgen.generate(Graph(in_t, 1, (layer,)), tmp_path)
    lint(tmp_path, design)


# ----------------------------------------------------------------------------- determinism, lint

def _two_layer(rf0: int, rf1: int, seed: int = 1) -> Graph:
    rng = np.random.default_rng(seed)
    d0 = random_dense(rng, 5, 4, rf=rf0, name="fc0")
    relu = Layer("act0", "relu", 4, 4, d0.out_type, FixedType(6, 3, False, "RND_CONV", "SAT"), "Activation(relu)")
    d1 = random_dense(rng, 4, 3, rf=rf1, in_t=relu.out_type, name="fc1")
    return Graph(d0.in_type, 5, (d0, relu, d1))


def test_generate_is_deterministic(tmp_path: Path) -> None:
    g = _two_layer(1, 3)
    a = rtlgen.generate(g, tmp_path / "a")
    b = rtlgen.generate(g, tmp_path / "b")
    assert a == b
    for f in a["files"]:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "filelist.f").read_bytes() == (tmp_path / "b" / "filelist.f").read_bytes()
    text = "".join((tmp_path / "a" / f).read_text() for f in a["files"])
    assert str(tmp_path) not in text  # no absolute paths in the RTL


@pytest.mark.verilator
@pytest.mark.parametrize("rf", [1, 2, 3, 20])
def test_lint_clean_for_reuse_factors(tmp_path: Path, rf: int) -> None:
    rng = np.random.default_rng(rf)
    layer = random_dense(rng, 5, 4, rf=rf)  # n_in*n_out = 20
    design = rtlgen.generate(Graph(layer.in_type, 5, (layer,)), tmp_path)
    lint(tmp_path, design)


@pytest.mark.verilator
def test_lint_clean_unsigned_input_and_all_zero_layer(tmp_path: Path) -> None:
    in_t = FixedType(4, 1, False)
    mid, out = FixedType(6, 3, True, "RND", "SAT"), FixedType(6, 3, False, "RND_ZERO", "WRAP")
    zero = dense_layer("fc0", np.zeros((3, 2)), [1, -1], in_t, mid, FixedType(12, 6), rf=1)
    d1 = dense_layer("fc1", [[1, 0], [0, -3]], [0, 0], mid, out, FixedType(12, 6), rf=2)
    design = rtlgen.generate(Graph(in_t, 3, (zero, d1)), tmp_path)
    lint(tmp_path, design)


# ----------------------------------------------------------------------------- design.json

@pytest.mark.parametrize("rf0,rf1", [(1, 1), (2, 5), (3, 1), (20, 12)])
def test_design_json_costs_latency_ii(tmp_path: Path, rf0: int, rf1: int) -> None:
    g = _two_layer(rf0, rf1)
    # the lanes' and the per-neuron tree's cost and latency formulas (auto may pick input-serial)
    design = rtlgen.generate(g, tmp_path, adder_graph=False, fold_architecture="lanes")
    layers = {d["name"]: d for d in design["layers"]}
    for layer in (g.layers[0], g.layers[2]):
        d = layers[layer.name]
        R = layer.reuse_factor
        assert d["nonzero_weights"] == int(np.count_nonzero(layer.weights))
        if R > 1:
            assert d["architecture"] == "folded"
            assert d["multipliers"] == math.ceil(d["nonzero_weights"] / R)
            assert (d["latency"], d["ii"]) == (R + 3, R)
        else:
            assert d["architecture"] == "parallel"
            # constant products are shift-add terms: adders, no general multiplier
            assert d["multipliers"] == 0 and d["adders"] >= d["nonzero_weights"] - layer.n_out
            assert d["ii"] == 1
            # pipeline: one register every levels_per_stage adder levels, plus the output register
            terms = [sum(len(_csd(int(w))) for w in col) for col in layer.weights.T]
            depth = max(math.ceil(math.log2(t)) if t > 1 else 0 for t in terms)
            assert d["latency"] == math.ceil(depth / design["levels_per_stage"]) + 1
    assert layers["act0"]["latency"] == 0 and layers["act0"]["ii"] == 1
    assert design["latency"] == sum(d["latency"] for d in design["layers"])
    assert design["ii"] == max(d["ii"] for d in design["layers"])
    assert design["multipliers"] == layers["fc0"]["multipliers"] + layers["fc1"]["multipliers"]
    assert design["input"]["n"] == 5 and design["output"]["n"] == 3
    assert design["input"]["bits"] == 5 * 6 and design["output"]["bits"] == 3 * 8
    assert design["output"]["type"]["text"] == "fixed<8,4,RND_CONV,SAT>"
    assert set(design["files"]) <= {p.name for p in tmp_path.iterdir()}


def _csd(w: int) -> list[tuple[int, int]]:
    from codesign.arch.csd import csd

    return csd(w)


def test_reuse_factor_out_of_range_is_refused(tmp_path: Path) -> None:
    layer = random_dense(np.random.default_rng(0), 3, 2, rf=7)
    with pytest.raises(RtlGenError, match=r"layer fc: reuse factor 7 is outside 1\.\.6"):
        rtlgen.generate(Graph(layer.in_type, 3, (layer,)), tmp_path)


# ----------------------------------------------------------------------------- refusals

def test_unsupported_layer_is_refused_by_name(tmp_path: Path) -> None:
    d = random_dense(np.random.default_rng(0), 3, 2)
    sig = Layer("act_sig", "unsupported:Activation(sigmoid)", 2, 2, d.out_type, FixedType(8, 1),
                "Activation(sigmoid)")
    with pytest.raises(RtlGenError, match=r"layer act_sig: Activation\(sigmoid\) is not supported"):
        rtlgen.generate(Graph(d.in_type, 3, (d, sig)), tmp_path)


@pytest.mark.verilator
@pytest.mark.icarus
@pytest.mark.parametrize("overflow", ["SAT", "SAT_ZERO", "SAT_SYM"])
def test_saturating_accum_that_overflows_follows_hls4ml_order(tmp_path: Path, overflow: str) -> None:
    """Partial sums overflow a saturating accum_t, so the result depends on the order of additions:
    RF 1 builds hls4ml's input-by-input chain (sequential architecture), bit-exact; products are
    also rounded (accum keeps 6 of their 8 fractional bits) and may saturate on their own."""
    rng = np.random.default_rng(21)
    in_t = FixedType(6, 2)  # frac 4; weights frac 4 -> products frac 8
    w = rng.integers(-31, 32, size=(7, 3))
    w[rng.random((7, 3)) < 0.2] = 0
    acc_t = FixedType(10, 4, True, "RND_CONV", overflow)  # +-8: sums of up to 7 products of +-4 overflow
    d = dense_layer("fc_sat", w, rng.integers(-40, 41, size=3), in_t, FixedType(8, 4, True, "RND", "SAT"),
                    acc_t, weight_frac=4, bias_frac=4)
    design = simulate_against_golden(tmp_path, Graph(in_t, 7, (d,)), n=300)
    assert design["layers"][0]["architecture"] == "sequential saturating"
    lint(tmp_path / "rtl", design)
    # the test exercises what it claims: some partial sum saturates for these inputs
    x = np.random.default_rng(0).integers(in_t.min_code, in_t.max_code + 1, size=(300, 7))
    prods = cast(x[:, :, None] * w[None, :, :], 8, acc_t.with_modes(acc_t.rounding, "WRAP"))
    assert (np.abs(np.cumsum(prods, axis=1)) > acc_t.max_code).any()


def test_saturating_accum_that_can_overflow_is_refused_when_folded(tmp_path: Path) -> None:
    in_t = FixedType(6, 2)
    d = dense_layer("fc_sat", [[31, 31], [31, 31]], [0, 0], in_t, FixedType(8, 4),
                    FixedType(11, 3, True, "TRN", "SAT"), rf=2, weight_frac=4)  # sums reach +-1984 > 1023
    with pytest.raises(RtlGenError, match=r"layer fc_sat: saturating accum type .* can overflow"):
        rtlgen.generate(Graph(in_t, 2, (d,)), tmp_path)


@pytest.mark.icarus
def test_saturating_accum_that_cannot_overflow_is_accepted(tmp_path: Path) -> None:
    in_t = FixedType(6, 2)
    d = dense_layer("fc_sat", [[31, -7], [5, 31]], [9, -3], in_t, FixedType(7, 3, True, "RND_INF", "SAT_SYM"),
                    FixedType(20, 12, True, "TRN", "SAT"), weight_frac=4, bias_frac=4)
    simulate_against_golden(tmp_path, Graph(in_t, 2, (d,)), n=100)


def test_empty_graph_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RtlGenError, match="no layers"):
        rtlgen.generate(Graph(FixedType(4, 1), 2, ()), tmp_path)


# ----------------------------------------------------------------------------- result modes vs C-sim

MODES = [(q, o) for q in QUANT_MODES for o in OVERFLOW_MODES]


@pytest.fixture(scope="module")
def modes_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """A chain of 28 Dense(6 -> 6) layers; layer k's result is fixed<6,1,Q_k,O_k> (all 7 x 4 modes)."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits

    from codesign.config import from_dict
    from codesign.convert import convert_model
    from codesign.layers import from_hls4ml

    tf.keras.backend.clear_session()
    rng = np.random.default_rng(7)
    x_in = tf.keras.Input(shape=(6,), name="x_in")
    x = QActivation(quantized_bits(6, 0, keep_negative=True, alpha=1), name="inq")(x_in)
    layers = []
    for k in range(len(MODES)):
        layer = QDense(6, kernel_quantizer=quantized_bits(6, 2, alpha=1), bias_quantizer=quantized_bits(6, 2, alpha=1),
                       name=f"fc{k}")
        x = layer(x)
        layers.append(layer)
    model = tf.keras.Model(x_in, x)
    for layer in layers:
        layer.set_weights([rng.integers(-32, 32, size=(6, 6)) / 8.0, rng.integers(-32, 32, size=6) / 8.0])
    prec = {f"fc{k}": {"result": f"fixed<6,1,AP_{q},AP_{o}>"} for k, (q, o) in enumerate(MODES)}
    cfg = from_dict({"hls": {"layer_precision": prec}})
    hls_model, _, stripped = convert_model(cfg, model, tmp_path_factory.mktemp("modes") / "hls")
    return hls_model, from_hls4ml(hls_model, stripped)


@pytest.mark.slow
@pytest.mark.hls4ml
def test_golden_equals_csim_for_every_rounding_and_overflow_mode(modes_model: tuple[Any, Any]) -> None:
    hls_model, graph = modes_model
    dense = [layer for layer in graph.layers if layer.kind == "dense"]
    assert [(d.out_type.rounding, d.out_type.overflow) for d in dense] == MODES
    t = graph.input_type
    rng = np.random.default_rng(0)
    x = rng.integers(t.min_code, t.max_code + 1, size=(400, graph.n_in), dtype=np.int64)
    gold = golden.layer_outputs(graph, x)
    _, trace = hls_model.trace(np.ascontiguousarray(t.to_real(x)))
    for d in dense:
        csim_codes = d.out_type.to_codes(np.asarray(trace[d.name]).reshape(len(x), -1))
        assert np.array_equal(gold[d.name], csim_codes), f"layer {d.name} result {d.out_type}"
        # the mode is exercised: results must round (dropped bits, ties included) and overflow
        acc_t = d.accum_type
        k = graph.layers.index(d)
        acc = _accum(d, x if k == 0 else gold[graph.layers[k - 1].name])
        shift = acc_t.frac - d.out_type.frac
        dropped = acc & ((1 << shift) - 1)
        assert np.any(dropped == (1 << (shift - 1))), f"{d.name}: no rounding tie"
        assert np.any((dropped != 0) & (dropped != (1 << (shift - 1)))), f"{d.name}: no plain rounding"
        whole = cast(acc, acc_t.frac, d.out_type.with_modes("TRN", "SAT"))
        assert np.any((whole == d.out_type.max_code) | (whole == d.out_type.min_code)), f"{d.name}: no overflow"


def _accum(d: Layer, x: np.ndarray) -> np.ndarray:
    assert d.accum_type is not None
    ident = Layer(d.name, "dense", d.n_in, d.n_out, d.in_type, d.accum_type, d.source, d.accum_type, d.weights,
                  d.weight_frac, d.bias, d.bias_frac)
    return golden.run_layer(ident, x)


@pytest.mark.icarus
def test_multirate_chain_latency_matches_design_json(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    d0 = random_dense(rng, 3, 4, rf=2, name="fc0")
    d1 = random_dense(rng, 4, 2, rf=8, in_t=d0.out_type, name="fc1")
    simulate_against_golden(tmp_path, Graph(d0.in_type, 3, (d0, d1)), n=40)


@pytest.mark.verilator
@pytest.mark.icarus
@pytest.mark.parametrize("rf", [1, 3])
@pytest.mark.parametrize("rounding", ["TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV"])
def test_per_product_rounding_into_narrow_accum(tmp_path: Path, rounding: str, rf: int) -> None:
    """accum_t with fewer fractional bits than x*w: hls4ml rounds every product on its own; the
    parallel architecture (RF 1) rounds each product's shift-add sum, the folded one (RF 3) each
    lane's product, both into a wrapping accum_t, bit-exact with the golden model."""
    rng = np.random.default_rng(11)
    w = rng.integers(-31, 32, size=(5, 4))
    w[rng.random((5, 4)) < 0.3] = 0
    in_t = FixedType(6, 2)  # 4 fractional bits; weights 4: products have 8, accum keeps 3
    acc_t = FixedType(12, 9, True, rounding, "WRAP")
    layer = dense_layer("fc", w, rng.integers(-20, 21, size=4), in_t, FixedType(10, 6, True, "RND", "SAT"),
                        acc_t, rf=rf, weight_frac=4, bias_frac=4)
    design = simulate_against_golden(tmp_path, Graph(in_t, 5, (layer,)), n=150)
    assert design["layers"][0]["architecture"] == ("parallel" if rf == 1 else "folded")
    lint(tmp_path / "rtl", design)


@pytest.mark.verilator
@pytest.mark.icarus
def test_per_product_rounding_into_unsigned_wrapping_accum_when_folded(tmp_path: Path) -> None:
    """An unsigned accum_t wraps every rounded product modulo 2**W, negative ones included."""
    rng = np.random.default_rng(12)
    w = rng.integers(-31, 32, size=(4, 3))
    in_t = FixedType(6, 2)
    layer = dense_layer("fc_u", w, rng.integers(0, 21, size=3), in_t, FixedType(10, 8, False, "RND", "WRAP"),
                        FixedType(9, 7, False, "RND_CONV", "WRAP"), rf=2, weight_frac=4, bias_frac=4)
    design = simulate_against_golden(tmp_path, Graph(in_t, 4, (layer,)), n=150)
    assert design["layers"][0]["architecture"] == "folded"
    lint(tmp_path / "rtl", design)


def test_per_product_rounding_into_saturating_accum_refused_when_folded(tmp_path: Path) -> None:
    layer = dense_layer("fc", [[3, 5], [7, -9]], [0, 0], FixedType(6, 2), FixedType(10, 6),
                        FixedType(12, 9, True, "RND", "SAT"), rf=2, weight_frac=4)
    with pytest.raises(RtlGenError, match=r"layer fc: accum type .* per-product rounding .* wrapping accum_t only"):
        rtlgen.generate(Graph(FixedType(6, 2), 2, (layer,)), tmp_path)


# ----------------------------------------------------------------------------- activation fusion

def _output_registers(verilog: str) -> list[int]:
    """Widths of a layer module's output registers y<j>."""
    import re

    return [int(w) + 1 for w in re.findall(r"^\s*reg \[(\d+):0\] y\d+;", verilog, re.M)]


@pytest.mark.hls4ml
@pytest.mark.verilator
def test_relu_fused_into_dense_output_register_bit_exact_with_csim(tmp_path: Path) -> None:
    """rtl.fuse_activations: the RF-1 Dense d1 registers ReLU r1's narrow result instead of its wide
    result_t; r1 has no module, design.json says so, latency and II are those of the separate
    modules, and the network stays bit-exact with hls4ml's C-sim."""
    from conftest import assert_verifies, convert_checked, generate_linted, small_qkeras_mlp

    graph, arrays = convert_checked(small_qkeras_mlp(seed=2), tmp_path, n=300)
    assert [layer.kind for layer in graph.layers] == ["dense", "relu", "dense"]
    d1, r1, _ = graph.layers
    assert r1.out_type.width < d1.out_type.width  # else fusing saves nothing and is not done
    rtl, design = generate_linted(graph, tmp_path)
    separate = pipeline.generate(graph, tmp_path / "separate", fuse_activations=False)
    layers = {d["name"]: d for d in design["layers"]}

    assert "codesign_top_r1.v" not in design["files"] and not (rtl / "codesign_top_r1.v").exists()
    assert "codesign_top_r1.v" in separate["files"]
    assert layers["d1"]["fused_activation"] == "r1" and "probe" not in layers["d1"]
    assert layers["d1"]["out_type"] == d1.out_type.to_json()  # the layer's own type, now inside the module
    assert (layers["r1"]["fused_into"], layers["r1"]["module"], layers["r1"]["modules"]) == ("d1", "codesign_top_d1", [])
    assert (layers["r1"]["latency"], layers["r1"]["ii"]) == (0, 1)
    assert layers["r1"]["probe"]["data"] == "d1_out_data"  # d1's output wires carry r1's values
    assert (design["latency"], design["ii"]) == (separate["latency"], separate["ii"])
    assert [d["latency"] for d in design["layers"]] == [d["latency"] for d in separate["layers"]]

    fused_regs = _output_registers((rtl / "codesign_top_d1.v").read_text())
    plain_regs = _output_registers((tmp_path / "separate" / "codesign_top_d1.v").read_text())
    assert fused_regs == [r1.out_type.width] * d1.n_out
    assert plain_regs == [d1.out_type.width] * d1.n_out
    assert "fxp_relu" in (rtl / "codesign_top_d1.v").read_text()

    assert_verifies(rtl, design, arrays, tmp_path / "sim")  # probes: r1 at d1's output, d2
