"""The convert stage: QKeras/Keras model -> hls4ml Vitis project, compiled C-sim, hardware IR.

Writes ``<run>/hls/``: the hls4ml project (a user with Vitis HLS can run its build script as is),
the compiled C-sim library, ``hls_config.yml`` (what was passed to hls4ml), ``graph.json`` (the
hardware IR for the RTL backend, see :mod:`codesign.graph`) and ``result.json`` (C-sim vs QKeras
agreement on the test set, per-layer reuse factors and types).
"""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from codesign import graph as hwgraph
from codesign import layers as layer_kinds
from codesign.config import Config
from codesign.errors import ConfigError, ConversionError
from codesign.rundir import require, stage_dir, write_json

log = logging.getLogger(__name__)

PROJECT = "myproject"
#: Random on-grid vectors for the C-sim vs Keras agreement of a model imported without data.
AGREEMENT_VECTORS = 1000
#: hls4ml's default precision when nothing better is known (docs/TOOLCHAIN.md).
DEFAULT_INPUT_PRECISION = "fixed<16,6>"


def strip_softmax(model: Any) -> tuple[Any, bool]:
    """Return (model without a final softmax, whether one was removed). argmax is unchanged."""
    import tensorflow as tf

    last = model.layers[-1]
    cls = type(last).__name__
    act = getattr(last, "activation", None)
    act_name = getattr(act, "__name__", str(act)) if act is not None else ""
    if cls == "Softmax" or (cls in ("Activation", "QActivation") and "softmax" in str(act_name)):
        return tf.keras.Model(model.inputs, model.layers[-2].output, name=model.name), True
    if cls in ("Dense", "QDense") and act_name == "softmax":
        from codesign.model_io import custom_objects

        conf = model.get_config()
        for layer_conf in conf["layers"]:
            if layer_conf["config"]["name"] == last.name:
                layer_conf["config"]["activation"] = "linear"
        # the model's own class reads its config: a Sequential's has no functional 'layers' graph
        clone = type(model).from_config(conf, custom_objects=custom_objects())
        clone.set_weights(model.get_weights())
        return clone, True
    return model, False


def _first_quantizer_precision(hls_cfg: dict[str, Any], model: Any) -> str | None:
    """The result precision of the first layer when it is an input quantizer (QActivation)."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    if not layers or type(layers[0]).__name__ != "QActivation":
        return None
    prec = hls_cfg["LayerName"].get(layers[0].name, {}).get("Precision", {})
    result = prec.get("result") if isinstance(prec, dict) else prec
    return result if result and result != "auto" else None


#: Keras / QKeras layers with a reuse factor and a strategy (their products can be folded).
WEIGHT_LAYER_CLASSES = layer_kinds.KERAS_WEIGHT_CLASSES


def build_hls_config(cfg: Config, model: Any) -> dict[str, Any]:
    """hls4ml configuration (granularity 'name') with the run's precisions, strategies and RFs."""
    import hls4ml

    hls_cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    names = list(hls_cfg["LayerName"])
    input_name = model.layers[0].name if type(model.layers[0]).__name__ == "InputLayer" else names[0]
    h = cfg.hls
    if h.input_precision == "auto":
        inp = _first_quantizer_precision(hls_cfg, model) or DEFAULT_INPUT_PRECISION
    else:
        inp = h.input_precision
    hls_cfg["LayerName"].setdefault(input_name, {}).setdefault("Precision", {})["result"] = inp
    hls_cfg["Model"]["Strategy"] = h.strategy
    hls_cfg["Model"]["ReuseFactor"] = h.reuse_factor
    dense = [layer.name for layer in model.layers if type(layer).__name__ in WEIGHT_LAYER_CLASSES]
    for table, what in ((h.layer_reuse_factor, "hls.layer_reuse_factor"), (h.layer_strategy, "hls.layer_strategy"),
                        (h.layer_precision, "hls.layer_precision")):
        for name in table:
            if name not in hls_cfg["LayerName"]:
                raise ConfigError(f"{what}.{name}: no layer named {name!r}; layers: {', '.join(names)}")
    for name in dense:
        lc = hls_cfg["LayerName"][name]
        lc["ReuseFactor"] = h.layer_reuse_factor.get(name, h.reuse_factor)
        lc["Strategy"] = h.layer_strategy.get(name, h.strategy)
    for name, precs in h.layer_precision.items():
        p = hls_cfg["LayerName"][name].setdefault("Precision", {})
        if not isinstance(p, dict):
            p = hls_cfg["LayerName"][name]["Precision"] = {"result": p}
        p.update(precs)
    for lc in hls_cfg["LayerName"].values():
        lc["Trace"] = True
    return hls_cfg


