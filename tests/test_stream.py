"""io_stream: streaming dataflow RTL (line buffers, kernel reuse, gathers), bit-exact with hls4ml's
io_stream C-sim, its latency and II per image computed by the cycle model and measured equal.

Each end-to-end case: convert with io_type io_stream -> golden == C-sim on every output integer
(and hls4ml's per-layer trace) -> RTL -> lint -> cocotb streams the images pixel by pixel with
gaps and back-pressure, 0 mismatches, latency and II as design.json says.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import (  # noqa: E402
    assert_verifies, convert_checked, generate_linted, qbits, randomize_weights, with_rf)
from test_cnn import conv1d_cnn, depthwise_separable_cnn, keras_bn_cnn, upsampling_cnn

from codesign import golden, rtlgen
from codesign import graph as hwgraph
from codesign.arch import stream_timing
from codesign.errors import RtlGenError
from codesign.fixedpoint import FixedType

STREAM = {"io_type": "io_stream"}


def same_padded_cnn(seed: int = 11) -> Any:
    """10x10x2: Conv2D 4 3x3 'same' -> ReLU -> MaxPool 2 -> Conv2D 3 2x2 'valid' -> ReLU -> Dense 5."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((10, 10, 2), name="x_in")
    x = QActivation(qbits(6, 1), name="inq")(inp)
    x = QConv2D(4, (3, 3), padding="same", kernel_quantizer=qbits(5), bias_quantizer=qbits(5), name="conv_0")(x)
    x = QActivation(quantized_relu(5, 1), name="crelu_0")(x)
    x = tf.keras.layers.MaxPooling2D(2, name="pool_0")(x)
    x = QConv2D(3, (2, 2), kernel_quantizer=qbits(5), bias_quantizer=qbits(5), name="conv_1")(x)
    x = QActivation(quantized_relu(5, 1), name="crelu_1")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = QDense(5, kernel_quantizer=qbits(6), bias_quantizer=qbits(6), name="dense_0")(x)
    return randomize_weights(tf.keras.Model(inp, x), seed)


def strided_cnn(seed: int = 12) -> Any:
    """11x11x1, Conv2D 3 3x3 stride 3 'same' (padding on both sides) -> ReLU -> Dense 4."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((11, 11, 1), name="x_in")
    x = QActivation(qbits(6, 1), name="inq")(inp)
    x = QConv2D(3, (3, 3), strides=(3, 3), padding="same", kernel_quantizer=qbits(5), bias_quantizer=qbits(5),
                name="conv_0")(x)
    x = QActivation(quantized_relu(5, 1), name="crelu_0")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = QDense(4, kernel_quantizer=qbits(6), bias_quantizer=qbits(6), name="dense_0")(x)
    return randomize_weights(tf.keras.Model(inp, x), seed)


def early_output_cnn(seed: int = 14) -> Any:
    """10x10x1, Conv2D 3 3x3 'valid' -> MaxPool 3 (8x8 -> 2x2: conv rows 6-7 unused) -> Dense 3: the
    output is ready before the image's last rows arrive, which still belong to that image."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((10, 10, 1), name="x_in")
    x = QActivation(qbits(6, 1), name="inq")(inp)
    x = QConv2D(3, (3, 3), kernel_quantizer=qbits(5), bias_quantizer=qbits(5), name="conv_0")(x)
    x = tf.keras.layers.MaxPooling2D(3, name="pool_0")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = QDense(3, kernel_quantizer=qbits(6), bias_quantizer=qbits(6), name="dense_0")(x)
    return randomize_weights(tf.keras.Model(inp, x), seed)


