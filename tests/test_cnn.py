"""Convolutional models: Conv1D/Conv2D, pooling, Flatten and batch normalization, bit-exact.

Each model goes convert (hls4ml C-sim) -> golden == C-sim on every output integer (and hls4ml's
per-layer trace) -> RTL -> lint -> cocotb simulation with 0 mismatches and measured latency/II
equal to design.json. Weights are random on-grid values (no training), so the cases are fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import (  # noqa: E402
    assert_verifies, convert_checked, generate_linted, qbits, randomize_weights, with_rf)

from codesign import golden, rtlgen
from codesign import graph as hwgraph
from codesign.errors import RtlGenError
from codesign.layers.conv import dense_equivalent


def digits_like_cnn(seed: int = 0) -> Any:
    """Conv2D(4, 3x3, valid) -> quantized ReLU -> MaxPool 2x2 -> Flatten -> Dense 10 on 8x8x1."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((8, 8, 1), name="x_in")
    x = QActivation(quantized_bits_unsigned(8), name="inq")(inp)
    x = QConv2D(4, (3, 3), kernel_quantizer=qbits(6), bias_quantizer=qbits(6), name="conv_0")(x)
    x = QActivation(quantized_relu(6), name="crelu_0")(x)
    x = tf.keras.layers.MaxPooling2D(2, name="pool_0")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = QDense(10, kernel_quantizer=qbits(6), bias_quantizer=qbits(6), name="dense_0")(x)
    return randomize_weights(tf.keras.Model(inp, x), seed)


def quantized_bits_unsigned(bits: int):
    from qkeras import quantized_bits

    return quantized_bits(bits, 0, keep_negative=False, alpha=1)


def strided_same_avgpool_cnn(seed: int = 1) -> Any:
    """Two input channels, 'same' padding with stride 2, average pooling 2x2 (padding at the edge)."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((9, 9, 2), name="x_in")  # conv -> 5x5: the pooling pads
    x = QActivation(qbits(6, 1), name="inq")(inp)
    x = QConv2D(3, (3, 3), strides=(2, 2), padding="same", kernel_quantizer=qbits(5), bias_quantizer=qbits(5),
                name="conv_0")(x)
    x = QActivation(quantized_relu(5, 1), name="crelu_0")(x)
    x = tf.keras.layers.AveragePooling2D(2, padding="same", name="pool_0")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = QDense(5, kernel_quantizer=qbits(6), bias_quantizer=qbits(6), name="dense_0")(x)
    return randomize_weights(tf.keras.Model(inp, x), seed)


def conv1d_cnn(seed: int = 2) -> Any:
    """Conv1D on a 12 x 2 sequence, 'same' padding, MaxPooling1D, a second Conv1D, Dense."""
    import tensorflow as tf
    from qkeras import QActivation, QConv1D, QDense, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((12, 2), name="x_in")
    x = QActivation(qbits(6, 1), name="inq")(inp)
    x = QConv1D(4, 3, padding="same", kernel_quantizer=qbits(6), bias_quantizer=qbits(6), name="conv_0")(x)
    x = QActivation(quantized_relu(6), name="crelu_0")(x)
    x = tf.keras.layers.MaxPooling1D(2, name="pool_0")(x)
    x = QConv1D(3, 2, strides=2, kernel_quantizer=qbits(6), bias_quantizer=qbits(6), name="conv_1")(x)
    x = QActivation(quantized_relu(6), name="crelu_1")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = QDense(4, kernel_quantizer=qbits(6), bias_quantizer=qbits(6), name="dense_0")(x)
    return randomize_weights(tf.keras.Model(inp, x), seed)


def depthwise_separable_cnn(seed: int = 4) -> Any:
    """8x8x3: QDepthwiseConv2D 3x3 'same' -> quantized ReLU -> SeparableConv2D 4 3x3 (Keras floats;
    hls4ml splits it into a depthwise and a pointwise conv) -> Flatten -> QDense 3."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, QDepthwiseConv2D, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((8, 8, 3), name="x_in")
    x = QActivation(qbits(6, 1), name="inq")(inp)
    x = QDepthwiseConv2D(3, padding="same", depthwise_quantizer=qbits(5), bias_quantizer=qbits(5), name="dw_0")(x)
    x = QActivation(quantized_relu(5, 1), name="dwrelu_0")(x)
    x = tf.keras.layers.SeparableConv2D(4, 3, name="sep_0")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = QDense(3, kernel_quantizer=qbits(6), bias_quantizer=qbits(6), name="dense_0")(x)
    return randomize_weights(tf.keras.Model(inp, x), seed)