def _check_reuse_factors(hls_model: Any, hls_cfg: dict[str, Any]) -> None:
    """Refuse silent reuse-factor replacement: HLS project and RTL must agree on every layer."""
    backend = hls_model.config.backend
    for layer in hls_model.get_layers():
        if layer.class_name == "Dense":
            n_in, n_out = int(layer.get_attr("n_in")), int(layer.get_attr("n_out"))
        elif layer.class_name in layer_kinds.CONV_HLS4ML_CLASSES:  # the per-pixel kernel's matrix
            n_in = int(layer.get_attr("filt_height") or 1) * int(layer.get_attr("filt_width")) * int(layer.get_attr("n_chan"))
            n_out = int(layer.get_attr("n_filt"))
        else:
            continue
        asked = hls_cfg["LayerName"].get(layer.name, {}).get("ReuseFactor")
        got = layer.get_attr("reuse_factor")
        if asked is not None and asked > n_in * n_out:
            raise ConversionError(
                f"layer {layer.name}: reuse factor {asked} exceeds n_in*n_out = {n_in * n_out}; valid: 1..{n_in * n_out}"
            )
        if asked is not None and got != asked:
            valid = backend.get_valid_reuse_factors(n_in, n_out)
            raise ConversionError(
                f"layer {layer.name}: hls4ml's {layer.get_attr('strategy')} strategy does not accept reuse factor "
                f"{asked} (it would silently use {got}); valid for {n_in}x{n_out}: {', '.join(map(str, valid))}",
                hint="pick a valid reuse factor or use the Latency strategy, which accepts any",
            )


#: Layer names hls4ml's ModelGraph reserves for itself (hls4ml/model/layers.py).
RESERVED_NAMES = ("input",)


def _check_reserved_names(model: Any) -> None:
    """hls4ml's ModelGraph reserves some layer names; say which layer to rename."""
    for layer in model.layers:
        if layer.name in RESERVED_NAMES:
            raise ConversionError(
                f"layer {layer.name!r} ({type(layer).__name__}): hls4ml reserves the name(s) "
                f"{', '.join(RESERVED_NAMES)}", hint="rename that layer in the model and save it again",
            )


#: io_type "auto": a convolution whose io_parallel expansion (output pixels x kernel weights) exceeds
#: this many products streams instead
AUTO_STREAM_PRODUCTS = 50_000


def choose_io_type(cfg: Config, model: Any) -> str:
    """``hls.io_type``, with "auto" resolved: io_stream for a model with a convolution too large to
    unroll over its output pixels, provided the streaming RTL builds every one of its layers."""
    if cfg.hls.io_type != "auto":
        return cfg.hls.io_type
    largest = 0
    for layer in model.layers:
        if type(layer).__name__ in layer_kinds.CONV_KERAS_CLASSES:
            pixels = int(np.prod(layer.output_shape[1:-1]))
            largest = max(largest, pixels * int(layer.get_weights()[0].size))  # the (first) kernel
    streamable = all(type(layer).__name__ in layer_kinds.STREAM_KERAS_CLASSES and _streams(layer)
                     for layer in model.layers)
    return "io_stream" if largest > AUTO_STREAM_PRODUCTS and streamable else "io_parallel"


def _streams(layer: Any) -> bool:
    """Whether hls4ml's io_stream implementation takes this layer (its pooling: no padding, stride =
    pool size) and the streaming RTL builds it."""
    if "Pooling" in type(layer).__name__:
        return layer.padding == "valid" and tuple(layer.strides) == tuple(layer.pool_size)
    return int(max(getattr(layer, "dilation_rate", (1,)) or (1,))) == 1


def convert_model(cfg: Config, model: Any, out_dir: Path,
                  compile: bool = True) -> tuple[Any, dict[str, Any], bool]:
    """Convert and (unless ``compile`` is false: graph extraction only) compile the C-sim; return
    (hls4ml ModelGraph, hls config used, softmax stripped)."""
    import hls4ml

    model, stripped = strip_softmax(model) if cfg.hls.strip_softmax else (model, False)
    _check_reserved_names(model)
    hls_cfg = build_hls_config(cfg, model)
    try:
        hls_model = hls4ml.converters.convert_from_keras_model(
            model, hls_config=copy.deepcopy(hls_cfg), backend="Vitis", output_dir=str(out_dir),
            project_name=PROJECT, part=cfg.hls.part, clock_period=cfg.hls.clock_period_ns,
            io_type=choose_io_type(cfg, model),
        )
    except Exception as e:  # hls4ml raises bare exceptions for unsupported layers/types
        raise ConversionError(f"hls4ml could not convert the model: {type(e).__name__}: {e}") from e
    _check_reuse_factors(hls_model, hls_cfg)
    if not compile:
        return hls_model, hls_cfg, stripped
    t0 = time.time()
    cwd = os.getcwd()
    try:
        hls_model.write()
    except Exception as e:
        raise ConversionError(f"hls4ml could not write its project to {out_dir}: {type(e).__name__}: {e}") from e
    finally:
        os.chdir(cwd)
    build_csim_library(Path(out_dir))
    log.info("C-sim compiled in %.1f s", time.time() - t0)
    return hls_model, hls_cfg, stripped


