"""convert stage + hardware IR + golden model: golden == hls4ml C-sim, integer for integer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codesign import convert, golden, graph, layers, pipeline, vectors
from codesign.config import from_dict
from codesign.csim import CSim
from codesign.errors import ConfigError, ConversionError


def small_model(seed: int = 0, softmax: bool = False, sparsity: float = 0.5):
    from conftest import small_qkeras_mlp

    return small_qkeras_mlp(seed, softmax, sparsity)


def _convert(tmp: Path, model, **hls):
    cfg = from_dict({"hls": hls})
    hm, _, stripped = convert.convert_model(cfg, model, tmp)
    g = layers.from_hls4ml(hm, softmax_stripped=stripped)
    return hm, g, CSim.for_graph(tmp, g)


@pytest.mark.hls4ml
@pytest.mark.parametrize("hls", [{}, {"reuse_factor": 3}, {"strategy": "Resource", "reuse_factor": 2, "layer_reuse_factor": {"d2": 7}},
                                 {"layer_precision": {"d2": {"result": "fixed<9,3,RND_CONV,SAT>"}}},
                                 {"layer_precision": {"d1": {"result": "fixed<10,4,RND_INF,SAT_SYM>"}}}])
def test_golden_equals_csim_on_random_codes(tmp_path: Path, hls: dict) -> None:
    _, g, cs = _convert(tmp_path, small_model(), **hls)
    codes = vectors.random_codes(g, 3000, seed=3)
    arrays = vectors.build(g, cs, codes)
    agree = vectors.golden_agreement(g, arrays)
    assert agree["vectors"] == 3000
    assert agree["mismatched_outputs"] == 0
    # the check is not vacuous: outputs vary
    assert len(np.unique(arrays["expected"][:, 0])) > 10


@pytest.mark.hls4ml
def test_graph_roundtrip_and_reuse_factor(tmp_path: Path) -> None:
    _, g, _ = _convert(tmp_path, small_model(), reuse_factor=3)
    g.save(tmp_path / "graph.json")
    g2 = graph.load(tmp_path / "graph.json")
    assert [layer.kind for layer in g2.layers] == ["dense", "relu", "dense"]
    assert all(layer.reuse_factor == 3 for layer in g2.layers if layer.kind == "dense")
    assert np.array_equal(g.layers[0].weights, g2.layers[0].weights)
    assert g2.layers[0].nonzero_weights == int(np.count_nonzero(g.layers[0].weights))
    codes = vectors.random_codes(g, 200, seed=1)
    assert np.array_equal(golden.predict(g, codes), golden.predict(g2, codes))


@pytest.mark.hls4ml
def test_softmax_is_stripped_and_said(tmp_path: Path) -> None:
    hm, g, cs = _convert(tmp_path, small_model(softmax=True))
    assert g.softmax_stripped
    assert g.layers[-1].kind == "dense"
    codes = vectors.random_codes(g, 500, seed=2)
    assert np.array_equal(golden.predict(g, codes), cs.predict_codes(codes))


@pytest.mark.hls4ml
def test_resource_strategy_invalid_reuse_factor_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"layer d1: .*reuse factor 5.*valid for 12x7: 1, 2, 3, 4, 6"):
        _convert(tmp_path, small_model(), strategy="Resource", reuse_factor=5)


@pytest.mark.hls4ml
def test_reuse_factor_beyond_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"layer d2: reuse factor 500 exceeds n_in\*n_out = 35"):
        _convert(tmp_path, small_model(), layer_reuse_factor={"d2": 500})


def test_unknown_layer_in_reuse_factors_names_layers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"hls.layer_reuse_factor.dense_9: no layer named 'dense_9'; layers: .*d1"):
        _convert(tmp_path, small_model(), layer_reuse_factor={"dense_9": 2})


def test_agreement_counts() -> None:
    ref = np.array([[1.0, 2.0], [3.0, 4.0], [0.5, 0.25]])
    cs = np.array([[1.0, 2.0], [3.0, 4.5], [0.5, 0.0]])
    a = convert.agreement(ref, cs)
    assert a == {"rows": 3, "exact_rows": 1, "exact_outputs": 4, "outputs": 6, "argmax_agree": 3,
                 "max_abs_err": 0.5}


@pytest.mark.hls4ml
@pytest.mark.icarus
@pytest.mark.parametrize("kind", ["binary", "ternary"])
def test_binary_and_ternary_weights_bit_exact_through_rtl(tmp_path: Path, kind: str) -> None:
    """hls4ml's binary product is ``w == 0 ? -a : a`` (bit 0 is -1); ternary weights are int<2>."""
    from qkeras import QActivation, QDense, binary, quantized_bits, ternary
    from tensorflow.keras.layers import Input
    from tensorflow.keras.models import Model

    from codesign.verify import verify_design

    q = binary(alpha=1) if kind == "binary" else ternary(alpha=1)
    x = Input((6,), name="x_in")
    h = QActivation(quantized_bits(6, 2, alpha=1), name="inq")(x)
    h = QDense(4, kernel_quantizer=q, bias_quantizer=quantized_bits(6, 2, alpha=1), name="d1")(h)
    model = Model(x, h)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 1, w.shape) for w in model.get_weights()])
    _, g, cs = _convert(tmp_path / "hls", model)
    weights = g.layers[0].weights
    assert set(np.unique(weights)) <= ({-1, 1} if kind == "binary" else {-1, 0, 1})
    arrays = vectors.build(g, cs, vectors.random_codes(g, 200, seed=5))
    assert vectors.golden_agreement(g, arrays)["mismatched_outputs"] == 0
    pipeline.generate(g, tmp_path / "rtl")
    np.savez(tmp_path / "vectors.npz", **arrays)
    res = verify_design(tmp_path / "rtl", tmp_path / "vectors.npz", tmp_path / "sim", simulator="icarus",
                        waves_on_failure=False)
    assert res["passed"] and res["mismatches"] == 0, res["failures"]


@pytest.mark.parametrize("sequential", [True, False])
def test_strip_softmax_of_a_dense_keeps_the_model_class_and_argmax(sequential: bool) -> None:
    """A final Dense(softmax) becomes Dense(linear) in a model of the same class (a Sequential's
    config cannot be read back as a functional model's), with the same argmax."""
    import tensorflow as tf

    from codesign.convert import strip_softmax

    tf.keras.utils.set_random_seed(0)
    if sequential:
        model = tf.keras.Sequential([tf.keras.layers.Input((4,)), tf.keras.layers.Dense(3, activation="relu"),
                                     tf.keras.layers.Dense(2, activation="softmax")])
    else:
        inp = tf.keras.Input((4,))
        hidden = tf.keras.layers.Dense(3, activation="relu")(inp)
        model = tf.keras.Model(inp, tf.keras.layers.Dense(2, activation="softmax")(hidden))
    clone, stripped = strip_softmax(model)
    assert stripped and type(clone) is type(model)
    assert clone.layers[-1].activation.__name__ == "linear"
    x = np.random.default_rng(0).standard_normal((16, 4))
    assert np.array_equal(clone.predict(x, verbose=0).argmax(1), model.predict(x, verbose=0).argmax(1))