def upsampling_cnn(seed: int = 5) -> Any:
    """4x5x2: UpSampling2D (2, 3) -> QConv2D 3 3x3 -> quantized ReLU -> Flatten -> QDense 3."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((4, 5, 2), name="x_in")
    x = QActivation(qbits(6, 1), name="inq")(inp)
    x = tf.keras.layers.UpSampling2D((2, 3), name="up_0")(x)
    x = QConv2D(3, (3, 3), kernel_quantizer=qbits(5), bias_quantizer=qbits(5), name="conv_0")(x)
    x = QActivation(quantized_relu(5, 1), name="crelu_0")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = QDense(3, kernel_quantizer=qbits(6), bias_quantizer=qbits(6), name="dense_0")(x)
    return randomize_weights(tf.keras.Model(inp, x), seed)


def keras_bn_cnn(seed: int = 3) -> Any:
    """Plain Keras floats: Conv2D -> BatchNorm -> ReLU -> MaxPool -> BatchNorm -> Flatten -> Dense.

    The first BatchNormalization follows the conv (hls4ml may fold it into the kernel); the second
    follows a pooling layer, so it stays a layer of its own (hls4ml's ``normalize``)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((6, 6, 1), name="x_in")
    x = tf.keras.layers.Conv2D(3, (3, 3), name="conv_0")(inp)
    x = tf.keras.layers.BatchNormalization(name="bn_0")(x)
    x = tf.keras.layers.Activation("relu", name="relu_0")(x)
    x = tf.keras.layers.MaxPooling2D(2, name="pool_0")(x)
    x = tf.keras.layers.BatchNormalization(name="bn_1")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = tf.keras.layers.Dense(4, name="dense_0")(x)
    model = tf.keras.Model(inp, x)
    rng = np.random.default_rng(seed)
    ws = []
    for w, var in zip(model.get_weights(), model.weights):
        if "moving_variance" in var.name:
            ws.append(rng.uniform(0.5, 2.0, w.shape).astype(np.float32))
        elif "gamma" in var.name:
            ws.append(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))
        else:
            ws.append(rng.uniform(-0.8, 0.8, w.shape).astype(np.float32))
    model.set_weights(ws)
    return model


# ----------------------------------------------------------------------------- IR unit tests

def test_windows_follow_hls4ml_im2col_order_with_padding() -> None:
    g = hwgraph.Geometry(in_h=3, in_w=3, n_chan=1, k_h=2, k_w=2, stride_h=2, stride_w=2, pad_top=0,
                         pad_left=0, out_h=2, out_w=2)
    # bottom/right windows run off the 3x3 image: those taps are padding (-1)
    assert g.windows().tolist() == [[0, 1, 3, 4], [2, -1, 5, -1], [6, 7, -1, -1], [8, -1, -1, -1]]


def test_dense_equivalent_places_the_kernel_per_pixel() -> None:
    from codesign.fixedpoint import FixedType

    t = FixedType(8, 1)
    k = np.array([[1, -2], [3, 0]])  # 2 taps (1x2 kernel, 1 channel) x 2 filters
    geom = hwgraph.Geometry(1, 3, 1, 1, 2, 1, 1, 0, 0, 1, 2)
    conv = hwgraph.Layer(name="c", kind="conv", n_in=3, n_out=4, in_type=t, out_type=t, accum_type=t,
                         weights=k, bias=np.array([5, 6]), geometry=geom)
    d = dense_equivalent(conv)
    assert d.kind == "dense" and d.weights.tolist() == [[1, -2, 0, 0], [3, 0, 1, -2], [0, 0, 3, 0]]
    assert d.bias.tolist() == [5, 6, 5, 6]
    x = np.array([[1, 2, 3]])
    assert golden.run_layer(conv, x).tolist() == golden.run_layer(d, x).tolist()


# ----------------------------------------------------------------------------- end to end