def agreement(reference: np.ndarray, csim: np.ndarray) -> dict[str, Any]:
    """How C-sim outputs agree with a reference (exact rows, argmax, max error)."""
    reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    csim = np.asarray(csim, dtype=np.float64).reshape(len(csim), -1)
    exact = np.all(reference == csim, axis=1)
    return {
        "rows": int(len(reference)), "exact_rows": int(exact.sum()),
        "exact_outputs": int((reference == csim).sum()), "outputs": int(reference.size),
        "argmax_agree": int((reference.argmax(1) == csim.argmax(1)).sum()),
        "max_abs_err": float(np.max(np.abs(reference - csim))) if reference.size else 0.0,
    }


def on_grid_inputs(graph: hwgraph.Graph, x: np.ndarray) -> np.ndarray:
    """Quantize real inputs to the input type's codes (TRN/WRAP as hls4ml's input conversion)."""
    from codesign.fixedpoint import cast

    t = graph.input_type
    hi = np.floor(np.asarray(x, dtype=np.float64) * 2.0 ** 40).astype(np.int64)
    return cast(hi, 40, t.with_modes("TRN", "SAT"))


def in_range_codes(graph: hwgraph.Graph, n: int, seed: int) -> np.ndarray:
    """Inputs a model trained elsewhere expects: N(0, 1) features for a signed input type (as
    normalised features are), uniform over the type for an unsigned one; on the input grid."""
    t = graph.input_type
    rng = np.random.default_rng(seed)
    if t.signed:
        x = rng.standard_normal((n, graph.n_in))
        return on_grid_inputs(graph, np.clip(x, t.to_real(t.min_code), t.to_real(t.max_code)))
    return rng.integers(t.min_code, t.max_code + 1, size=(n, graph.n_in), dtype=np.int64)


