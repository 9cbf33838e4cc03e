"""Conformance: hls4ml's reference models (tests/reference_models) through the flow.

import -> convert (automatic config, softmax stripped) -> golden == C-sim -> rtl -> lint -> verify.
The upstream ``<name>_config.yml`` settings (ReuseFactor, Strategy, Precision per layer) are
translated into our config where they make sense.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import REFERENCE_MODELS as REF  # noqa: E402

from codesign import golden, pipeline
from codesign import vectors as vec
from codesign.config import Config, from_dict
from codesign.errors import ConversionError


def load(name: str) -> Any:
    from codesign.model_io import load_model

    return load_model(REF / f"{name}.json", REF / f"{name}_weights.h5")


def renamed(model: Any, old: str, new: str) -> Any:
    """The user's fix for hls4ml's reserved layer names: rename the layer."""
    model.get_layer(old)._name = new
    return model


def upstream_config(name: str, rename: dict[str, str] | None = None) -> dict[str, Any]:
    """Translate ``<name>_config.yml`` (HLSConfig) into our hls section.

    Model ReuseFactor/Strategy become hls.reuse_factor/strategy; per-layer ReuseFactor and Strategy
    of Dense layers become hls.layer_reuse_factor / layer_strategy ("Stable" is a softmax option,
    not a Dense strategy, and the softmax is stripped); per-layer weight/bias/result precisions
    become hls.layer_precision. The Model-wide default Precision is left to hls4ml's automatic
    config (it is the input precision for models without an input quantizer).
    """
    rename = rename or {}
    up = yaml.safe_load((REF / f"{name}_config.yml").read_text())["HLSConfig"]
    model = up.get("Model", {})
    hls: dict[str, Any] = {"reuse_factor": int(model.get("ReuseFactor", 1)),
                           "strategy": model.get("Strategy", "Latency")}
    rf, strat, prec = {}, {}, {}
    for layer, conf in (up.get("LayerName") or {}).items():
        layer = rename.get(layer, layer)
        if "softmax" in layer or layer.startswith("activation"):
            continue  # stripped
        if "ReuseFactor" in conf and layer.startswith(("fc", "q_dense")):
            rf[layer] = int(conf["ReuseFactor"])
        if conf.get("Strategy") in ("Latency", "Resource") and layer.startswith(("fc", "q_dense")):
            strat[layer] = conf["Strategy"]
        p = conf.get("Precision")
        if isinstance(p, dict):
            prec[layer] = {k: v.replace("ap_", "") for k, v in p.items() if k in ("weight", "bias", "result")}
    hls.update(layer_reuse_factor=rf, layer_strategy=strat, layer_precision=prec)
    return hls


def flow(model: Any, cfg: Config, tmp: Path, n: int = 300, simulate: bool = True,
         simulator: str = "verilator", lint: bool = True) -> dict[str, Any]:
    converted = pipeline.convert(cfg, model, tmp / "hls")
    assert converted.graph.softmax_stripped
    hls_model, graph = converted.hls_model, converted.graph
    inputs = vec.random_codes(graph, n, seed=3)
    arrays = pipeline.reference(graph, converted.csim(), inputs)
    agree = pipeline.golden_agreement(graph, arrays)
    assert agree["mismatched_outputs"] == 0, agree
    # the per-layer golden also matches hls4ml's trace on a few vectors
    k = min(20, n)
    _, trace = hls_model.trace(np.ascontiguousarray(graph.input_type.to_real(inputs[:k])))
    gold = golden.layer_outputs(graph, inputs[:k])
    for layer in graph.layers:
        if layer.name in trace:
            codes = layer.out_type.to_codes(np.asarray(trace[layer.name]).reshape(k, -1))
            assert np.array_equal(codes, gold[layer.name]), layer.name
    rtl = tmp / "rtl"
    design = pipeline.generate(graph, rtl)
    if lint:
        pipeline.lint(rtl, design, tmp / "lint.log")
    if simulate:
        from conftest import assert_verifies

        assert_verifies(rtl, design, arrays, tmp, simulator)
    return design


def test_layer_named_input_is_refused_by_name(tmp_path: Path) -> None:
    """hls4ml reserves only 'input' (qkeras_3layer's layer named 'output' converts as it is)."""
    from codesign.convert import convert_model

    model = renamed(load("qkeras_3layer"), "fc1", "input")
    with pytest.raises(ConversionError, match=r"layer 'input' \(QDense\): hls4ml reserves the name"):
        convert_model(from_dict({}), model, tmp_path / "hls")


@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_qkeras_3layer_renamed_rf4(tmp_path: Path) -> None:
    """The canonical jet-tagging benchmark (6-bit QKeras) as shipped, RF 4 everywhere."""
    model = load("qkeras_3layer")
    design = flow(model, from_dict({"hls": {"reuse_factor": 4}}), tmp_path)
    assert design["ii"] == 4
    assert design["input"]["n"] == 16 and design["output"]["n"] == 5


@pytest.mark.hls4ml
@pytest.mark.verilator
def test_qkeras_3layer_upstream_config_converts(tmp_path: Path) -> None:
    """Upstream config: RF 1, Latency, weight/bias fixed<6,1>, relu results fixed<7,1,RND_CONV,SAT>."""
    model = load("qkeras_3layer")
    hls = upstream_config("qkeras_3layer")
    hls["layer_precision"].pop("fc1_input", None)  # the input layer is named differently here
    assert hls["layer_precision"]["relu1"] == {"result": "fixed<7,1,AP_RND_CONV,AP_SAT>"}
    design = flow(model, from_dict({"hls": hls}), tmp_path, simulate=False)
    assert design["ii"] == 1


@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_keras_3layer_float_model_rf8(tmp_path: Path) -> None:
    """Plain Keras float weights: the C-sim quantizes them to weight_t (fixed<16,6>); so must graph.py.

    Before graph.py quantized weights like the C-sim, the raw float32 weights (34 fractional bits)
    reached the RTL backend, which refused the layer ("per-product rounding").
    """
    design = flow(load("KERAS_3layer"), from_dict({"hls": {"reuse_factor": 8}}), tmp_path, n=200, lint=False)
    assert design["ii"] == 8


@pytest.mark.hls4ml
def test_keras_3layer_golden_equals_csim_rf1(tmp_path: Path) -> None:
    """Reproducer for the float-weights bug in graph.py: golden == C-sim and the RTL is generated."""
    flow(load("KERAS_3layer"), from_dict({}), tmp_path, n=200, simulate=False, lint=False)


@pytest.mark.hls4ml
@pytest.mark.verilator
def test_keras_3layer_lint(tmp_path: Path) -> None:
    flow(load("KERAS_3layer"), from_dict({}), tmp_path, n=10, simulate=False)


@pytest.mark.hls4ml
def test_qkeras_mnist_dense_upstream_config(tmp_path: Path) -> None:
    """784 -> 20 -> 10, quantized_po2 weights in q_dense_2, RF 112 and Resource strategy there.

    golden == C-sim holds (po2 products as hls4ml's weight_exponential computes them); the RTL backend
    implements po2 products at reuse factor 1 only and says so.
    """
    from codesign.errors import RtlGenError

    hls = upstream_config("qkeras_mnist_dense")
    assert hls["layer_reuse_factor"] == {"q_dense_2": 112, "q_dense_3": 1}
    assert hls["strategy"] == "Resource" and hls["layer_strategy"] == {"q_dense_3": "Latency"}
    hls["layer_precision"] = {k: v for k, v in hls["layer_precision"].items() if k.startswith("q_")}
    with pytest.raises(RtlGenError, match=r"layer q_dense_2: power-of-two .* reuse factor 1 only, got 112"):
        flow(load("qkeras_mnist_dense"), from_dict({"hls": hls}), tmp_path, n=100)


@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_qkeras_mnist_dense_po2_rf1_verifies(tmp_path: Path) -> None:
    """Automatic config (RF 1): po2 products become wire shifts; bit-exact under the testbench."""
    design = flow(load("qkeras_mnist_dense"), from_dict({}), tmp_path, n=200)
    po2 = next(layer for layer in design["layers"] if layer["name"] == "q_dense_2")
    assert po2["architecture"] == "parallel" and po2["multipliers"] == 0
