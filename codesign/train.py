"""The "model" stage when training: a pruned, quantization-aware QKeras MLP or CNN on the configured data.

Layer names are a contract with later stages and with ``model.layer_bits``:
``inq`` (input quantizer), ``dense_0 .. dense_N`` (QDense; the last one gives logits, no
activation) and ``relu_0 .. relu_{N-1}`` (quantized ReLU after each hidden QDense). A CNN
(``model.kind: cnn``) puts conv blocks between ``inq`` and the dense layers: ``conv_i`` (QConv2D,
"valid" padding, stride 1), ``crelu_i`` (quantized ReLU) and ``pool_i`` (MaxPooling2D, absent when
``model.pool_size`` <= 1), then ``flatten``. The model's input is ``x_in``: a flat vector (MLP) or an
image (height, width, channels) (CNN); the data set stays flat and :func:`codesign.model_io.model_input`
reshapes it.

Pruning: tfmot magnitude pruning (PolynomialDecay) of the QDense and QConv2D kernels, or structured
pruning of whole hidden neurons / conv filters (kernel column + bias, and the now dead inputs of the
next layer) by L2 norm, applied as a mask after every batch. With ``pruning.rounds`` > 1 the target
is reached in equal steps, each round training ``training.epochs`` epochs (iterative prune / fine-tune).

Training levers (off by default): knowledge distillation from a float teacher (``training.distill``,
:mod:`codesign.distill`), lottery-ticket rewinding (``pruning.rewind_epoch``) and the Taylor /
activation importance of structured pruning (``pruning.criterion``) (:mod:`codesign.pruning`), and
low-rank Dense layers (``model.low_rank``: dense_i becomes dense_i_u, dense_i;
:mod:`codesign.low_rank`). Distillation and rewinding record a test-accuracy learning curve.
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

from codesign import distill, low_rank, progress, pruning, rundir
from codesign.config import Config, cnn_output_size
from codesign.curves import TestAccuracyCurve
from codesign.data import Dataset, load_dataset
from codesign.errors import ConfigError
from codesign.model_io import model_input
from codesign.model_stats import layer_stats, totals
from codesign.pruning import NeuronMask

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
    shape = input_shape(cfg, data.n_features)  # a CNN image shape that does not fit the data fails here
    low_rank.check(cfg.model.low_rank, dense_shapes(cfg, data.n_features, data.n_classes))
    t0 = time.perf_counter()
    fit = _Fit(cfg, data)
    if cfg.training.distill.teacher is not None:
        fit.teacher = distill.make_teacher(cfg, data, shape, lambda: TestAccuracyCurve(data))
        # the student starts from the initial weights and batch order it has without a teacher
        _seed_everything(cfg.training.seed)
    model = _train(cfg, data, fit)
    train_seconds = time.perf_counter() - t0
    with rundir.stage_dir(Path(run_dir), "model") as out:
        model.save(out / "model.h5")
        np.savez(out / "data.npz", X_train=data.X_train, y_train=data.y_train,
                 X_test=data.X_test, y_test=data.y_test)
        result = _result(cfg, model, data, train_seconds, fit)
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


def hidden_widths(cfg: Config) -> tuple[int, ...]:
    """Widths of the hidden QDense layers: ``model.hidden`` (MLP) or ``model.cnn_hidden`` (CNN)."""
    return cfg.model.cnn_hidden if cfg.model.kind == "cnn" else cfg.model.hidden


def _pools(cfg: Config) -> bool:
    return cfg.model.pool_size > 1


def layer_names(cfg: Config) -> list[str]:
    """Names of the model's layers after the input, in order.

    MLP: inq, dense_0, relu_0, ..., dense_N. CNN: inq, conv_0, crelu_0, pool_0, ..., flatten,
    dense_0, relu_0, ..., dense_N (no pool_i when model.pool_size <= 1).
    """
    n = len(hidden_widths(cfg))
    convs: list[str] = []
    if cfg.model.kind == "cnn":
        for i in range(len(cfg.model.conv_filters)):
            convs += [f"conv_{i}", f"crelu_{i}"] + ([f"pool_{i}"] if _pools(cfg) else [])
        convs.append("flatten")
    dense: list[str] = []
    for i in range(n + 1):
        dense += list(low_rank.names(i)) if f"dense_{i}" in cfg.model.low_rank else [f"dense_{i}"]
        dense += [f"relu_{i}"] if i < n else []
    return ["inq", *convs, *dense]


def dense_shapes(cfg: Config, n_features: int, n_classes: int) -> dict[str, tuple[int, int]]:
    """{dense_i: (n_in, n_out)} of the unfactorized dense layers (the keys model.low_rank accepts)."""
    n_in = n_features
    if cfg.model.kind == "cnn":
        h, w, _ = input_shape(cfg, n_features)
        n_in = cnn_output_size(h, cfg.model) * cnn_output_size(w, cfg.model) * cfg.model.conv_filters[-1]
    widths = [*hidden_widths(cfg), n_classes]
    ins = [n_in, *widths[:-1]]
    return {f"dense_{i}": (a, b) for i, (a, b) in enumerate(zip(ins, widths))}


def quantized_layer_names(cfg: Config) -> list[str]:
    """The layers with a bit width (the keys model.layer_bits accepts, plus inq): no pool, flatten."""
    return [n for n in layer_names(cfg) if not n.startswith("pool_") and n != "flatten"]


def input_shape(cfg: Config, n_features: int) -> tuple[int, ...]:
    """Per-sample model input shape: (n_features,) for the MLP, (height, width, channels) for the CNN.

    The CNN's image is ``model.image_shape``, or a square one-channel image when it is null.

    Raises:
        ConfigError: the image does not hold exactly n_features values, or n_features is not a
            square and no image_shape is given.
    """
    m = cfg.model
    if m.kind != "cnn":
        return (n_features,)
    if m.image_shape is not None:
        shape = tuple(m.image_shape)
        if math.prod(shape) != n_features:
            raise ConfigError(
                f"model.image_shape: {list(shape)} holds {math.prod(shape)} values but the data has "
                f"{n_features} features per sample; they must match")
        return shape
    side = math.isqrt(n_features)
    if side * side != n_features:
        raise ConfigError(
            f"model.image_shape: null, and the data's {n_features} features are not a square "
            "one-channel image", hint="set model.image_shape to [height, width, channels]")
    if cnn_output_size(side, m) < 1:
        raise ConfigError(
            f"model.image_shape: the {side}x{side}x1 image inferred from the data shrinks to nothing "
            f"in {len(m.conv_filters)} conv block(s) of kernel {m.kernel_size} and pool {m.pool_size}",
            hint="use fewer conv blocks or a smaller kernel_size / pool_size")
    return (side, side, 1)


def _check_layer_bits(cfg: Config) -> None:
    """A misspelt layer_bits key would silently be ignored: refuse it, listing the real names."""
    valid = quantized_layer_names(cfg)[1:]
    for name in cfg.model.layer_bits:
        if name not in valid:
            raise ConfigError(f"model.layer_bits.{name}: no such layer in this model; valid: {', '.join(valid)}",
                              hint="the input quantizer's width is model.input_bits")
    if cfg.model.kind == "cnn":
        for i in range(len(cfg.model.conv_filters)):
            bits = layer_bits(cfg, f"crelu_{i}")
            if cfg.model.conv_relu_integer_bits >= bits:
                raise ConfigError(
                    f"model.layer_bits.crelu_{i}: {bits} bits leave no fractional bit next to "
                    f"model.conv_relu_integer_bits = {cfg.model.conv_relu_integer_bits}; valid: "
                    f"{cfg.model.conv_relu_integer_bits + 1} .. 16")


def _layers(cfg: Config, n_classes: int) -> list[Any]:
    """The layer instances in the order of :func:`layer_names`, unbuilt."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    m = cfg.model
    layers: list[Any] = [QActivation(
        quantized_bits(m.input_bits, INPUT_INTEGER_BITS, keep_negative=False, alpha=1), name="inq")]
    if m.kind == "cnn":
        for i, filters in enumerate(m.conv_filters):
            b = layer_bits(cfg, f"conv_{i}")
            layers.append(QConv2D(
                filters, m.kernel_size, strides=1, padding="valid",
                kernel_quantizer=quantized_bits(b, m.integer_bits, alpha=1),
                bias_quantizer=quantized_bits(b, m.integer_bits, alpha=1),
                kernel_initializer="glorot_uniform",  # Keras' default for Conv2D; measured better here
                name=f"conv_{i}",
            ))
            layers.append(QActivation(quantized_relu(layer_bits(cfg, f"crelu_{i}"), m.conv_relu_integer_bits),
                                      name=f"crelu_{i}"))
            if _pools(cfg):
                layers.append(tf.keras.layers.MaxPooling2D(m.pool_size, name=f"pool_{i}"))
        layers.append(tf.keras.layers.Flatten(name="flatten"))
    widths = [*hidden_widths(cfg), n_classes]

    def dense(name: str, width: int) -> Any:
        b = layer_bits(cfg, name)
        return QDense(
            width,
            kernel_quantizer=quantized_bits(b, m.integer_bits, alpha=1),
            bias_quantizer=quantized_bits(b, m.integer_bits, alpha=1),
            kernel_initializer="lecun_uniform",
            name=name,
        )

    for i, width in enumerate(widths):
        rank = m.low_rank.get(f"dense_{i}")
        if rank is None:
            layers.append(dense(f"dense_{i}", width))
        else:
            layers += low_rank.layers(i, rank, width, dense)
        if i < len(widths) - 1:
            layers.append(QActivation(quantized_relu(layer_bits(cfg, f"relu_{i}")), name=f"relu_{i}"))
    return layers