def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The 'hls' stage."""
    from codesign.csim import CSim
    from codesign.model_io import load_model, model_input

    model_res = require(run_dir, "model", "convert")
    model = load_model(Path(run_dir) / "model" / model_res.get("model_file", "model.h5"))
    ptq_record = None
    if cfg.hls.ptq.enabled:  # the chosen types become hls.layer_precision / hls.input_precision
        cfg, ptq_record = _post_training_quantization(cfg, model, Path(run_dir), model_res)
    with stage_dir(run_dir, "hls") as out:
        t0 = time.time()
        hls_model, hls_cfg, stripped = convert_model(cfg, model, out)
        (out / "hls_config.yml").write_text(yaml.safe_dump(hls_cfg, sort_keys=True))
        graph = layer_kinds.from_hls4ml(hls_model, softmax_stripped=stripped)
        graph.save(out / "graph.json")
        result: dict[str, Any] = {
            "project": PROJECT, "backend": "Vitis", "part": cfg.hls.part,
            "clock_period_ns": cfg.hls.clock_period_ns, "softmax_stripped": stripped,
            "input_type": str(graph.input_type), "output_type": str(graph.output_type),
            "layers": [
                {"name": layer.name, "class": layer.source, "kind": layer.kind, "n_in": layer.n_in,
                 "n_out": layer.n_out, "reuse_factor": layer.reuse_factor, "strategy": layer.strategy,
                 "out_type": str(layer.out_type),
                 "accum_type": str(layer.accum_type) if layer.accum_type else None}
                for layer in graph.layers
            ],
        }
        data_file = Path(run_dir) / "model" / "data.npz"
        keras_model, _ = strip_softmax(model) if stripped else (model, False)
        labels = None
        if model_res.get("has_data") and data_file.is_file():
            data = np.load(data_file)
            codes, labels, inputs = on_grid_inputs(graph, data["X_test"]), data["y_test"], "test set"
        else:  # an imported model without data: random in-range codes
            codes, inputs = in_range_codes(graph, AGREEMENT_VECTORS, seed=0), "random in-range on-grid"
        x = graph.input_type.to_real(codes)
        ref = np.asarray(keras_model.predict(model_input(keras_model, x), verbose=0, batch_size=1024)).reshape(len(x), -1)
        # the compiled library in a child process: an ap_fixed assertion abort is a clear error here
        csim = CSim.for_graph(out, graph)
        cs = graph.output_type.to_real(csim.predict_codes(codes))
        result["csim_vs_qkeras"] = dict(agreement(ref, cs), inputs=inputs)
        if labels is not None:
            result["csim_accuracy"] = float(np.mean(cs.argmax(1) == labels))
            result["qkeras_accuracy_on_grid"] = float(np.mean(ref.argmax(1) == labels))
        if ptq_record is not None:
            write_json(out / "ptq.json", ptq_record)
            result["ptq"] = {k: ptq_record[k] for k in ("calibration", "target_drop", "mixed_precision",
                                                        "uniform_frac_bits", "frac_bits", "input_precision",
                                                        "layer_precision", "float_accuracy_calibration",
                                                        "accuracy_calibration", "drop_calibration")}
        result["csim_library"] = f"firmware/{PROJECT}-csim.so"
        result["convert_seconds"] = round(time.time() - t0, 2)
        write_json(out / "result.json", result)
    return result


def build_csim_library(hls_dir: Path) -> Path:
    """Compile hls4ml's C-sim library ``firmware/<project>-csim.so`` once, location-independent.

    hls4ml's ``compile()`` runs its ``build_lib.sh``, which bakes the absolute weights directory into
    the library (``-D WEIGHTS_DIR``; the C-sim reads its weights from text files at first call and
    exits when they are missing). The stage writes into a temporary directory and renames it at the
    end, so that library would be useless afterwards and had to be compiled a second time. The
    same script with the same compiler and flags is run instead with two changes: the weights
    directory is relative (:class:`codesign.csim.CSim` runs the library with the project as its
    working directory) and the two translation units compile in parallel.
    """
    import re

    from codesign.proc import run as proc_run

    script = (hls_dir / "build_lib.sh").read_text()
    script, n_dir = re.subn(r"^WEIGHTS_DIR=.*$", lambda _: 'WEIGHTS_DIR="\\"firmware/weights\\""', script, flags=re.M)
    lines, n_units = [], 0
    for line in script.splitlines():
        if " -c " in line and line.startswith("${CC}"):
            line, n_units = f"{line} & pids+=($!)", n_units + 1
        elif " -shared " in line:
            lines.append('for p in "${pids[@]}"; do wait "$p"; done')
            line = line.replace("-o firmware/${PROJECT}-${LIB_STAMP}.so", "-o firmware/${PROJECT}-csim.so")
        lines.append(line)
    script = "\n".join(lines) + "\n"
    if n_dir != 1 or n_units != 2 or "-csim.so" not in script:
        raise ConversionError(f"unexpected hls4ml build_lib.sh in {hls_dir}: cannot build the C-sim library")
    builder = hls_dir / ".build_csim.sh"
    builder.write_text(script)
    log_path = hls_dir / "csim_build.log"
    with open(log_path, "w") as log_file:
        proc = proc_run(["bash", builder.name], cwd=hls_dir, stdout=log_file, stderr=subprocess.STDOUT)
    builder.unlink()
    if proc.returncode != 0:
        raise ConversionError(f"hls4ml C-sim compilation failed (exit {proc.returncode}); see {log_path}")
    return hls_dir / "firmware" / f"{PROJECT}-csim.so"


def _post_training_quantization(cfg: Config, model: Any, run_dir: Path,
                                model_res: dict[str, Any]) -> tuple[Config, dict[str, Any]]:
    """hls.ptq: the float model's per-layer types (codesign.ptq), calibrated on the data set's
    training inputs when the imported model has a matching data set, else on random in-range inputs."""
    x_train = y_train = None
    data_file = run_dir / "model" / "data.npz"
    if model_res.get("has_data") and data_file.is_file():
        data = np.load(data_file)
        x_train, y_train = data["X_train"], data["y_train"]
    return post_training_quantization(cfg, model, x_train, y_train)


def post_training_quantization(cfg: Config, model: Any, x_train: np.ndarray | None = None,
                               y_train: np.ndarray | None = None) -> tuple[Config, dict[str, Any]]:
    """:func:`codesign.ptq.quantize` with this module's conversion steps (hls.ptq): the configuration
    with the chosen types and the record of the choice."""
    from codesign import ptq

    steps = ptq.Hls4mlSteps(convert_model=convert_model, on_grid_inputs=on_grid_inputs, strip_softmax=strip_softmax)
    return ptq.quantize(cfg, model, x_train, y_train, steps=steps)