def folded_mlp(seed: int = 15) -> Any:
    """An MLP on io_stream (one beat per vector): 12 -> Dense 6 (ReLU) -> Dense 3, folded by RF 4."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((12,), name="x_in")
    x = QActivation(qbits(6, 1), name="inq")(inp)
    x = QDense(6, kernel_quantizer=qbits(5), bias_quantizer=qbits(5), name="dense_0")(x)
    x = QActivation(quantized_relu(5, 1), name="relu_0")(x)
    x = QDense(3, kernel_quantizer=qbits(5), bias_quantizer=qbits(5), name="dense_1")(x)
    return randomize_weights(tf.keras.Model(inp, x), seed)


def avgpool_last_cnn(seed: int = 13) -> Any:
    """8x8x1, Conv2D 2 3x3 (signed outputs) -> AveragePooling 2x2, the network's output (a stream)."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((8, 8, 1), name="x_in")
    x = QActivation(qbits(6, 1), name="inq")(inp)
    x = QConv2D(2, (3, 3), kernel_quantizer=qbits(5), bias_quantizer=qbits(5), name="conv_0")(x)
    x = tf.keras.layers.AveragePooling2D(2, name="pool_0")(x)
    return randomize_weights(tf.keras.Model(inp, x), seed, sparsity=0.0)


# ----------------------------------------------------------------------------- cycle model