@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_conv2d_maxpool_bit_exact_at_two_reuse_factors(tmp_path: Path) -> None:
    graph, arrays = convert_checked(digits_like_cnn(), tmp_path)
    kinds = [layer.kind for layer in graph.layers]
    assert kinds == ["conv", "relu", "pool", "dense"], kinds  # Flatten moves no data
    rtl, design = generate_linted(graph, tmp_path)
    conv = design["layers"][0]
    assert conv["pixels"] == 36 and conv["kernel"] == [3, 3, 1, 4]
    assert conv["multipliers"] == 0 and conv["adders"] > 0  # constant products are shift-add terms
    assert_verifies(rtl, design, arrays, tmp_path)

    folded = with_rf(graph, 4)
    rtl4, design4 = generate_linted(folded, tmp_path, "rtl4")
    assert design4["ii"] == 4
    c4 = design4["layers"][0]
    assert c4["ii"] == 4
    if "folded" in c4["architecture"]:  # multiplier lanes: ceil(nonzeros / R) of them
        assert c4["multipliers"] == -(-c4["expanded_nonzero_weights"] // 4)
    (tmp_path / "rf4").mkdir()  # the reuse factor changes the schedule, not one output integer
    assert_verifies(rtl4, design4, arrays, tmp_path / "rf4")


@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_strided_same_padding_and_average_pooling(tmp_path: Path) -> None:
    graph, arrays = convert_checked(strided_same_avgpool_cnn(), tmp_path)
    conv, pool = graph.layers[0], graph.layers[2]
    assert conv.geometry.stride_h == 2 and conv.geometry.pad_top + conv.geometry.pad_left > 0
    assert pool.kind == "pool" and pool.pool_op == "avg"
    assert (pool.geometry.windows() < 0).any()  # some windows overlap the padding
    rtl, design = generate_linted(graph, tmp_path)
    assert_verifies(rtl, design, arrays, tmp_path)


@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_conv1d_stack_bit_exact(tmp_path: Path) -> None:
    graph, arrays = convert_checked(conv1d_cnn(), tmp_path, hls={"layer_reuse_factor": {"conv_1": 3}})
    assert [layer.kind for layer in graph.layers].count("conv") == 2
    rtl, design = generate_linted(graph, tmp_path)
    assert design["ii"] == 3
    assert_verifies(rtl, design, arrays, tmp_path)


@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_upsampling_bit_exact(tmp_path: Path) -> None:
    graph, arrays = convert_checked(upsampling_cnn(), tmp_path)
    assert "resize" in [layer.kind for layer in graph.layers]
    rtl, design = generate_linted(graph, tmp_path)
    assert_verifies(rtl, design, arrays, tmp_path / "sim")


@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_depthwise_and_separable_convolutions_bit_exact(tmp_path: Path) -> None:
    graph, arrays = convert_checked(depthwise_separable_cnn(), tmp_path)
    sources = [layer.source for layer in graph.layers if layer.kind == "conv"]
    assert sum("Depthwise" in s for s in sources) == 2 and any("Pointwise" in s for s in sources), sources
    rtl, design = generate_linted(graph, tmp_path)
    assert_verifies(rtl, design, arrays, tmp_path / "sim")


@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_keras_cnn_with_batch_normalization(tmp_path: Path) -> None:
    graph, arrays = convert_checked(keras_bn_cnn(), tmp_path)
    sources = [layer.source for layer in graph.layers]
    assert any("BatchNormalization" in s for s in sources), sources  # bn_1 stays a layer
    rtl, design = generate_linted(graph, tmp_path)
    assert_verifies(rtl, design, arrays, tmp_path)


@pytest.mark.icarus
def test_average_pooling_divides_by_any_tap_count_toward_zero(tmp_path: Path) -> None:
    """hls4ml divides a window's sum by its tap count truncating toward zero: 3x3 windows over 9
    taps, and a 'same' 3x3 window over signed inputs that counts 4, 6 or 9 taps (padding not
    counted), both against the golden model on random and extreme codes (2-channel images)."""
    from codesign import golden, pipeline
    from codesign.fixedpoint import FixedType

    u = FixedType(8, 2, signed=False)
    nine = hwgraph.Layer(name="avg_9", kind="pool", n_in=18, n_out=2, in_type=u, out_type=u,
                         accum_type=FixedType(12, 6, signed=False), geometry=hwgraph.Geometry(3, 3, 2, 3, 3, 3, 3, 0, 0, 1, 1),
                         pool_op="avg")
    s = FixedType(7, 2)
    same = hwgraph.Layer(name="avg_same", kind="pool", n_in=50, n_out=50, in_type=s, out_type=FixedType(9, 3),
                         accum_type=FixedType(14, 7), geometry=hwgraph.Geometry(5, 5, 2, 3, 3, 1, 1, 1, 1, 5, 5),
                         pool_op="avg")
    rng = np.random.default_rng(7)
    for layer, n_in in ((nine, 18), (same, 50)):
        graph, t = hwgraph.Graph(layer.in_type, n_in, (layer,)), layer.in_type
        x = rng.integers(t.min_code, t.max_code + 1, size=(300, n_in), dtype=np.int64)
        x[0], x[1] = t.min_code, t.max_code
        outs = golden.layer_outputs(graph, x)
        arrays = {"inputs": x, "expected": outs[layer.name], **{f"golden_{k}": v for k, v in outs.items()}}
        design = pipeline.generate(graph, tmp_path / layer.name / "rtl")
        assert_verifies(tmp_path / layer.name / "rtl", design, arrays, tmp_path / layer.name, simulator="icarus")


def test_resource_strategy_conv_is_refused_by_name(tmp_path: Path) -> None:
    from dataclasses import replace

    from codesign.fixedpoint import FixedType

    t = FixedType(8, 1)
    geom = hwgraph.Geometry(1, 3, 1, 1, 2, 1, 1, 0, 0, 1, 2)
    conv = hwgraph.Layer(name="conv_r", kind="conv", n_in=3, n_out=4, in_type=t, out_type=t, accum_type=t,
                         weights=np.array([[1, -2], [3, 0]]), bias=np.array([5, 6]), geometry=geom)
    with pytest.raises(RtlGenError, match=r"layer conv_r: convolutions are generated for hls4ml's Latency"):
        rtlgen.generate(hwgraph.Graph(t, 3, (replace(conv, strategy="resource"),)), tmp_path / "rtl")


# ----------------------------------------------------------------------------- through the flow

@pytest.mark.slow
@pytest.mark.train
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_digits_cnn_trains_and_verifies_at_two_reuse_factors(tmp_path: Path) -> None:
    """The issue's digits CNN (Conv2D(8, 3x3) -> ReLU -> MaxPool 2x2 -> Flatten -> Dense 10)."""
    import shutil

    from codesign.config import Config
    from codesign.flow import run_flow
    from codesign.rundir import read_json

    base = tmp_path / "train"
    cfg = Config().replace(**{"model.kind": "cnn", "verify.random_vectors": 300, "output_dir": str(base)})
    trained = run_flow(cfg, base, stages="train")
    assert trained["model"]["test_accuracy"] >= 0.95
    for rf in (1, 4):
        run = tmp_path / f"rf{rf}"
        run.mkdir()
        shutil.copytree(base / "model", run / "model")
        res = run_flow(cfg.replace(**{"hls.reuse_factor": rf, "output_dir": str(run)}), run,
                       stages="convert,rtl,verify")
        agree = res["hls"]["csim_vs_qkeras"]
        assert agree["exact_rows"] == agree["rows"] == 360
        design = read_json(run / "rtl" / "design.json")
        assert [layer["kind"] for layer in design["layers"]] == ["conv", "relu", "pool", "dense"]
        assert design["ii"] == rf
        conv = design["layers"][0]
        assert conv["ii"] == rf
        if rf == 1:  # the adder graph: constant products are shift-add terms, no general multiplier
            assert conv["multipliers"] == 0 and conv["adders"] > 0
        elif "folded" in conv["architecture"]:  # multiplier lanes: ceil(nonzeros / R) of them
            assert conv["multipliers"] == -(-conv["expanded_nonzero_weights"] // rf)
        sim = res["sim"]
        assert sim["passed"] and sim["mismatches"] == 0, sim.get("failures")
        assert sim["vectors_checked"] == 360 + 300
        assert sim["latency_min"] == sim["latency_max"] == design["latency"]
        assert sim["ii"] == design["ii"]
        assert sim["accuracy"] >= 0.95


@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_keras_bn_cnn_imported_from_json_and_h5(tmp_path: Path) -> None:
    """Import (architecture .json + weights .h5) -> convert -> rtl -> verify, batch norm included."""
    from codesign.config import Config
    from codesign.flow import run_flow

    model = keras_bn_cnn()
    (tmp_path / "bn_cnn.json").write_text(model.to_json())
    model.save_weights(tmp_path / "bn_cnn_weights.h5")
    run = tmp_path / "run"
    cfg = Config().replace(**{"model.import_path": str(tmp_path / "bn_cnn.json"),
                              "model.weights_path": str(tmp_path / "bn_cnn_weights.h5"),
                              "verify.random_vectors": 300, "output_dir": str(run)})
    res = run_flow(cfg, run, stages="train,convert,rtl,verify")
    classes = [layer["class"] for layer in res["hls"]["layers"]]
    assert "BatchNormalization" in classes, classes
    sim = res["sim"]
    assert sim["passed"] and sim["mismatches"] == 0, sim.get("failures")
    assert sim["latency_min"] == sim["latency_max"] == res["rtl"]["latency"]
