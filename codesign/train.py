"""The "model" stage when training: a pruned, quantization-aware QKeras MLP on the configured data.

Layer names are a contract with later stages and with ``model.layer_bits``:
``inq`` (input quantizer), ``dense_0 .. dense_N`` (QDense; the last one gives logits, no
activation) and ``relu_0 .. relu_{N-1}`` (quantized ReLU after each hidden QDense).

Pruning: tfmot magnitude pruning (PolynomialDecay) of the QDense kernels, or structured pruning
of whole hidden neurons (kernel column + bias, and the now dead row of the next kernel) by L2 norm,
applied as a mask after every batch. With ``pruning.rounds`` > 1 the target is reached in equal
steps, each round training ``training.epochs`` epochs (iterative prune / fine-tune).
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from codesign import rundir
from codesign.config import Config
from codesign.data import Dataset, load_dataset
from codesign.errors import ConfigError

log = logging.getLogger(__name__)

#: Integer bits of the unsigned input quantizer: 1 so that 1.0 (a full-scale k/16 input) fits.
INPUT_INTEGER_BITS = 1
#: Fraction of each round's steps over which the sparsity ramps up; the rest fine-tunes.
RAMP_FRACTION = 0.5


def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """Train, prune and save the model; write ``<run_dir>/model/`` atomically and return result.json."""
    _seed_everything(cfg.training.seed)
    data = load_dataset(cfg.data, cfg.training.seed)
    _check_layer_bits(cfg)
    t0 = time.perf_counter()
    model = _train(cfg, data)
    train_seconds = time.perf_counter() - t0
    with rundir.stage_dir(Path(run_dir), "model") as out:
        model.save(out / "model.h5")
        np.savez(out / "data.npz", X_train=data.X_train, y_train=data.y_train,
                 X_test=data.X_test, y_test=data.y_test)
        result = _result(cfg, model, data, train_seconds)
        rundir.write_json(out / "result.json", result)
    return result


# ----------------------------------------------------------------------------- determinism

def _seed_everything(seed: int) -> None:
    """Same seed, same model: python, numpy and TF seeds plus deterministic TF ops on CPU."""
    import tensorflow as tf

    tf.keras.backend.clear_session()  # fresh graph and layer-name counters for every run
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    random.seed(seed)
    np.random.seed(seed)
    tf.keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except (AttributeError, RuntimeError) as e:  # older TF, or already initialised
        log.warning("could not enable TF op determinism: %s", e)


# ----------------------------------------------------------------------------- architecture

def layer_bits(cfg: Config, name: str) -> int:
    """Bit width of a named layer: ``model.layer_bits[name]`` else ``model.bits``."""
    return cfg.model.layer_bits.get(name, cfg.model.bits)


def layer_names(cfg: Config) -> list[str]:
    """Names of the quantized layers, in order: inq, dense_0, relu_0, ..., dense_N."""
    n = len(cfg.model.hidden)
    return ["inq"] + [name for i in range(n) for name in (f"dense_{i}", f"relu_{i}")] + [f"dense_{n}"]


def _check_layer_bits(cfg: Config) -> None:
    """A misspelt layer_bits key would silently be ignored: refuse it, listing the real names."""
    valid = layer_names(cfg)[1:]
    for name in cfg.model.layer_bits:
        if name not in valid:
            raise ConfigError(f"model.layer_bits.{name}: no such layer in this model; valid: {', '.join(valid)}",
                              hint="the input quantizer's width is model.input_bits")


def _layers(cfg: Config, n_classes: int) -> list[Any]:
    """The layer instances in order (inq, dense_0, relu_0, ..., dense_N), unbuilt."""
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    m = cfg.model
    layers: list[Any] = [QActivation(
        quantized_bits(m.input_bits, INPUT_INTEGER_BITS, keep_negative=False, alpha=1), name="inq")]
    widths = [*m.hidden, n_classes]
    for i, width in enumerate(widths):
        b = layer_bits(cfg, f"dense_{i}")
        layers.append(QDense(
            width,
            kernel_quantizer=quantized_bits(b, m.integer_bits, alpha=1),
            bias_quantizer=quantized_bits(b, m.integer_bits, alpha=1),
            kernel_initializer="lecun_uniform",
            name=f"dense_{i}",
        ))
        if i < len(widths) - 1:
            layers.append(QActivation(quantized_relu(layer_bits(cfg, f"relu_{i}")), name=f"relu_{i}"))
    return layers


def _connect(n_features: int, layers: list[Any], wrap: Any = None) -> Any:
    """A functional model over existing layer instances; ``wrap`` optionally wraps each QDense."""
    import tensorflow as tf
    from qkeras import QDense

    inp = tf.keras.Input(shape=(n_features,), name="x_in")  # "input" is reserved in hls4ml
    x = inp
    for layer in layers:
        x = (wrap(layer) if wrap is not None and isinstance(layer, QDense) else layer)(x)
    return tf.keras.Model(inp, x, name="mlp")


def _compile(model: Any, lr: float) -> None:
    import tensorflow as tf

    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=lr),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


# ----------------------------------------------------------------------------- training

def _train(cfg: Config, data: Dataset) -> Any:
    """Build, train and prune; return the stripped QKeras model."""
    layers = _layers(cfg, data.n_classes)
    target, rounds = cfg.pruning.target_sparsity, cfg.pruning.rounds
    if target <= 0.0:
        model = _connect(data.n_features, layers)
        _fit(cfg, model, data, [])
        return model
    if cfg.pruning.structured:
        return _train_structured(cfg, data, layers)
    return _train_magnitude(cfg, data, layers)


def _steps_per_epoch(cfg: Config, data: Dataset) -> int:
    return math.ceil(len(data.X_train) / cfg.training.batch_size)


def _fit(cfg: Config, model: Any, data: Dataset, callbacks: list[Any]) -> None:
    _compile(model, cfg.training.learning_rate)
    model.fit(data.X_train, data.y_train, epochs=cfg.training.epochs, batch_size=cfg.training.batch_size,
              shuffle=True, verbose=0, callbacks=callbacks)


def _round_targets(target: float, rounds: int) -> list[tuple[float, float]]:
    """(start, end) sparsity of each round: the target in equal steps."""
    return [(target * r / rounds, target * (r + 1) / rounds) for r in range(rounds)]


def _prune_steps(steps_per_epoch: int, epochs: int) -> tuple[int, int]:
    """(frequency, end_step) of the mask updates: end_step is a multiple of frequency inside the
    ramp, so the last update really applies the round's final sparsity (tfmot only updates on
    steps where (step - begin) % frequency == 0 and step <= end_step)."""
    ramp = max(1, int(steps_per_epoch * epochs * RAMP_FRACTION))
    frequency = max(1, min(steps_per_epoch, ramp // 8))
    return frequency, frequency * max(1, ramp // frequency)


def _train_magnitude(cfg: Config, data: Dataset, layers: list[Any]) -> Any:
    """tfmot low-magnitude pruning, re-wrapped each round so each round ramps start -> end."""
    import tensorflow_model_optimization as tfmot

    sparsity = tfmot.sparsity.keras
    frequency, end_step = _prune_steps(_steps_per_epoch(cfg, data), cfg.training.epochs)
    model = None
    for start, end in _round_targets(cfg.pruning.target_sparsity, cfg.pruning.rounds):
        schedule = sparsity.PolynomialDecay(initial_sparsity=start, final_sparsity=end,
                                            begin_step=0, end_step=end_step, frequency=frequency)

        def wrap(layer: Any, schedule: Any = schedule) -> Any:
            return sparsity.prune_low_magnitude(layer, pruning_schedule=schedule)

        model = _connect(data.n_features, layers, wrap)
        _fit(cfg, model, data, [sparsity.UpdatePruningStep()])
        _apply_masks(model)
        model = sparsity.strip_pruning(model)
    return _connect(data.n_features, layers)


def _apply_masks(model: Any) -> None:
    """Zero the pruned weights once more: tfmot masks them before each forward pass, so the last
    optimizer step (Adam momentum) leaves them slightly nonzero, and strip_pruning keeps that."""
    for layer in model.layers:
        for weight, mask, _threshold in getattr(layer, "pruning_vars", []):
            weight.assign(weight * mask)


def _train_structured(cfg: Config, data: Dataset, layers: list[Any]) -> Any:
    """Neuron pruning: a mask callback removes the lowest-L2 hidden neurons, ramping each round."""
    from qkeras import QDense

    model = _connect(data.n_features, layers)
    dense = [layer for layer in layers if isinstance(layer, QDense)]
    masker = NeuronMask(dense, ramp_epochs=max(1, int(cfg.training.epochs * RAMP_FRACTION)))
    for start, end in _round_targets(cfg.pruning.target_sparsity, cfg.pruning.rounds):
        masker.set_round(start, end)
        _fit(cfg, model, data, [masker])
    masker.apply()
    return model


def _neuron_mask_callback_base() -> type:
    import tensorflow as tf

    return tf.keras.callbacks.Callback


class NeuronMask(_neuron_mask_callback_base()):  # type: ignore[misc]
    """Zero the lowest-L2-norm hidden neurons of each QDense layer (never the output layer's).

    Pruning neuron j of layer i zeroes kernel column j and bias j of layer i and kernel row j of
    layer i+1 (its input is always 0 then). Pruned neurons stay pruned; the pruned fraction rises
    linearly from the round's start to its end over ``ramp_epochs`` epochs, re-chosen per epoch.
    """

    def __init__(self, dense: list[Any], ramp_epochs: int) -> None:
        super().__init__()
        self.dense = dense
        self.ramp_epochs = ramp_epochs
        self.keep = [np.ones(int(d.units), dtype=bool) for d in dense[:-1]]
        self.start = self.end = 0.0

    def set_round(self, start: float, end: float) -> None:
        self.start, self.end = start, end

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        frac = self.end if epoch >= self.ramp_epochs else (
            self.start + (self.end - self.start) * (epoch + 1) / self.ramp_epochs)
        for i, d in enumerate(self.dense[:-1]):
            self.keep[i] = self._choose(d, self.keep[i], frac)
        self.apply()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.apply()

    @staticmethod
    def _choose(layer: Any, keep: np.ndarray, frac: float) -> np.ndarray:
        """Prune the smallest-norm live columns until ``frac`` of them are gone (at least one stays)."""
        n_prune = min(int(round(frac * layer.units)), layer.units - 1)
        if n_prune <= int((~keep).sum()):
            return keep
        kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
        norms = np.sqrt((kernel ** 2).sum(axis=0) + bias ** 2)
        norms[~keep] = -1.0  # already pruned: stay pruned
        new = np.ones_like(keep)
        new[np.argsort(norms, kind="stable")[:n_prune]] = False
        return new

    def apply(self) -> None:
        for i, d in enumerate(self.dense):
            col = self.keep[i] if i < len(self.keep) else np.ones(int(d.units), dtype=bool)
            row = self.keep[i - 1] if i > 0 else np.ones(int(d.kernel.shape[0]), dtype=bool)
            d.kernel.assign(d.kernel.numpy() * np.outer(row, col).astype(np.float32))
            d.bias.assign(d.bias.numpy() * col.astype(np.float32))


# ----------------------------------------------------------------------------- metrics

def quantized_weights(layer: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """The kernel and bias as the hardware sees them (after the layer's quantizers)."""
    weights = layer.get_weights()
    kernel, bias = weights[0], (weights[1] if len(weights) > 1 else None)
    kq = getattr(layer, "kernel_quantizer_internal", None)
    bq = getattr(layer, "bias_quantizer_internal", None)
    if kq is not None:
        kernel = np.asarray(kq(kernel.astype(np.float32)))
    if bias is not None and bq is not None:
        bias = np.asarray(bq(bias.astype(np.float32)))
    return kernel, bias


def _result(cfg: Config, model: Any, data: Dataset, train_seconds: float) -> dict[str, Any]:
    logits = model.predict(data.X_test, batch_size=1024, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=1) == data.y_test))
    layers = layer_stats(model)
    return {
        "source": "trained",
        "model_file": "model.h5",
        "data_file": "data.npz",
        "has_data": True,
        "dataset": data.name,
        "n_features": data.n_features,
        "n_classes": data.n_classes,
        "n_train": len(data.X_train),
        "n_test": len(data.X_test),
        "test_accuracy": accuracy,
        "train_seconds": train_seconds,
        "seed": cfg.training.seed,
        "epochs_total": cfg.training.epochs * (cfg.pruning.rounds if cfg.pruning.target_sparsity > 0 else 1),
        "pruning": {"target_sparsity": cfg.pruning.target_sparsity, "structured": cfg.pruning.structured,
                    "rounds": cfg.pruning.rounds},
        "layers": layers,
        **totals(layers),
    }


