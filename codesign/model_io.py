"""Load a user's Keras / QKeras model and check that the flow can build hardware for it.

Formats: a full Keras 2 ``.h5`` (``model.save``), or a ``.json`` architecture (``model.to_json``)
plus a Keras 2 ``save_weights`` ``.h5``. QKeras layers and quantizers and tfmot pruning wrappers
load; pruning wrappers are stripped. Every layer is checked against :data:`SUPPORTED_LAYERS` at
load time, so an unsupported model fails here with the layer's name instead of deep inside hls4ml.

``import_model`` is the "model" stage for an imported model: it writes ``<run>/model/`` with the
same files and result keys as training (``source: "imported"``).

Data sets are always flat, (samples, features); a CNN takes images. :func:`model_input` is the one
place that turns flat rows into the model's input shape (row-major, channels last).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from codesign import layers as layer_kinds
from codesign import rundir
from codesign.config import Config
from codesign.errors import DataError, ModelImportError

#: Layer classes the flow can convert: the layer kinds' Keras classes (Dropout is the identity at inference).
SUPPORTED_LAYERS = ("InputLayer", *layer_kinds.KERAS_CLASSES)
CONV_LAYERS = layer_kinds.conv.KIND.keras_classes
POOL_LAYERS = layer_kinds.pool.KIND.keras_classes
DENSE_LAYERS = layer_kinds.dense.KIND.keras_classes
#: Activation functions accepted in Activation layers and as Dense/QDense ``activation``.
SUPPORTED_ACTIVATIONS = ("linear", "relu", "softmax")
#: Quantizers accepted in QActivation layers.
SUPPORTED_ACTIVATION_QUANTIZERS = ("quantized_bits", "quantized_relu", "quantized_po2")
#: Quantizers accepted for QDense / QConv2D kernels and biases (None: float).
SUPPORTED_WEIGHT_QUANTIZERS = ("quantized_bits", "quantized_po2")
H5_SUFFIXES = (".h5", ".hdf5")


# ----------------------------------------------------------------------------- input shape

def model_input(model: Any, X: Any) -> np.ndarray:
    """``X`` shaped for the model's input: flat rows (samples, features) are reshaped (row-major,
    channels last) to (samples, *input_shape); an ``X`` already of that shape passes unchanged.

    ``model`` is a Keras model or its per-sample input shape, e.g. (8, 8, 1) or (64,).

    Raises:
        DataError: X cannot be laid out as the model's input (naming both shapes).
    """
    shape = _input_shape(model)
    X = np.asarray(X)
    if X.shape[1:] == shape:
        return X
    if X.ndim == 2 and X.shape[1] == math.prod(shape):
        return X.reshape((X.shape[0], *shape))
    raise DataError(
        f"data of shape {X.shape} does not fit the model's input shape {(None, *shape)}: expected "
        f"(samples, {', '.join(map(str, shape))}) or flat (samples, {math.prod(shape)})")


def _input_shape(model: Any) -> tuple[int, ...]:
    if isinstance(model, (tuple, list)):
        return tuple(int(d) for d in model)
    return tuple(int(d) for d in model.inputs[0].shape[1:])


# ----------------------------------------------------------------------------- loading

def load_model(path: str | Path, weights_path: str | Path | None = None) -> Any:
    """Load a supported Keras/QKeras model from ``.h5``, or ``.json`` plus ``weights_path``.

    Raises:
        ModelImportError: missing or unreadable file, not a model, weights that do not fit the
            architecture (naming the layer), or a layer the flow does not support.
    """
    path = Path(path)
    _require_file(path, "model file")
    if weights_path is not None:
        _require_file(Path(weights_path), "weights file")
    suffix = path.suffix.lower()
    if suffix in H5_SUFFIXES:
        model = _load_h5(path)
    elif suffix == ".json":
        if weights_path is None:
            raise ModelImportError(
                f"{path}: a .json file holds only the architecture; give its weights (.h5) as "
                "model.weights_path")
        model = _load_json(path)
    else:
        raise ModelImportError(
            f"{path}: unsupported model file type {path.suffix!r}; valid: a Keras 2 .h5/.hdf5 model, "
            "or a .json architecture with a weights .h5")
    if weights_path is not None:
        load_weights(model, Path(weights_path))
    model = _strip_pruning(model)
    check_supported(model, path)
    return model


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise ModelImportError(f"{what} {path} does not exist")


def custom_objects() -> dict[str, Any]:
    """QKeras layers and quantizers, as Keras needs them to deserialise a QKeras model."""
    from qkeras.utils import _add_supported_quantized_objects

    objects: dict[str, Any] = {}
    _add_supported_quantized_objects(objects)
    return objects


def _load_h5(path: Path) -> Any:
    import h5py
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    try:
        with h5py.File(path, "r") as f:
            has_config = "model_config" in f.attrs
    except OSError as e:
        raise ModelImportError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {e}") from e
    if not has_config:
        raise ModelImportError(
            f"{path}: holds no model architecture (a save_weights file?); give the architecture "
            "as a .json in model.import_path and this file as model.weights_path")
    try:
        with tfmot.sparsity.keras.prune_scope():
            return tf.keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ModelImportError(f"{path}: cannot load the model: {_short(e)}",
                               hint=f"supported layers: {', '.join(SUPPORTED_LAYERS)}") from e


def _load_json(path: Path) -> Any:
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    try:
        spec = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelImportError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(spec, dict) or "class_name" not in spec or "config" not in spec:
        raise ModelImportError(
            f"{path}: JSON is not a Keras model (expected an object with 'class_name' and 'config', "
            "as written by model.to_json())")
    if spec["class_name"] not in ("Sequential", "Functional", "Model"):
        raise ModelImportError(
            f"{path}: JSON describes a {spec['class_name']!r}, not a model (Sequential or Functional)")
    try:
        with tfmot.sparsity.keras.prune_scope():
            return tf.keras.models.model_from_json(json.dumps(_mark_passive(spec)),
                                                   custom_objects=custom_objects())
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ModelImportError(f"{path}: cannot build the model: {_short(e)}",
                               hint=f"supported layers: {', '.join(SUPPORTED_LAYERS)}") from e


def _mark_passive(spec: dict[str, Any]) -> dict[str, Any]:
    """Make Keras 2.14 ``to_json`` output of QActivation loadable.

    Keras 2.14 writes a QActivation's quantizer as a nested object dict that QKeras' ``__init__``
    does not deserialise (it keeps the dict and the layer fails to build); the legacy marker
    ``__passive_serialization__`` makes Keras turn the dict into the quantizer first.
    """
    layers = spec.get("config", {}).get("layers", []) if isinstance(spec.get("config"), dict) else []
    for layer in layers if isinstance(layers, list) else []:
        act = layer.get("config", {}).get("activation") if isinstance(layer, dict) else None
        if layer.get("class_name") == "QActivation" and isinstance(act, dict) and "class_name" in act:
            act["__passive_serialization__"] = True
    return spec


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _strip_pruning(model: Any) -> Any:
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

    if any(isinstance(layer, PruneLowMagnitude) for layer in model.layers):
        return tfmot.sparsity.keras.strip_pruning(model)
    return model


# ----------------------------------------------------------------------------- weights

def load_weights(model: Any, path: Path) -> None:
    """Load a save_weights .h5 by layer name, after checking every layer's names and shapes.

    Keras itself loads by position and reports mismatches by index; this names the layer.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            saved = _saved_shapes(root)
    except OSError as e:
        raise ModelImportError(f"{path}: not a readable HDF5 weights file (truncated or corrupt?): {e}") from e
    except KeyError as e:
        raise ModelImportError(f"{path}: not a Keras weights file (missing {e})") from e
    _check_weights(model, saved, path)
    try:
        model.load_weights(path, by_name=True)
    except (OSError, ValueError) as e:
        raise ModelImportError(f"{path}: cannot load weights: {_short(e)}") from e