def _window(h: int, w: int, k: int, s: int = 1, pad: int = 0) -> tuple[str, dict[str, Any]]:
    g = hwgraph.Geometry(h, w, 1, k, k, s, s, pad, pad, (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1)
    from codesign.arch.stream import window_params

    return ("window", window_params(g))


def test_cycle_model_rate_is_the_slowest_stage() -> None:
    # 6x6 image, 3x3 window (16 outputs): at RF 1 one pixel per cycle, the image is the bottleneck
    fast = stream_timing.schedule([_window(6, 6, 3), ("pipeline", 2), ("gather", 16)], beats=36)
    assert fast.ii == 36
    # a folded kernel taking 5 cycles per output pixel: 16 outputs x 5 cycles bound the rate
    slow = stream_timing.schedule([_window(6, 6, 3), ("engine", 5, 5, 1), ("gather", 16)], beats=36)
    assert slow.ii >= 16 * 5 and slow.latency > fast.latency
    # 'same' padding: the generator walks 8x8 positions, 28 of them zeros it shifts in itself
    padded = stream_timing.schedule([_window(6, 6, 3, pad=1), ("pipeline", 1), ("gather", 36)], beats=36)
    assert padded.ii >= 64 - 28 and padded.latency_after_last_pixel > fast.latency_after_last_pixel


def test_cycle_model_every_image_sees_the_same_latency() -> None:
    chain = [_window(7, 7, 3, s=2, pad=1), ("engine", 3, 2, 2), _window(4, 4, 2, s=2), ("pipeline", 1),
             ("gather", 4), ("engine", 4, 4, 1)]
    t = stream_timing.schedule(chain, beats=49, images=5)
    firsts, lasts, outs = stream_timing.simulate(chain, 49, 6, t.ii)
    assert {o - f for f, o in zip(firsts, outs)} == {t.latency}
    assert {b - a for a, b in zip(firsts, firsts[1:])} == {t.ii}
    assert t.latency_after_last_pixel == outs[0] - lasts[0]


def _bursty_chain(r: int) -> list[tuple[Any, ...]]:
    """10x10 'same' conv at RF 1 -> 2x2 max pooling (outputs on every other row) -> 2x2 conv folded
    at RF ``r`` -> gather: the pooling's bursts throttle the image unless a FIFO absorbs them."""
    return [_window(10, 10, 3, pad=1), ("pipeline", 3), ("comb",), _window(10, 10, 2, s=2), ("pipeline", 1),
            _window(5, 5, 2), ("engine", r, r, 2), ("comb",), ("gather", 16), ("pipeline", 3)]


def test_fifos_give_the_chain_its_bottleneck_rate_at_the_smallest_depth() -> None:
    chain = _bursty_chain(8)
    busy = max(12 * 12, 16 * 8)  # the first window walks 12x12 positions; the folded conv 16 x 8 cycles
    bare = stream_timing.schedule(chain, beats=100)
    assert bare.ii > busy  # without a FIFO the pooling's bursts stall the image
    widths = {k: 32 for k in range(1, len(chain)) if chain[k][0] != "comb"}
    depths, timing = stream_timing.size_fifos(chain, widths, 100, lower_bound=busy)
    assert timing.ii == busy and len(depths) == 1
    (k, depth), = depths.items()
    steady = stream_timing._steady  # one depth less no longer reaches the rate
    assert steady(stream_timing._with_fifos(chain, depths), 100, 4, busy)
    assert not steady(stream_timing._with_fifos(chain, {k: depth - 1}), 100, 4, busy)
    # the model of the FIFO matches the schedule it promises: every image at one latency, II apart
    firsts, _, outs = stream_timing.simulate(stream_timing._with_fifos(chain, depths), 100, 6, timing.ii)
    assert {o - f for f, o in zip(firsts, outs)} == {timing.latency}


def test_fifos_go_where_the_bits_are_fewest_and_only_where_needed() -> None:
    chain = _bursty_chain(8)
    narrow = {k: (8 if k == 5 else 64) for k in range(1, len(chain)) if chain[k][0] != "comb"}
    depths, _ = stream_timing.size_fifos(chain, narrow, 100, lower_bound=144)
    assert list(depths) == [5]  # in front of the second conv's window, the cheapest place that works
    fast = _bursty_chain(4)  # the folded conv keeps up: no FIFO
    assert stream_timing.size_fifos(fast, narrow, 100, lower_bound=144)[0] == {}


def test_cycle_model_upsampling_sends_one_pixel_per_cycle() -> None:
    # 4x5 image upsampled x2 down, x3 across: 120 output pixels, one per cycle; the input waits
    t = stream_timing.schedule([("upsample", 5, 3, 2), ("gather", 120)], beats=20)
    assert t.ii == 120
    firsts, lasts, _ = stream_timing.simulate([("upsample", 5, 3, 2), ("gather", 120)], 20, 1, t.ii)
    # a row's 5 pixels each leave 3 times, then the row again from the buffer: 4 rows x 30 cycles
    assert lasts[0] - firsts[0] == 3 * 30 + 4 * 3


def test_window_refuses_a_geometry_that_misses_the_outputs() -> None:
    from codesign.arch.stream import window_params

    g = hwgraph.Geometry(5, 5, 1, 3, 3, 1, 1, 0, 0, 2, 2)  # 5x5 'valid' 3x3 gives 3x3, not 2x2
    with pytest.raises(RtlGenError, match="does not give the layer's 2x2 outputs"):
        window_params(g)


def test_a_layer_without_streaming_rtl_is_refused_by_name(tmp_path: Path) -> None:
    t = FixedType(8, 2)
    bad = hwgraph.Layer(name="zp", kind="zeropad", n_in=4, n_out=16, in_type=t, out_type=t, stream=True,
                        geometry=hwgraph.Geometry(2, 2, 1, 1, 1, 1, 1, 1, 1, 4, 4))
    with pytest.raises(RtlGenError, match="layer zp: .*no streaming"):
        rtlgen.generate(hwgraph.Graph(t, 4, (bad,)), tmp_path)


# ----------------------------------------------------------------------------- end to end

def _stream_graph(model: Any, tmp: Path, hls: dict[str, Any] | None = None):
    graph, arrays = convert_checked(model, tmp, {**STREAM, **(hls or {})}, n=300)
    assert graph.io_type == "io_stream" and all(layer.stream for layer in graph.layers)
    return graph, arrays


@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_stream_same_padding_two_convs_at_rf1_and_folded(tmp_path: Path) -> None:
    graph, arrays = _stream_graph(same_padded_cnn(), tmp_path)
    conv0 = next(layer for layer in graph.layers if layer.name == "conv_0")
    assert conv0.geometry is not None and conv0.geometry.pad_top == 1  # hls4ml's ZeroPadding folded back
    for rf in (1, 6):
        rtl, design = generate_linted(with_rf(graph, rf), tmp_path, f"rtl_rf{rf}")
        assert design["io_type"] == "io_stream" and design["input"]["beats"] == 100
        assert design["ii"] >= 100
        assert_verifies(rtl, design, arrays, tmp_path / f"sim_rf{rf}")
    # conv_1 folded at RF 8 behind the bursty pooling: a FIFO gives the image the bottleneck's rate
    mixed = replace(graph, layers=tuple(replace(layer, reuse_factor=8) if layer.name == "conv_1" else layer
                                        for layer in graph.layers))
    rtl, design = generate_linted(mixed, tmp_path, "rtl_mixed")
    assert design["stream"]["fifos"] and design["ii"] == design["stream"]["bottleneck_cycles_per_image"] == 144
    assert any(f.endswith("_fifo_0.v") for f in design["files"])
    assert_verifies(rtl, design, arrays, tmp_path / "sim_mixed")


@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_stream_stride3_conv1d_bn_early_output_mlp_depthwise(tmp_path: Path) -> None:
    for name, model in (("strided", strided_cnn()), ("conv1d", conv1d_cnn()), ("bn", keras_bn_cnn()),
                        ("early", early_output_cnn()), ("mlp", folded_mlp()),
                        ("depthwise", depthwise_separable_cnn()), ("upsampling", upsampling_cnn())):
        graph, arrays = _stream_graph(model, tmp_path / name, {"reuse_factor": 4} if name == "mlp" else None)
        rtl, design = generate_linted(graph, tmp_path / name)
        if name == "early":  # the output leaves before the last pixel: the next image must wait for it
            assert design["latency"] < design["input"]["beats"] <= design["ii"]
        assert_verifies(rtl, design, arrays, tmp_path / name / "sim")


@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_stream_tree_average_pooling_into_a_saturating_accumulator(tmp_path: Path) -> None:
    # accum fixed<6,2,TRN,SAT> overflows on the 4-tap sums: hls4ml's stream pooling saturates the
    # balanced tree's partial sums, which the io_parallel tap-by-tap order would not reproduce
    hls = {"layer_precision": {"pool_0": {"accum": "fixed<6,2,TRN,SAT>"}}}
    graph, arrays = _stream_graph(avgpool_last_cnn(), tmp_path, hls)
    pool = next(layer for layer in graph.layers if layer.kind == "pool")
    assert pool.accum_type is not None and pool.accum_type.overflow == "SAT"
    # the stream golden model is not the io_parallel one here: the tree's and the tap-by-tap sums
    # part (convert_checked() has checked the tree against hls4ml's C-sim)
    x = golden.layer_outputs(graph, arrays["inputs"])["conv_0"]
    assert np.any(golden.run_layer(pool, x) != golden.run_layer(replace(pool, stream=False), x))
    rtl, design = generate_linted(graph, tmp_path)
    assert design["files"][-2].endswith("out_gather.v")  # the last layer streams: gathered at the top
    assert_verifies(rtl, design, arrays, tmp_path / "sim")


def test_auto_io_type_streams_only_large_streamable_convolutions() -> None:
    import tensorflow as tf

    from codesign.config import from_dict
    from codesign.convert import AUTO_STREAM_PRODUCTS, choose_io_type

    def cnn(side: int, filters: int, pool: str = "valid") -> Any:
        inp = tf.keras.Input((side, side, 1))
        x = tf.keras.layers.Conv2D(filters, 3)(inp)
        x = tf.keras.layers.MaxPooling2D(2, padding=pool)(x)
        return tf.keras.Model(inp, tf.keras.layers.Dense(3)(tf.keras.layers.Flatten()(x)))

    auto = from_dict({"hls": {"io_type": "auto"}})
    assert 26 * 26 * 9 * 16 > AUTO_STREAM_PRODUCTS > 6 * 6 * 9 * 8
    assert choose_io_type(auto, cnn(28, 16)) == "io_stream"
    assert choose_io_type(auto, cnn(8, 8)) == "io_parallel"  # the digits CNN stays fully parallel
    assert choose_io_type(auto, cnn(27, 16, pool="same")) == "io_parallel"  # padded pooling: no io_stream
    assert choose_io_type(from_dict({"hls": {"io_type": "io_parallel"}}), cnn(28, 16)) == "io_parallel"