def _prunable(layer: Any) -> bool:
    """A layer whose kernel is pruned: QDense or QConv2D."""
    from qkeras import QConv2D, QDense

    return isinstance(layer, (QDense, QConv2D))


def _connect(shape: tuple[int, ...], layers: list[Any], wrap: Any = None) -> Any:
    """A functional model over existing layer instances; ``wrap`` optionally wraps each prunable layer."""
    import tensorflow as tf

    inp = tf.keras.Input(shape=shape, name="x_in")  # "input" is reserved in hls4ml
    x = inp
    for layer in layers:
        x = (wrap(layer) if wrap is not None and _prunable(layer) else layer)(x)
    return tf.keras.Model(inp, x, name="cnn" if len(shape) > 1 else "mlp")


def _compile(model: Any, lr: float) -> None:
    import tensorflow as tf

    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=lr),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


# ----------------------------------------------------------------------------- training

def _train(cfg: Config, data: Dataset, fit: _Fit) -> Any:
    """Build, train and prune; return the stripped QKeras model."""
    layers = _layers(cfg, data.n_classes)
    target = cfg.pruning.target_sparsity
    if target <= 0.0:
        model = _connect(input_shape(cfg, data.n_features), layers)
        fit(model, [])
        return model
    if cfg.pruning.structured:
        return _train_structured(cfg, data, layers, fit)
    if cfg.pruning.rewind_epoch is not None:
        model = _connect(input_shape(cfg, data.n_features), layers)
        return pruning.train_rewound(model, [x for x in layers if _prunable(x)],
                                     _round_targets(target, cfg.pruning.rounds), cfg.pruning.rewind_epoch, fit)
    return _train_magnitude(cfg, data, layers, fit)


