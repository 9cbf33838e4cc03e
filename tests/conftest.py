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