def _saved_shapes(root: Any) -> dict[str, list[tuple[int, ...]]]:
    """Layer name -> shapes of its saved weights, in saved order."""
    if "layer_names" not in root.attrs:
        raise KeyError("'layer_names' attribute")
    out: dict[str, list[tuple[int, ...]]] = {}
    for raw in root.attrs["layer_names"]:
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        group = root[name]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
        out[name] = [tuple(group[n].shape) for n in names]
    return out


def _check_weights(model: Any, saved: dict[str, list[tuple[int, ...]]], path: Path) -> None:
    for layer in model.layers:
        expected = [tuple(int(d) for d in w.shape) for w in layer.weights]
        if not expected:
            continue
        what = f"layer {layer.name!r} ({type(layer).__name__})"
        if layer.name not in saved or not saved[layer.name]:
            have = ", ".join(n for n, s in saved.items() if s) or "none"
            raise ModelImportError(
                f"{path}: has no weights for {what}; the file has weights for layers: {have}",
                hint="is this the weights file of another model?")
        if saved[layer.name] != expected:
            raise ModelImportError(
                f"{path}: weights of {what} have shapes {saved[layer.name]}, the architecture "
                f"needs {expected}", hint="is this the weights file of another model?")


# ----------------------------------------------------------------------------- support check

