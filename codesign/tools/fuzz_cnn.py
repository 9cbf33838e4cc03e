"""Seeded random QKeras CNNs for the fuzz campaign (:mod:`codesign.tools.fuzz`, ``--family cnn``).

The model space: a 1-D (length 3-14) or 2-D (3-9 x 3-9) input with 1-3 channels, quantized by a
signed or unsigned QActivation; 1-2 blocks of QConv1D/QConv2D (1-4 filters, kernel 1-3, stride
1-2, 'valid' or 'same' padding, weight/bias bits 2-8, 0-80 % zero weights) each followed by a
quantized ReLU or nothing and optionally by max or average pooling (1-3 wide, 'valid' or 'same');
then Flatten and a QDense of 1-6 outputs. Reuse factors per conv / Dense layer are random within
the kernel's n_in*n_out. ``--family cnn-stream`` draws io_stream cases from the same space with
larger inputs (2-D up to 16x16, 1-D up to 40 samples) and hls4ml's io_stream pooling (stride = pool
size, 'valid'). Each case runs through :func:`codesign.tools.fuzz.run_case` exactly like an MLP
case (convert, golden == C-sim, RTL or a clear refusal, lint, simulation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from codesign.config import Config, from_dict
from codesign.tools.fuzz_mlp import weight_codes


@dataclass(frozen=True)
class ConvSpec:
    name: str
    filters: int
    kernel: int
    stride: int
    padding: str
    w_bits: int
    b_bits: int
    sparsity: float
    relu: tuple[int, int] | None  #: (bits, integer) of a quantized_relu, or None
    pool: tuple[str, int, str] | None  #: ("max" | "avg", size, padding) or None
    reuse_factor: int


@dataclass(frozen=True)
class CnnCaseSpec:
    seed: int
    index: int
    shape: tuple[int, ...]  #: (length, channels) or (height, width, channels)
    input_q: tuple[int, int, bool]  #: quantized_bits(bits, integer, keep_negative)
    convs: tuple[ConvSpec, ...]
    n_out: int
    dense_bits: int
    dense_reuse: int
    stream: bool = False  #: converted with hls.io_type io_stream (the streaming RTL)

    def describe(self) -> str:
        b, i, kn = self.input_q
        parts = [f"{'x'.join(map(str, self.shape))}x{'qs' if kn else 'qu'}<{b},{i}>"]
        for c in self.convs:
            s = f"conv{len(self.shape) - 1}d[{c.filters}f k{c.kernel} s{c.stride} {c.padding} w{c.w_bits} sp{c.sparsity:.2f} rf{c.reuse_factor}"
            s += f" relu<{c.relu[0]},{c.relu[1]}>" if c.relu else ""
            s += f" {c.pool[0]}pool{c.pool[1]} {c.pool[2]}" if c.pool else ""
            parts.append(s + "]")
        parts.append(f"dense{self.n_out}[w{self.dense_bits} rf{self.dense_reuse}]")
        return ("io_stream: " if self.stream else "") + " -> ".join(parts)

    def build(self) -> Any:
        return build_model(self)

    def config(self, vectors: int = 300) -> Config:
        return case_config(self, vectors)


def _out_len(n: int, k: int, s: int, padding: str) -> int:
    return -(-n // s) if padding == "same" else (n - k) // s + 1


def make_case(seed: int, index: int, stream: bool = False) -> CnnCaseSpec:
    """Draw CNN case ``index`` of campaign ``seed`` (deterministic; a different stream than MLPs).
    ``stream``: an io_stream case (its own random stream): larger images (2-D up to 16x16, 1-D up to
    40 samples), pooling with stride = pool size and 'valid' padding, as hls4ml's io_stream needs."""
    rng = np.random.default_rng([seed, index, 9 if stream else 7])
    two_d = bool(rng.random() < 0.6)
    chans = int(rng.integers(1, 4))
    hi = (17, 41) if stream else (10, 15)
    dims = [int(rng.integers(3, hi[0])), int(rng.integers(3, hi[0]))] if two_d else [int(rng.integers(3, hi[1]))]
    shape = (*dims, chans)
    bits = int(rng.integers(3, 9))
    kn = bool(rng.random() < 0.5)
    input_q = (bits, int(rng.integers(0, min(bits - 1, 2) + 1)), kn)
    convs = []
    for k in range(int(rng.integers(1, 3))):
        kernel = int(rng.integers(1, min(3, *dims) + 1))
        stride = int(rng.choice([1, 1, 2]))
        padding = str(rng.choice(["valid", "same"]))
        new = [_out_len(d, kernel, stride, padding) for d in dims]
        if min(new) < 1:
            break
        filters = int(rng.integers(1, 5))
        relu = None
        if rng.random() < 0.7:
            rb = int(rng.integers(2, 9))
            relu = (rb, int(rng.integers(0, min(rb, 3) + 1)))
        pool = None
        if rng.random() < 0.6 and min(new) >= 2:
            size = int(rng.choice([2, 2, 3])) if min(new) >= 3 else 2
            ppad = "valid" if stream else str(rng.choice(["valid", "same"]))
            pool = (str(rng.choice(["max", "avg"])), size, ppad)
            new = [_out_len(d, size, size, ppad) for d in new]
        w_bits = int(rng.integers(2, 9))
        k_full = kernel ** len(dims) * chans * filters
        reuse = int(rng.choice([1, 1, int(rng.integers(1, min(k_full, 8) + 1))]))
        convs.append(ConvSpec(f"conv{k}", filters, kernel, stride, padding, w_bits, int(rng.integers(2, 9)),
                              float(rng.choice([0.0, rng.uniform(0, 0.8)])), relu, pool, reuse))
        dims, chans = new, filters
    n_out = int(rng.integers(1, 7))
    dense_reuse = int(rng.choice([1, int(rng.integers(1, 5))]))
    return CnnCaseSpec(seed, index, shape, input_q, tuple(convs), n_out, int(rng.integers(2, 9)), dense_reuse,
                       stream)


