"""Post-training quantization of float Keras models (codesign.ptq, hls.ptq) and mixed precision.

The float models here are fitted without Keras training (a random ReLU layer and a least-squares
output layer on digits), so the tests need no ``train`` marker and stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REFERENCE_MODELS as REF  # noqa: E402

from codesign import config, ptq
from codesign.convert import post_training_quantization
from codesign.config import from_dict
from codesign.errors import ConfigError
from codesign.fixedpoint import parse_precision


def ridge_mlp(x: np.ndarray, y: np.ndarray, components: int = 8) -> Any:
    """A float 64 -> 2*components (ReLU) -> 10 (softmax) Keras model fitted without Keras training:
    the hidden layer is the top principal components and their negatives (ReLU keeps both signs),
    the output layer a least-squares fit to the one-hot labels."""
    import tensorflow as tf

    n_in, n_out, hidden = x.shape[1], int(y.max()) + 1, 2 * components
    mu = x.mean(0)
    v = np.linalg.svd(x - mu, full_matrices=False)[2][:components].T
    w1, b1 = np.hstack([v, -v]), np.concatenate([-mu @ v, mu @ v])
    h1 = np.hstack([np.maximum(x @ w1 + b1, 0.0), np.ones((len(x), 1))])
    w2 = np.linalg.solve(h1.T @ h1 + 1e-1 * np.eye(hidden + 1), h1.T @ np.eye(n_out)[y])
    inp = tf.keras.Input((n_in,), name="x")
    z = tf.keras.layers.Dense(hidden, activation="relu", name="fc1")(inp)
    out = tf.keras.layers.Dense(n_out, activation="softmax", name="fc2")(z)
    model = tf.keras.Model(inp, out)
    model.set_weights([w1, b1, w2[:-1], w2[-1]])
    return model


@pytest.fixture(scope="module")
def digits() -> Any:
    from codesign.data import load_dataset

    return load_dataset(from_dict({}).data, 0)


# ----------------------------------------------------------------------------- configuration

def test_ptq_is_off_by_default_and_documented() -> None:
    cfg = from_dict({})
    assert cfg.hls.ptq.enabled is False
    text = config.example_yaml()
    block = text[text.index("  ptq:"):]
    for name in ("enabled", "target_drop", "calibration_samples", "mixed_precision", "min_frac_bits",
                 "max_frac_bits", "seed"):
        assert f"    {name}:" in block, name


@pytest.mark.parametrize("ptq_cfg, match", [
    ({"target_drop": 1.5}, r"hls\.ptq\.target_drop: 1\.5 is invalid; valid: 0 <= drop < 1"),
    ({"target_drop": -0.1}, r"hls\.ptq\.target_drop"),
    ({"calibration_samples": 5}, r"hls\.ptq\.calibration_samples: 5 is invalid; valid: 10 \.\. 100000"),
    ({"min_frac_bits": 30}, r"hls\.ptq\.min_frac_bits: 30 is invalid"),
    ({"min_frac_bits": 6, "max_frac_bits": 4}, r"hls\.ptq\.max_frac_bits: 4 is invalid; valid: 6 "),
    ({"enabled": "yes"}, r"hls\.ptq\.enabled: expected true or false"),
    ({"bits": 4}, r"hls\.ptq\.bits: unknown field; valid fields here: enabled, target_drop"),
    ({"enabled": True}, r"hls\.ptq\.enabled: PTQ quantizes an imported float Keras model \(model\.import_path\)"),
])
def test_bad_ptq_values_name_the_field(ptq_cfg: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        from_dict({"hls": {"ptq": ptq_cfg}})


def test_integer_bits_hold_the_range() -> None:
    assert ptq.integer_bits(1.0, signed=False) == 1  # ufixed<W,1> holds 1.0
    assert ptq.integer_bits(0.99, signed=False) == 0
    assert ptq.integer_bits(0.99, signed=True) == 1
    assert ptq.integer_bits(3.5, signed=True) == 3  # fixed<W,3>: -4 .. 4 - ulp
    assert ptq.integer_bits(4.0, signed=True) == 4
    assert ptq.integer_bits(0.0, signed=True) == 1


# ----------------------------------------------------------------------------- refusals

def test_qkeras_model_is_refused_by_name() -> None:
    from codesign.model_io import load_model

    model = load_model(REF / "qkeras_3layer.json", REF / "qkeras_3layer_weights.h5")
    with pytest.raises(ConfigError, match=r"hls\.ptq\.enabled: the model has QKeras layers \(fc1 \(QDense\)"):
        post_training_quantization(from_dict({}), model)


def test_unsupported_layer_is_refused_by_name() -> None:
    import tensorflow as tf

    inp = tf.keras.Input((8,))
    z = tf.keras.layers.BatchNormalization(name="bn")(tf.keras.layers.Dense(4, name="fc")(inp))
    model = tf.keras.Model(inp, tf.keras.layers.Dense(2, name="out")(z))
    with pytest.raises(ConfigError, match=r"layer 'bn' \(BatchNormalization\) is not supported by PTQ"):
        post_training_quantization(from_dict({}), model)


def test_types_cover_the_worst_case_accumulation() -> None:
    """The accumulator holds max_j sum_i |w_ij| * max|x| + |b_j| over the input type's range, with
    the product's fractional bits; results take their calibrated integer bits."""
    w = np.array([[0.5, -0.25], [0.75, 0.5], [-1.5, 0.25]])
    plan = ptq.Plan(input_max=1.0, input_signed=False, layers=[
        ptq.DenseRange("fc", "fc_relu", w, np.array([0.1, -0.2]), pre_max=2.2, act_max=2.2)])
    plan.knobs = ["input", "fc.weight", "fc.result"]
    inp, precs = ptq.types_for(plan, {"input": 3, "fc.weight": 4, "fc.result": 2})
    assert inp == "ufixed<4,1>"  # 1.0 needs one integer bit
    assert precs["fc"]["weight"] == "fixed<6,2,RND_CONV,SAT>"  # |w| <= 1.5: 2 integer bits with sign
    acc = parse_precision(precs["fc"]["accum"])
    assert acc.frac == 3 + 4
    # worst case: input up to 2 (ufixed<4,1> max < 2), column 0 sum |w| + ulps = 2.9375, + |b| + ulp
    bound = (0.5 + 0.75 + 1.5 + 3 * 2 ** -4) * 2.0 + 0.1 + 2 ** -4
    assert 2 ** (acc.integer - 1) > bound >= 2 ** (acc.integer - 2)
    assert precs["fc"]["result"] == "fixed<5,3,RND,SAT>"  # |pre| <= 2.2: sign + 2 integer bits
    assert precs["fc_relu"]["result"] == "ufixed<4,2,RND,SAT>"