def check_supported(model: Any, source: Path | str) -> None:
    """Refuse any layer, activation or quantizer the flow cannot build, naming the layer."""
    for layer in model.layers:
        _check_layer(layer, source)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelImportError(f"{source}: the model has {len(model.inputs)} inputs and "
                               f"{len(model.outputs)} outputs; the flow supports one of each")
    shape = tuple(model.inputs[0].shape)
    has_conv = any(type(layer).__name__ in CONV_LAYERS for layer in model.layers)
    if len(shape) != 2 and not (len(shape) in (3, 4) and has_conv):
        raise ModelImportError(f"{source}: input shape {shape[1:]} is not a flat vector; the flow "
                               "supports Dense networks with a 1-D input and Conv1D / Conv2D networks with a "
                               "channels-last (length, channels) / (height, width, channels) input")
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in DENSE_LAYERS and len(layer.input_shape) != 2:
            raise ModelImportError(
                f"{source}: layer {layer.name!r} ({kind}) gets a {len(layer.input_shape) - 1}-D input "
                f"{tuple(layer.input_shape[1:])}; Dense layers need a flat one (put a Flatten before it)")


def _check_layer(layer: Any, source: Path | str) -> None:
    kind = type(layer).__name__
    where = f"{source}: layer {layer.name!r} ({kind})"
    if kind not in SUPPORTED_LAYERS:
        raise ModelImportError(
            f"{where} is not supported; supported layer classes: {', '.join(SUPPORTED_LAYERS)}")
    if kind in DENSE_LAYERS or kind == "Activation" or kind in CONV_LAYERS:
        act = _activation_name(layer.activation)
        if act not in SUPPORTED_ACTIVATIONS:
            raise ModelImportError(
                f"{where}: activation {act!r} is not supported; valid: {', '.join(SUPPORTED_ACTIVATIONS)}")
    if kind in CONV_LAYERS or kind in POOL_LAYERS:
        _check_window(layer, where)
    if kind.startswith("Q") and kind in layer_kinds.KERAS_WEIGHT_CLASSES:  # QKeras kernel layers
        for attr in ("kernel_quantizer_internal", "bias_quantizer_internal"):
            q = getattr(layer, attr, None)
            if q is not None and type(q).__name__ not in SUPPORTED_WEIGHT_QUANTIZERS:
                raise ModelImportError(
                    f"{where}: {attr.split('_quantizer')[0]} quantizer {type(q).__name__!r} is not "
                    f"supported; valid: {', '.join(SUPPORTED_WEIGHT_QUANTIZERS)}")
    if kind == "QActivation":
        q = layer.quantizer
        if type(q).__name__ not in SUPPORTED_ACTIVATION_QUANTIZERS:
            raise ModelImportError(
                f"{where}: activation quantizer {_activation_name(q)!r} is not supported; valid: "
                f"{', '.join(SUPPORTED_ACTIVATION_QUANTIZERS)}")
    if kind == "ReLU":
        cfg = layer.get_config()
        if cfg.get("max_value") is not None or cfg.get("negative_slope", 0) or cfg.get("threshold", 0):
            raise ModelImportError(f"{where}: only a plain ReLU is supported (max_value None, "
                                   f"negative_slope 0, threshold 0); got {cfg}")


