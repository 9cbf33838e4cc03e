"""codesign.arch.adder_*: shared adder graphs for constant-coefficient Dense layers (RF=1).

Python level: the graph computes W^T x exactly, every node's range is exact (attained, never
exceeded), sharing really removes adders, the pipeline schedule is consistent. Verilog level: the
generated layer modules are lint-clean, and whole networks built with parallel_shared are
bit-exact in the cocotb testbench (against the golden model for odd types, against hls4ml's C-sim
for a small QKeras MLP converted here) with the latency design.json promises.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codesign import golden, layers, pipeline, simtools
from codesign.fixedpoint import FixedType
from codesign.graph import Graph, Layer
from codesign.arch import adder_build, adder_graph, adder_lower, adder_schedule, adder_timing, dense
from conftest import random_weight_matrix


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return random_weight_matrix(seed, dim_below=14, bits_below=9)


@pytest.mark.parametrize("seed", range(12))
def test_graph_computes_matrix_vector_product_exactly(seed: int) -> None:
    w, lo, hi = _random_case(seed)
    g = adder_build.build(w, lo, hi)
    rng = np.random.default_rng(100 + seed)
    x = rng.integers(lo, hi + 1, size=(400, len(lo)))
    x[0], x[1] = lo, hi  # box corners
    assert np.array_equal(g.evaluate(x), x @ w)
    for j in range(w.shape[1]):
        assert (g.outputs[j] is None) == (not np.any(w[:, j]))


@pytest.mark.parametrize("seed", range(6))
def test_node_ranges_are_exact(seed: int) -> None:
    """Widths come from [lo, hi]: no value leaves it, and both ends are reached at a box corner."""
    w, lo, hi = _random_case(seed)
    g = adder_build.build(w, lo, hi)
    n = len(lo)
    base = g.signal_values(np.zeros((1, n), dtype=np.int64))
    unit = g.signal_values(np.eye(n, dtype=np.int64))
    rng = np.random.default_rng(seed)
    rand = g.signal_values(rng.integers(lo, hi + 1, size=(300, n)))
    for k, node in enumerate(g.nodes):
        sig = n + k
        assert base[sig][0] == 0
        coef = unit[sig]  # the node's linear form
        at_hi = np.where(coef > 0, hi, lo)[None, :]
        at_lo = np.where(coef > 0, lo, hi)[None, :]
        assert g.signal_values(at_hi)[sig][0] == node.hi
        assert g.signal_values(at_lo)[sig][0] == node.lo
        assert rand[sig].min() >= node.lo and rand[sig].max() <= node.hi


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("select", ["count", "cost", "cost-shift"])
def test_unsigned_hardware_codes_are_exact(seed: int, select: str) -> None:
    """lower(): every signal's code H = pol * v + off is what the unsigned Verilog adders compute
    (modulo 2^width, complemented operands, carry-ins), it is never negative and stays in [lo, hi];
    the output constant turns the root's code back into the column's value."""
    w, lo, hi = _random_case(seed)
    g = adder_build.build(w, lo, hi, select=select)
    rng = np.random.default_rng(200 + seed)
    biases = [(int(b), int(k)) for b, k in zip(rng.integers(-999, 999, size=w.shape[1]), rng.integers(0, 4, size=w.shape[1]))]
    greedy = adder_lower.lower(g, biases)
    refined = adder_lower.refine(g, greedy, biases)
    assert refined.cost <= greedy.cost
    x = rng.integers(lo, hi + 1, size=(400, len(lo)))
    x[0], x[1] = lo, hi
    vals, y = g.signal_values(x), x @ w
    for hw in (greedy, refined):
        codes = adder_lower.hw_evaluate(g, hw, x)
        for sig, (v, h) in enumerate(zip(vals, codes)):
            s = hw.signals[sig]
            assert np.array_equal(h, s.pol * v + s.off)
            assert h.min() >= s.lo >= 0 and h.max() <= s.hi < (1 << s.width)
        for j, t in enumerate(g.outputs):
            if t is None:
                continue
            h = hw.signals[t.sig]
            bias, k = biases[j]
            kc, inv = adder_lower.out_const(h, t.neg, bias, k)
            code = codes[t.sig]
            hp = ((1 << h.width) - 1 - code) if inv else code
            assert np.array_equal(kc + (hp << k), bias + ((y[:, j] >> t.shift) << k))  # k: the root's shift


def test_cost_selection_saves_bits() -> None:
    """select="cost" weighs patterns by the bits they overlap; on a layer like the benchmark's it
    needs fewer estimated LUTs than the most-frequent-pattern rule."""
    rng = np.random.default_rng(9)
    w = rng.integers(-24, 25, size=(32, 24)) * (rng.random((32, 24)) < 0.6)
    lo, hi = [0] * 32, [63] * 32
    by_count = adder_lower.lower(adder_build.build(w, lo, hi, select="count"))
    by_cost = adder_lower.lower(adder_build.build(w, lo, hi, select="cost"))
    assert by_cost.cost < by_count.cost


def test_sharing_removes_adders() -> None:
    rng = np.random.default_rng(7)
    w = rng.integers(-31, 32, size=(16, 24))
    lo, hi = [-128] * 16, [127] * 16
    shared = adder_build.build(w, lo, hi)
    plain = adder_build.build(w, lo, hi, cse=False)
    nonzero_digits = sum(len(dense.csd(int(v))) for v in w.ravel())
    assert plain.adders == nonzero_digits - 24  # one tree per column: digits - 1 adders each
    assert shared.shared > 0 and shared.adders < 0.8 * plain.adders
    assert shared.adder_bits < plain.adder_bits
    # identical columns end up as the same signal: the second costs nothing
    w2 = np.concatenate([w[:, :1], w[:, :1]], axis=1)
    g2 = adder_build.build(w2, lo, hi)
    assert g2.outputs[0] == g2.outputs[1]
    assert g2.adders == adder_build.build(w[:, :1], lo, hi).adders


def test_schedule_respects_budget_and_aligns_outputs() -> None:
    rng = np.random.default_rng(3)
    w = rng.integers(-31, 32, size=(48, 16))
    g = adder_build.build(w, [-(1 << 15)] * 48, [(1 << 15) - 1] * 48)
    budget = adder_timing.CLOCK_NS - adder_timing.FF_OVERHEAD_NS
    for clock in (2.0, 5.0, 50.0):
        b = clock - adder_timing.FF_OVERHEAD_NS
        sch = adder_schedule.schedule(g, [1.0] * 16, clock)
        for k, node in enumerate(g.nodes):
            sig = g.n_in + k
            d = adder_timing.adder_delay(node.carry_bits)
            assert sch.arrival[sig] <= max(b, d) + 1e-9
            for x in (node.a, node.b):  # operands come from earlier stages or are ready in time
                assert sch.stage[x] < sch.stage[sig] or sch.arrival[x] <= sch.arrival[sig] - d + 1e-9
            assert sch.stage[sig] <= sch.out_stage
        if clock == 50.0:
            assert sch.out_stage == 0
    assert adder_schedule.schedule(g, [1.0] * 16, 2.0).out_stage > adder_schedule.schedule(g, [1.0] * 16).out_stage
    assert budget > 0


# ----------------------------------------------------------------------------- Verilog

def _odd_graph() -> Graph:
    """Two dense layers with a ReLU between: signed and unsigned inputs, a rounding/saturating result
    cast, a zero column, an unused input, biases with and without low zero bits."""
    rng = np.random.default_rng(11)
    t_in = FixedType(10, 4, True)
    w1 = rng.integers(-32, 32, size=(9, 7)) * (rng.random((9, 7)) < 0.7)
    w1[:, 3] = 0
    w1[4, :] = 0
    t1 = FixedType(12, 6, True, "RND_CONV", "SAT")
    l1 = Layer("d1", "dense", 9, 7, t_in, t1, "Dense", FixedType(24, 12, True),
               w1, 4, rng.integers(-8, 8, size=7), 3)
    t_r = FixedType(8, 3, False, "RND", "SAT")
    r = Layer("r1", "relu", 7, 7, t1, t_r, "Activation(relu)")
    w2 = rng.integers(-32, 32, size=(7, 5))
    acc2 = FixedType(20, 8, True)
    l2 = Layer("d2", "dense", 7, 5, t_r, acc2, "Dense", acc2, w2, 5,
               rng.integers(-2000, 2000, size=5) | 1, 12)
    return Graph(t_in, 9, (l1, r, l2))


def _generate(graph: Graph, out: Path, monkeypatch: pytest.MonkeyPatch, fuse_activations: bool = True) -> dict:
    monkeypatch.setattr(dense, "parallel", adder_graph.parallel_shared)
    design = pipeline.generate(graph, out, fuse_activations=fuse_activations)
    return design


@pytest.mark.verilator
def test_layer_modules_lint_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    separate = _generate(_odd_graph(), tmp_path / "separate", monkeypatch, fuse_activations=False)
    assert [layer.get("architecture") for layer in separate["layers"]] == ["parallel", "combinational", "parallel"]
    simtools.verilator_lint([tmp_path / "separate" / f for f in separate["files"]], separate["top"],
                            tmp_path / "separate.log")
    design = _generate(_odd_graph(), tmp_path, monkeypatch)  # the ReLU in d1's output stage
    assert [layer.get("architecture") for layer in design["layers"]] == [
        "parallel", "fused into d1's output register", "parallel"]
    simtools.verilator_lint([tmp_path / f for f in design["files"]], design["top"], tmp_path / "lint.log")
    text = (tmp_path / "codesign_top_d1.v").read_text()
    assert "unused_x4" in text and " * " not in text  # pruned input named, no multipliers
    # deterministic: same graph, same bytes
    again = tmp_path / "again"
    _generate(_odd_graph(), again, monkeypatch)
    for f in design["files"]:
        assert (again / f).read_text() == (tmp_path / f).read_text()


def _verify(rtl: Path, arrays: dict[str, np.ndarray], out: Path) -> dict:
    from codesign.verify import verify_design

    np.savez(out / "vectors.npz", **arrays)
    return verify_design(rtl, out / "vectors.npz", out / "sim", seed=2, waves_on_failure=False)


def _check(res: dict, design: dict, n: int) -> None:
    assert res["passed"], res.get("failures")
    assert res["mismatches"] == 0 and res["vectors_checked"] == n
    assert res["latency_min"] == res["latency_max"] == design["latency"] == res["latency_expected"]
    assert res["ii"] == 1


@pytest.mark.verilator
def test_odd_types_bit_exact_in_simulation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph = _odd_graph()
    design = _generate(graph, tmp_path / "rtl", monkeypatch)
    rng = np.random.default_rng(5)
    t = graph.input_type
    inputs = rng.integers(t.min_code, t.max_code + 1, size=(200, graph.n_in))
    inputs[:2] = [[t.min_code] * graph.n_in, [t.max_code] * graph.n_in]
    arrays = {"inputs": inputs, "expected": golden.predict(graph, inputs)}
    arrays.update({f"golden_{k}": v for k, v in golden.layer_outputs(graph, inputs).items()})
    _check(_verify(tmp_path / "rtl", arrays, tmp_path), design, 200)


def _small_converted_model(out: Path) -> tuple[Graph, Path]:
    """A QKeras MLP 12 -> 24 -> 5 (the training stage's layers, random weights and biases), converted
    with hls4ml and its C-sim compiled in ``out``."""
    import tensorflow as tf

    from codesign import config, train
    from codesign.convert import convert_model

    tf.keras.utils.set_random_seed(3)
    cfg = config.from_dict({"output_dir": str(out), "model": {"hidden": [24], "bits": 6}})
    model = train._connect((12,), train._layers(cfg, 5))
    rng = np.random.default_rng(3)
    model.set_weights([w + rng.uniform(-0.5, 0.5, size=w.shape) if w.ndim == 1 else w for w in model.get_weights()])
    hls_model, _, stripped = convert_model(cfg, model, out / "hls")
    return layers.from_hls4ml(hls_model, softmax_stripped=stripped), out / "hls"


@pytest.mark.hls4ml
@pytest.mark.verilator
def test_converted_network_bit_exact_with_csim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """hls4ml C-sim is the reference; the testbench measures the latency design.json states."""
    from codesign import vectors
    from codesign.csim import CSim

    graph, hls_dir = _small_converted_model(tmp_path)
    assert [layer.kind for layer in graph.layers] == ["dense", "relu", "dense"]
    design = _generate(graph, tmp_path / "rtl", monkeypatch)
    csim = CSim.for_graph(hls_dir, graph)
    arrays = vectors.build(graph, csim, vectors.random_codes(graph, 300, seed=4))
    assert vectors.golden_agreement(graph, arrays)["mismatched_outputs"] == 0
    _check(_verify(tmp_path / "rtl", arrays, tmp_path), design, 300)
    for layer, info in zip(graph.layers, design["layers"]):
        if layer.kind == "dense":  # shared: fewer adders than one CSD tree per neuron
            t = layer.in_type
            plain = adder_build.build(layer.weights, [t.min_code] * layer.n_in, [t.max_code] * layer.n_in, cse=False)
            assert info["adders"] < plain.adders