def build_model(spec: CnnCaseSpec) -> Any:
    import tensorflow as tf
    from qkeras import QActivation, QConv1D, QConv2D, QDense, quantized_bits, quantized_relu

    rng = np.random.default_rng([spec.seed, spec.index, 8])
    two_d = len(spec.shape) == 3
    x_in = tf.keras.Input(shape=spec.shape, name="x_in")
    b, i, kn = spec.input_q
    x = QActivation(quantized_bits(b, i, keep_negative=kn, alpha=1), name="inq")(x_in)
    weighted: list[tuple[Any, int, int, float]] = []
    for k, c in enumerate(spec.convs):
        conv_cls = QConv2D if two_d else QConv1D
        layer = conv_cls(c.filters, c.kernel, strides=c.stride, padding=c.padding,
                         kernel_quantizer=quantized_bits(c.w_bits, 0, alpha=1),
                         bias_quantizer=quantized_bits(c.b_bits, 0, alpha=1), name=c.name)
        x = layer(x)
        weighted.append((layer, c.w_bits, c.b_bits, c.sparsity))
        if c.relu:
            x = QActivation(quantized_relu(*c.relu), name=f"crelu{k}")(x)
        if c.pool:
            op, size, ppad = c.pool
            if two_d:
                pool_cls = tf.keras.layers.MaxPooling2D if op == "max" else tf.keras.layers.AveragePooling2D
            else:
                pool_cls = tf.keras.layers.MaxPooling1D if op == "max" else tf.keras.layers.AveragePooling1D
            x = pool_cls(size, padding=ppad, name=f"pool{k}")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    dense = QDense(spec.n_out, kernel_quantizer=quantized_bits(spec.dense_bits, 0, alpha=1),
                   bias_quantizer=quantized_bits(spec.dense_bits, 0, alpha=1), name="fc")
    x = dense(x)
    weighted.append((dense, spec.dense_bits, spec.dense_bits, 0.3))
    model = tf.keras.Model(x_in, x, name=f"fuzzcnn_{spec.seed}_{spec.index}")
    for layer, wb, bb, sp in weighted:
        kshape = tuple(int(s) for s in layer.kernel.shape)
        kc = weight_codes(rng, kshape, wb, sp)
        bc = weight_codes(rng, (kshape[-1],), bb, 0.2)
        layer.set_weights([kc * 2.0 ** -(wb - 1), bc * 2.0 ** -(bb - 1)])
    return model


def flat_size(spec: CnnCaseSpec) -> int:
    """Elements the Dense head reads: Keras' output-size arithmetic of the convs and poolings."""
    dims, chans = list(spec.shape[:-1]), spec.shape[-1]

    def out(n: int, k: int, s: int, padding: str) -> int:
        return -(-n // s) if padding == "same" else (n - k) // s + 1

    for c in spec.convs:
        dims, chans = [out(n, c.kernel, c.stride, c.padding) for n in dims], c.filters
        if c.pool:
            _, size, ppad = c.pool
            dims = [out(n, size, size, ppad) for n in dims]
    return int(np.prod(dims)) * chans


def case_config(spec: CnnCaseSpec, vectors: int = 300) -> Config:
    rf = {c.name: c.reuse_factor for c in spec.convs}
    # a drawn reuse factor above n_in * n_out is not a reuse factor hls4ml (or a designer) would use
    rf["fc"] = min(spec.dense_reuse, flat_size(spec) * spec.n_out)
    return from_dict({
        "output_dir": "unused",
        "hls": {"strategy": "Latency", "reuse_factor": 1, "layer_reuse_factor": rf, "strip_softmax": True,
                "io_type": "io_stream" if spec.stream else "io_parallel"},
        "verify": {"random_vectors": vectors, "seed": spec.index + 1},
    })