def _check_window(layer: Any, where: str) -> None:
    """Conv / pooling: channels last, "valid" or "same" padding; convs also undilated, one group."""
    c = layer.get_config()
    bad = []
    dilation = c.get("dilation_rate", 1)
    if any(int(d) != 1 for d in (dilation if isinstance(dilation, (list, tuple)) else [dilation])):
        bad.append(f"dilation_rate {dilation} (need 1)")
    if c.get("groups", 1) != 1:
        bad.append(f"groups {c['groups']} (need 1)")
    if c.get("data_format", "channels_last") not in ("channels_last", None):
        bad.append(f"data_format {c['data_format']!r} (need 'channels_last')")
    if c.get("padding", "valid") not in ("valid", "same"):
        bad.append(f"padding {c.get('padding')!r} (need 'valid' or 'same')")
    if bad:
        raise ModelImportError(f"{where}: unsupported {'; '.join(bad)}")


def _activation_name(act: Any) -> str:
    name = getattr(act, "__name__", None)
    return str(name) if name else type(act).__name__


# ----------------------------------------------------------------------------- the stage

def import_model(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The "model" stage for ``model.import_path``: re-save, measure, and attach data if it fits."""
    from codesign.model_stats import layer_stats, totals

    if not cfg.model.import_path:
        raise ModelImportError("model.import_path is not set; nothing to import")
    model = load_model(cfg.model.import_path, cfg.model.weights_path)
    n_in, n_out = math.prod(_input_shape(model)), int(model.outputs[0].shape[-1])
    data, data_note = _matching_data(cfg, n_in)
    with rundir.stage_dir(Path(run_dir), "model") as out:
        model.save(out / "model.h5")
        layers = layer_stats(model)
        result: dict[str, Any] = {
            "source": "imported",
            "import_path": str(cfg.model.import_path),
            "weights_path": str(cfg.model.weights_path) if cfg.model.weights_path else None,
            "model_file": "model.h5",
            "n_features": n_in,
            "input_shape": list(_input_shape(model)),
            "n_outputs": n_out,
            "has_data": data is not None,
            "data_file": None,
            "data_note": data_note,
            "test_accuracy": None,
            "layers": layers,
            **totals(layers),
        }
        if data is not None:
            np.savez(out / "data.npz", X_train=data.X_train, y_train=data.y_train,
                     X_test=data.X_test, y_test=data.y_test)
            result.update(data_file="data.npz", dataset=data.name, n_classes=data.n_classes,
                          n_train=len(data.X_train), n_test=len(data.X_test),
                          test_accuracy=_accuracy(model, data, n_out))
        rundir.write_json(out / "result.json", result)
    return result


def _matching_data(cfg: Config, n_in: int) -> tuple[Any, str]:
    """The configured data set if its feature count equals the model's input size, and why (not)."""
    from codesign.data import load_dataset

    data = load_dataset(cfg.data, cfg.training.seed)  # a broken user file is an error, not "no data"
    if data.n_features != n_in:
        return None, (f"data set {data.name!r} has {data.n_features} features but the model takes "
                      f"{n_in} inputs; later stages use random on-grid vectors only")
    return data, f"data set {data.name!r} matches the model's {n_in} inputs"


def _accuracy(model: Any, data: Any, n_out: int) -> float | None:
    """Test accuracy, or None when the labels do not index the model's outputs."""
    if int(max(data.y_test.max(), data.y_train.max())) >= n_out:
        return None
    logits = model.predict(model_input(model, data.X_test), batch_size=1024, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == data.y_test))