def _steps_per_epoch(cfg: Config, data: Dataset) -> int:
    return math.ceil(len(data.X_train) / cfg.training.batch_size)


def _fit(cfg: Config, model: Any, data: Dataset, callbacks: list[Any]) -> None:
    _compile(model, cfg.training.learning_rate)
    model.fit(model_input(model, data.X_train), data.y_train, epochs=cfg.training.epochs,
              batch_size=cfg.training.batch_size, shuffle=True, verbose=0,
              callbacks=callbacks + progress.keras_epochs(cfg.training.epochs))


class _Fit:
    """``fit(model, callbacks)``: one training round of ``training.epochs`` epochs.

    Without a teacher and without a learning curve this is exactly :func:`_fit`. With a teacher
    the targets are [label, teacher logits] and the loss is :func:`codesign.distill.loss`. The test
    accuracy per epoch is recorded when distillation or rewinding is on (their learning curves).
    """

    def __init__(self, cfg: Config, data: Dataset) -> None:
        self.cfg, self.data = cfg, data
        self.teacher: distill.Teacher | None = None
        self.record = cfg.training.distill.teacher is not None or cfg.pruning.rewind_epoch is not None
        self.curve: list[float] = []
        self.rounds: list[int] = []  # epochs at which each training round starts

    def __call__(self, model: Any, callbacks: list[Any]) -> None:
        cfg, data = self.cfg, self.data
        extra: list[Any] = []
        if self.record:
            self.rounds.append(len(self.curve))
            extra.append(TestAccuracyCurve(data, self.curve))
        if self.teacher is None:
            _fit(cfg, model, data, callbacks + extra)
        else:
            distill.fit_student(cfg, model, data, self.teacher, callbacks + extra)


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


