"""Knowledge distillation (``training.distill``), a training lever: a float teacher's softened
outputs guide the quantized, pruned student.

The teacher is trained here as a float Keras model of the student's architecture (hidden widths and
conv filters times ``teacher_width``), or loaded from a Keras .h5 file. Its logits on the training
set are computed once; the student then trains on targets packed as [label, teacher logits...]
with the loss (1 - alpha) * CE(label, s) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T))
(Hinton et al. 2015; T^2 keeps the soft term's gradient scale independent of T).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from codesign.config import Config
from codesign.data import Dataset
from codesign.errors import ConfigError
from codesign.model_io import model_input


class Teacher:
    """The teacher's logits on the training set, its test accuracy and learning curve."""

    def __init__(self, logits: np.ndarray, accuracy: float, source: str, curve: list[float]) -> None:
        self.logits = logits
        self.accuracy = accuracy
        self.source = source
        self.curve = curve


def make_teacher(cfg: Config, data: Dataset, shape: tuple[int, ...], curve_callback: Any) -> Teacher:
    """Train the "float" teacher or load the .h5 one; return its training-set logits.

    Args:
        shape: the student's per-sample input shape.
        curve_callback: ``curve_callback()`` -> a Keras callback with ``.curve`` (test accuracy per epoch).

    Raises:
        ConfigError: the .h5 teacher is missing, unreadable, or does not fit the data.
    """
    d = cfg.training.distill
    if d.teacher == "float":
        model = float_model(cfg, shape, data.n_classes)
        import tensorflow as tf

        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=cfg.training.learning_rate),
                      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        recorder = curve_callback()
        model.fit(model_input(model, data.X_train), data.y_train,
                  epochs=d.teacher_epochs or cfg.training.epochs, batch_size=cfg.training.batch_size,
                  shuffle=True, verbose=0, callbacks=[recorder])
        curve, source = list(recorder.curve), f"float (width x{d.teacher_width})"
    else:
        model, curve, source = _load_teacher(str(d.teacher), data), [], str(d.teacher)
    logits = _logits(model, data.X_train)
    test = _logits(model, data.X_test)
    return Teacher(logits, float(np.mean(np.argmax(test, axis=1) == data.y_test)), source, curve)


def _load_teacher(path: str, data: Dataset) -> Any:
    from codesign.errors import ModelImportError
    from codesign.model_io import load_model

    if not Path(path).is_file():
        raise ConfigError(f"training.distill.teacher: {path} does not exist; valid: null, \"float\" or an "
                          "existing Keras .h5 file")
    try:
        model = load_model(path)
    except (ModelImportError, OSError, ValueError) as e:
        raise ConfigError(f"training.distill.teacher: {path} is not a loadable Keras model: {e}") from e
    n_out = int(model.outputs[0].shape[-1])
    n_in = int(np.prod(model.inputs[0].shape[1:]))
    if n_out != data.n_classes or n_in != data.n_features:
        raise ConfigError(f"training.distill.teacher: {path} maps {n_in} inputs to {n_out} outputs; the data "
                          f"has {data.n_features} features and {data.n_classes} classes")
    return model


def _logits(model: Any, X: np.ndarray) -> np.ndarray:
    """The model's logits; a softmax output becomes log-probabilities (the same softened targets)."""
    out = np.asarray(model.predict(model_input(model, X), batch_size=1024, verbose=0), dtype=np.float64)
    last = model.layers[-1]
    act = str(last.get_config().get("activation", ""))
    if type(last).__name__ == "Softmax" or "softmax" in act:
        out = np.log(np.clip(out, 1e-12, None))
    return out.astype(np.float32)


def float_model(cfg: Config, shape: tuple[int, ...], n_classes: int) -> Any:
    """The float teacher: the student's layer structure without quantizers, widths x teacher_width."""
    import tensorflow as tf

    m, k = cfg.model, cfg.training.distill.teacher_width
    inp = tf.keras.Input(shape=shape, name="teacher_in")
    x = inp
    if m.kind == "cnn":
        for i, filters in enumerate(m.conv_filters):
            x = tf.keras.layers.Conv2D(filters * k, m.kernel_size, activation="relu", name=f"teacher_conv_{i}")(x)
            if m.pool_size > 1:
                x = tf.keras.layers.MaxPooling2D(m.pool_size, name=f"teacher_pool_{i}")(x)
        x = tf.keras.layers.Flatten(name="teacher_flatten")(x)
    hidden = m.cnn_hidden if m.kind == "cnn" else m.hidden
    for i, width in enumerate(hidden):
        x = tf.keras.layers.Dense(width * k, activation="relu", kernel_initializer="lecun_uniform",
                                  name=f"teacher_dense_{i}")(x)
    x = tf.keras.layers.Dense(n_classes, name=f"teacher_dense_{len(hidden)}")(x)
    return tf.keras.Model(inp, x, name="teacher")


def fit_student(cfg: Config, model: Any, data: Dataset, teacher: Teacher, callbacks: list[Any]) -> None:
    """One training round of the student (``training.epochs`` epochs) on the distillation loss."""
    import tensorflow as tf

    from codesign import progress

    d = cfg.training.distill
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=cfg.training.learning_rate),
                  loss=loss(d.temperature, d.alpha), metrics=[accuracy_metric()])
    model.fit(model_input(model, data.X_train), targets(data.y_train, teacher.logits),
              epochs=cfg.training.epochs, batch_size=cfg.training.batch_size, shuffle=True, verbose=0,
              callbacks=callbacks + progress.keras_epochs(cfg.training.epochs))


def targets(y: np.ndarray, teacher_logits: np.ndarray) -> np.ndarray:
    """Packed fit targets: column 0 the label, the rest the teacher's logits."""
    return np.concatenate([y.reshape(-1, 1).astype(np.float32), teacher_logits], axis=1)


def loss(temperature: float, alpha: float) -> Any:
    """The distillation loss over packed targets (see the module docstring)."""
    import tensorflow as tf

    t = float(temperature)

    def distill_loss(y_packed: Any, logits: Any) -> Any:
        labels = tf.cast(y_packed[:, 0], tf.int32)
        teacher = y_packed[:, 1:]
        hard = tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        p_t = tf.nn.softmax(teacher / t)
        log_p_t = tf.nn.log_softmax(teacher / t)
        log_p_s = tf.nn.log_softmax(logits / t)
        soft = tf.reduce_sum(p_t * (log_p_t - log_p_s), axis=-1) * (t * t)
        return (1.0 - alpha) * hard + alpha * soft

    return distill_loss


def accuracy_metric() -> Any:
    """Label accuracy over packed targets (Keras' "accuracy" would read the packed columns)."""
    import tensorflow as tf

    def accuracy(y_packed: Any, logits: Any) -> Any:
        labels = tf.cast(y_packed[:, 0], tf.int64)
        return tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32)

    return accuracy


def record(cfg: Config, teacher: Teacher | None) -> dict[str, Any] | None:
    """result.json's ``distill``: None when off."""
    if teacher is None:
        return None
    d = cfg.training.distill
    return {"teacher": teacher.source, "teacher_accuracy": teacher.accuracy, "temperature": d.temperature,
            "alpha": d.alpha, "teacher_epochs": (d.teacher_epochs or cfg.training.epochs)
            if d.teacher == "float" else None}