# ----------------------------------------------------------------------------- with hls4ml

@pytest.mark.hls4ml
def test_keras_3layer_random_calibration_narrows_the_default(tmp_path: Path) -> None:
    """The float reference model without data: random in-range calibration inputs, agreement with
    the float argmax as the accuracy; every chosen type lands in the hardware IR, far narrower than
    hls4ml's default (fixed<16,6> inputs, 37..39-bit accumulators)."""
    from codesign import pipeline
    from codesign.model_io import load_model

    model = load_model(REF / "KERAS_3layer.json", REF / "KERAS_3layer_weights.h5")
    cfg = from_dict({"hls": {"ptq": {"calibration_samples": 300, "target_drop": 0.02,
                                     "mixed_precision": False}}})
    qcfg, rec = post_training_quantization(cfg, model)
    assert "random" in rec["calibration"] and rec["drop_calibration"] <= 0.02
    assert rec["float_accuracy_calibration"] == 1.0  # labels are the float model's own argmax
    default = pipeline.convert(from_dict({}), model, tmp_path / "default", compile=False).graph
    graph = pipeline.convert(qcfg, model, tmp_path / "ptq", compile=False).graph
    assert str(graph.input_type).startswith(qcfg.hls.input_precision[:-1])
    for layer, ref in zip(graph.layers, default.layers):
        chosen = qcfg.hls.layer_precision[layer.name]["result"]
        assert layer.out_type.width == parse_precision(chosen).width, layer.name
        assert layer.out_type.width < ref.out_type.width, layer.name
        if layer.accum_type is not None:
            assert str(layer.accum_type) == str(parse_precision(qcfg.hls.layer_precision[layer.name]["accum"]))
            assert layer.accum_type.width < ref.accum_type.width


