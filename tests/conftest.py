"""Shared test helpers: a tiny QKeras MLP (cheap to convert, simulate and synthesize) and the
bit-exactness check of a simulated design.

Markers (declared in pyproject.toml): every test that runs a tool says so, on the test itself
(``@pytest.mark.<tool>``, or a module's ``pytestmark`` when every test of the file needs it):

* ``hls4ml``: converts a model with hls4ml (and compiles its C-sim), or compiles C++ against
  hls4ml's ap_types headers;
* ``train``: trains a model;
* ``verilator`` / ``icarus``: runs that simulator (a lint counts: ``verilator --lint-only``);
* ``yosys``: runs Yosys;
* ``slow``: long end-to-end runs; they carry the tool markers too.

A fixture that converts, trains or simulates makes every test that uses it need the marker.
``make test-fast`` deselects all of them; ``make test`` runs everything. tests/test_markers.py
checks the markers against what each test calls (its helpers and fixtures included).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402



def pytest_configure(config: Any) -> None:
    """Run the suite with Python's own Ctrl-C handling wherever it was started.

    A background job of a non-interactive shell (``make test &`` in a script, a CI runner without
    job control) starts with SIGINT ignored, and every process inherits that: pytest's workers, the
    codesign CLIs and Ray workers the interrupt tests start would ignore the SIGINT those tests send
    (the CLI keeps an inherited SIG_IGN on purpose, as nohup'ed tools do), and the tests would fail
    for the shell's reason, not codesign's."""
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


#: hls4ml's public example models the conformance tests import (tests/reference_models/README.md).
REFERENCE_MODELS = Path(__file__).resolve().parent / "reference_models"


def small_qkeras_mlp(seed: int = 0, softmax: bool = False, sparsity: float = 0.5):
    """A 12 -> 7 -> 5 QKeras MLP (input quantizer, 6-bit and 4-bit layers, quantized ReLU) with
    random weights, a fraction of them pruned: cheap to convert, simulate and synthesize."""
    import numpy as np
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu
    from tensorflow.keras.layers import Activation, Input
    from tensorflow.keras.models import Model

    x = Input((12,), name="x_in")
    h = QActivation(quantized_bits(8, 1, keep_negative=False, alpha=1), name="inq")(x)
    h = QDense(7, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1),
               name="d1")(h)
    h = QActivation(quantized_relu(6), name="r1")(h)
    h = QDense(5, kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(4, 0, alpha=1),
               name="d2")(h)
    if softmax:
        h = Activation("softmax", name="sm")(h)
    m = Model(x, h)
    rng = np.random.default_rng(seed)
    ws = [rng.normal(0, 0.5, w.shape) for w in m.get_weights()]
    ws[0][rng.random(ws[0].shape) < sparsity] = 0
    m.set_weights(ws)
    return m


def assert_verifies(rtl, design, arrays, tmp, simulator: str = "verilator") -> None:
    """Simulate ``rtl`` against ``arrays`` (vectors.npz contents): 0 mismatches, and latency/II
    measured by the testbench equal to what design.json promises."""
    from codesign import pipeline

    res = pipeline.simulate(rtl, design, arrays, tmp, simulator=simulator)
    assert not res["problems"], res["problems"]
    assert res["mismatches"] == 0 and res["passed"]
    assert res["latency_min"] == res["latency_max"] == design["latency"]
    assert res["ii"] == design["ii"]


# --- conv / stream model helpers (tests/test_cnn.py, tests/test_stream.py) ---

def qbits(bits: int, integer: int = 0):
    from qkeras import quantized_bits

    return quantized_bits(bits, integer, alpha=1)


def randomize_weights(model: Any, seed: int, sparsity: float = 0.3) -> Any:
    """Random weights, some zero (pruned), within the quantizers' range."""
    rng = np.random.default_rng(seed)
    ws = []
    for w in model.get_weights():
        v = rng.uniform(-0.9, 0.9, w.shape) * (rng.random(w.shape) >= sparsity)
        ws.append(v.astype(np.float32))
    model.set_weights(ws)
    return model


def convert_checked(model: Any, tmp: Path, hls: dict[str, Any] | None = None, n: int = 400):
    """Convert, check golden == C-sim (every output) and == hls4ml's per-layer trace; return graph, arrays."""
    from codesign import golden, layers
    from codesign import vectors as vec
    from codesign.config import from_dict
    from codesign.convert import convert_model
    from codesign.csim import CSim

    hls_model, _, stripped = convert_model(from_dict({"hls": hls or {}}), model, tmp / "hls")
    graph = layers.from_hls4ml(hls_model, stripped)
    csim = CSim.for_graph(tmp / "hls", graph)
    inputs = vec.random_codes(graph, n, seed=5)
    arrays = vec.build(graph, csim, inputs)
    agree = vec.golden_agreement(graph, arrays)
    assert agree["mismatched_outputs"] == 0, agree
    k = 20
    _, trace = hls_model.trace(np.ascontiguousarray(graph.input_type.to_real(inputs[:k])))
    gold = golden.layer_outputs(graph, inputs[:k])
    compared = 0
    for layer in graph.layers:
        if layer.name in trace:
            codes = layer.out_type.to_codes(np.asarray(trace[layer.name]).reshape(k, -1))
            assert np.array_equal(codes, gold[layer.name]), layer.name
            compared += 1
    assert compared >= 2
    return graph, arrays


def generate_linted(graph: Any, tmp: Path, name: str = "rtl") -> tuple[Path, dict[str, Any]]:
    """RTL for ``graph`` in ``tmp/name``, linted (verilator -Wall); returns its folder and design.json."""
    from codesign import pipeline, simtools

    rtl = tmp / name
    design = pipeline.generate(graph, rtl)
    simtools.verilator_lint([rtl / f for f in design["files"]], design["top"], tmp / f"{name}_lint.log")
    return rtl, design


def with_rf(graph: Any, rf: int) -> Any:
    """``graph`` with reuse factor ``rf`` on every Dense and conv layer."""
    from dataclasses import replace

    layers = tuple(replace(layer, reuse_factor=rf) if layer.kind in ("dense", "conv") else layer
                   for layer in graph.layers)
    return replace(graph, layers=layers)


def random_weight_matrix(seed: int, dim_below: int, bits_below: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random pruned integer weight matrix for the adder-graph tests: n_in, n_out in 1 ..
    dim_below - 1, weights of 2 .. bits_below - 1 bits, a repeated column and an all-zero one, and
    input ranges [lo, hi] (some inputs unsigned). Returns (w, lo, hi)."""
    rng = np.random.default_rng(seed)
    n_in, n_out = (int(v) for v in rng.integers(1, dim_below, size=2))
    bits = int(rng.integers(2, bits_below))
    w = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(n_in, n_out))
    w = w * (rng.random((n_in, n_out)) < rng.uniform(0.2, 1.0))  # pruned
    if n_out > 2:
        w[:, 1] = w[:, 0]  # a repeated column and an all-zero one
        w[:, 2] = 0
    lo = rng.integers(-300, 1, size=n_in) * rng.integers(0, 2, size=n_in)  # some inputs unsigned
    hi = lo + rng.integers(0, 600, size=n_in)
    return w, lo, hi