def _train_magnitude(cfg: Config, data: Dataset, layers: list[Any], fit: _Fit) -> Any:
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

        model = _connect(input_shape(cfg, data.n_features), layers, wrap)
        fit(model, [sparsity.UpdatePruningStep()])
        _apply_masks(model)
        model = sparsity.strip_pruning(model)
    return _connect(input_shape(cfg, data.n_features), layers)


def _apply_masks(model: Any) -> None:
    """Zero the pruned weights once more: tfmot masks them before each forward pass, so the last
    optimizer step (Adam momentum) leaves them slightly nonzero, and strip_pruning keeps that."""
    for layer in model.layers:
        for weight, mask, _threshold in getattr(layer, "pruning_vars", []):
            weight.assign(weight * mask)


def _train_structured(cfg: Config, data: Dataset, layers: list[Any], fit: _Fit) -> Any:
    """Neuron / filter pruning: a mask callback removes the least important hidden neurons and
    conv filters (pruning.criterion; magnitude: lowest L2 norm), ramping each round."""
    model = _connect(input_shape(cfg, data.n_features), layers)
    prunable = [layer for layer in layers if _prunable(layer)]
    scores = pruning.scorer(cfg.pruning.criterion, model, prunable, model_input(model, data.X_train),
                            data.y_train, cfg.training.batch_size)
    masker = NeuronMask(prunable, ramp_epochs=max(1, int(cfg.training.epochs * RAMP_FRACTION)), scores=scores)
    for start, end in _round_targets(cfg.pruning.target_sparsity, cfg.pruning.rounds):
        masker.set_round(start, end)
        fit(model, [masker])
    masker.apply()
    return model


def _result(cfg: Config, model: Any, data: Dataset, train_seconds: float, fit: _Fit) -> dict[str, Any]:
    logits = model.predict(model_input(model, data.X_test), batch_size=1024, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=1) == data.y_test))
    layers = layer_stats(model)
    rewound = cfg.pruning.rewind_epoch is not None and cfg.pruning.target_sparsity > 0
    return {
        "source": "trained",
        "model_file": "model.h5",
        "data_file": "data.npz",
        "has_data": True,
        "dataset": data.name,
        "model_kind": cfg.model.kind,
        "n_features": data.n_features,
        "input_shape": [int(d) for d in model.inputs[0].shape[1:]],
        "n_classes": data.n_classes,
        "n_train": len(data.X_train),
        "n_test": len(data.X_test),
        "test_accuracy": accuracy,
        "train_seconds": train_seconds,
        "seed": cfg.training.seed,
        "epochs_total": cfg.training.epochs * (cfg.pruning.rounds if cfg.pruning.target_sparsity > 0 else 1)
        + (cfg.training.epochs if rewound else 0),  # rewinding first trains unpruned
        "pruning": {"target_sparsity": cfg.pruning.target_sparsity, "structured": cfg.pruning.structured,
                    "rounds": cfg.pruning.rounds, "criterion": cfg.pruning.criterion,
                    "rewind_epoch": cfg.pruning.rewind_epoch},
        "distill": distill.record(cfg, fit.teacher),
        "low_rank": low_rank.record(cfg.model.low_rank, dense_shapes(cfg, data.n_features, data.n_classes),
                                    layers) or None,
        "curves": None if not fit.record else {
            "test_accuracy": fit.curve, "round_starts": fit.rounds,
            "teacher_test_accuracy": fit.teacher.curve if fit.teacher is not None else None},
        "layers": layers,
        **totals(layers),
    }