@pytest.mark.hls4ml
@pytest.mark.verilator
def test_ptq_types_verify_bit_exact(tmp_path: Path, digits: Any) -> None:
    """Mixed-precision PTQ of a float digits MLP: accuracy near the float model's on the test set
    (C-sim), golden == C-sim, and the RTL for those types verifies with 0 mismatches."""
    from codesign import convert, pipeline
    from codesign import vectors as vec

    model = ridge_mlp(digits.X_train, digits.y_train)
    # min_frac_bits 3 bounds the search (and the test's time); the uniform choice is above it
    cfg = from_dict({"hls": {"ptq": {"target_drop": 0.01, "calibration_samples": 300, "min_frac_bits": 3}}})
    qcfg, rec = post_training_quantization(cfg, model, digits.X_train, digits.y_train)
    assert rec["drop_calibration"] <= 0.01
    assert set(rec["frac_bits"]) == {"input", "fc1.weight", "fc1.result", "fc2.weight", "fc2.result"}
    # mixed precision only ever lowers bits from the uniform choice, and did lower some
    assert rec["descent"] and all(f <= rec["uniform_frac_bits"] for f in rec["frac_bits"].values())
    assert rec["sensitivity"]["fc1.weight"][0]["frac_bits"] == rec["uniform_frac_bits"]
    converted = pipeline.convert(qcfg, model, tmp_path / "hls")
    graph = converted.graph
    assert graph.layers[0].accum_type is not None and graph.layers[0].accum_type.width < 30
    csim = converted.csim()
    test_codes = convert.on_grid_inputs(graph, digits.X_test)
    acc = float(np.mean(csim.predict_codes(test_codes).argmax(1) == digits.y_test))
    float_acc = float(np.mean(model.predict(digits.X_test, verbose=0).argmax(1) == digits.y_test))
    assert abs(acc - float_acc) <= 0.03, (acc, float_acc)
    inputs = np.vstack([test_codes[:40], vec.random_codes(graph, 40, seed=5)])
    arrays = pipeline.reference(graph, csim, inputs)
    agree = pipeline.golden_agreement(graph, arrays)
    assert agree["mismatched_outputs"] == 0, agree
    design = pipeline.generate(graph, tmp_path / "rtl")
    from conftest import assert_verifies

    assert_verifies(tmp_path / "rtl", design, arrays, tmp_path / "sim")


@pytest.mark.slow
@pytest.mark.hls4ml
def test_ptq_in_the_hls_stage(tmp_path: Path, digits: Any) -> None:
    """model stage (import) -> hls stage with hls.ptq: the types are what hls4ml was given
    (hls_config.yml) and are recorded in result.json and ptq.json."""
    import yaml

    from codesign import convert, rundir
    from codesign.model_io import import_model

    model = ridge_mlp(digits.X_train, digits.y_train)
    h5 = tmp_path / "float.h5"
    model.save(h5)
    run = tmp_path / "run"
    cfg = from_dict({"output_dir": str(run), "model": {"import_path": str(h5)},
                     "hls": {"ptq": {"enabled": True, "target_drop": 0.01, "calibration_samples": 300}}})
    model_res = import_model(cfg, run)
    res = convert.run(cfg, run)
    p = res["ptq"]
    assert p["drop_calibration"] <= 0.01 and "training samples" in p["calibration"]
    full = rundir.read_json(run / "hls" / "ptq.json")
    assert full["frac_bits"] == p["frac_bits"] and full["uniform_search"]
    used = yaml.safe_load((run / "hls" / "hls_config.yml").read_text())
    assert used["LayerName"]["x"]["Precision"]["result"] == p["input_precision"]
    for name, precs in p["layer_precision"].items():
        for kind, text in precs.items():
            assert used["LayerName"][name]["Precision"][kind] == text, (name, kind)
    assert res["csim_vs_qkeras"]["rows"] == len(digits.X_test)
    assert abs(res["csim_accuracy"] - model_res["test_accuracy"]) <= 0.03
    # the report shows the chosen types and the accuracy-vs-bits plot
    from codesign import report

    report.build(run, tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Post-training quantization (float model)" in md and p["input_precision"] in md
    assert (tmp_path / "report" / "plots" / "ptq_bits.png").stat().st_size > 1000