def layer_stats(model: Any) -> list[dict[str, Any]]:
    """Per-layer name, kind, bits, weights, nonzero, sparsity, input_bits (weights: kernel only).

    ``nonzero`` counts kernel entries that are nonzero *after quantization* (what the hardware
    multiplies); ``bits`` is the weight quantizer's width (activations: the output width; float
    layers: None). ``input_bits`` is the width of the value entering the layer, None if unknown.
    """
    stats: list[dict[str, Any]] = []
    in_bits: int | None = None
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        bits = _quantizer_bits(layer)
        entry: dict[str, Any] = {"name": layer.name, "kind": kind, "bits": bits, "input_bits": in_bits,
                                 "weights": 0, "nonzero": 0, "sparsity": None}
        if kind in ("Dense", "QDense"):
            kernel, _ = quantized_weights(layer)
            entry["weights"] = int(kernel.size)
            entry["nonzero"] = int(np.count_nonzero(kernel))
            entry["sparsity"] = 1.0 - entry["nonzero"] / max(1, entry["weights"])
        stats.append(entry)
        # Only a quantizer fixes the width of what the next layer sees; Dropout passes it through.
        if kind == "QActivation":
            in_bits = bits
        elif kind != "Dropout":
            in_bits = None
    return stats


def _quantizer_bits(layer: Any) -> int | None:
    """Width of the layer's weight quantizer (QDense) or activation quantizer (QActivation)."""
    q = getattr(layer, "kernel_quantizer_internal", None)
    if q is None and type(layer).__name__ == "QActivation":
        q = getattr(layer, "quantizer", None)
    bits = getattr(q, "bits", None)
    return int(bits) if bits is not None else None


def totals(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Global weight sparsity and BOPs over the dense layers.

    BOPs = sum over dense layers of nonzero_weights * weight_bits * input_bits: one b_w x b_a
    multiply per nonzero weight per inference, accumulations not counted. None when a dense
    layer's weight or input width is unknown (float layers).
    """
    dense = [e for e in layers if e["kind"] in ("Dense", "QDense")]
    weights = sum(e["weights"] for e in dense)
    nonzero = sum(e["nonzero"] for e in dense)
    known = all(e["bits"] is not None and e["input_bits"] is not None for e in dense)
    bops = sum(e["nonzero"] * e["bits"] * e["input_bits"] for e in dense) if known else None
    return {
        "total_weights": weights,
        "total_nonzero": nonzero,
        "weight_sparsity": 1.0 - nonzero / max(1, weights),
        "bops": bops,
        "bops_definition": "sum over dense layers of nonzero quantized weights x weight bits x input bits",
    }
