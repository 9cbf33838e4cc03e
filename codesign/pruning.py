"""Pruning beyond tfmot's magnitude schedule: structured (neuron / filter) pruning
(:class:`NeuronMask`, moved here from train.py unchanged but for its importance hook),
lottery-ticket rewinding and the importance criteria of structured pruning.

Rewinding (``pruning.rewind_epoch``, Frankle et al. 2019, "Stabilizing the lottery ticket
hypothesis"): train unpruned, keeping the weights after ``rewind_epoch`` epochs; then each of
``pruning.rounds`` rounds removes the lowest-magnitude surviving weights of each QDense / QConv2D
kernel up to its step of the target, resets every surviving weight (and bias) to the kept values,
and retrains with the mask held after every batch. ``rounds: 1`` is one-shot pruning with rewinding.

Criteria (``pruning.criterion``) score each hidden unit for :class:`NeuronMask`:
"taylor" is the first-order Taylor estimate of the loss change when the unit is removed,
(sum over its kernel column and bias of weight x dLoss/dweight)^2 averaged over training batches
(Molchanov et al. 2019); "activation" is the fraction of (sample, position) outputs where the unit's
activation is nonzero (a unit that rarely fires contributes little).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

#: Training samples the Taylor and activation criteria look at (the first ones of the training set).
CALIBRATION_SAMPLES = 512


def _callback_base() -> type:
    import tensorflow as tf

    return tf.keras.callbacks.Callback


class KernelMask(_callback_base()):  # type: ignore[misc]
    """Hold fixed 0/1 masks on the kernels: re-applied after every batch (Adam moves pruned weights)."""

    def __init__(self, layers: list[Any], masks: list[np.ndarray]) -> None:
        super().__init__()
        self.layers, self.masks = layers, masks

    def apply(self) -> None:
        for layer, mask in zip(self.layers, self.masks):
            layer.kernel.assign(layer.kernel.numpy() * mask)

    def on_train_begin(self, logs: Any = None) -> None:
        self.apply()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.apply()


class Snapshot(_callback_base()):  # type: ignore[misc]
    """Keep the model's weights at the end of epoch ``epoch`` (1-based count; 0: before training)."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch
        self.weights: list[np.ndarray] | None = None

    def on_train_begin(self, logs: Any = None) -> None:
        if self.epoch == 0:
            self.weights = [w.copy() for w in self.model.get_weights()]

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if epoch + 1 == self.epoch:
            self.weights = [w.copy() for w in self.model.get_weights()]


def magnitude_masks(layers: list[Any], masks: list[np.ndarray], sparsity: float) -> list[np.ndarray]:
    """Per layer, zero the lowest-|w| kernel entries until ``sparsity`` of them are gone; entries
    already pruned stay pruned (they rank lowest)."""
    out = []
    for layer, mask in zip(layers, masks):
        w = np.abs(layer.kernel.numpy()).ravel()
        w[mask.ravel() == 0] = -1.0
        n_prune = int(round(sparsity * w.size))
        new = np.ones(w.size, dtype=np.float32)
        new[np.argsort(w, kind="stable")[:n_prune]] = 0.0
        out.append(new.reshape(mask.shape))
    return out


def train_rewound(model: Any, prunable: list[Any], rounds: list[tuple[float, float]], rewind_epoch: int,
                  fit: Callable[[Any, list[Any]], None]) -> Any:
    """Lottery-ticket rewinding over ``rounds`` ((start, end) sparsity each); return the model.

    Args:
        fit: ``fit(model, callbacks)`` trains ``training.epochs`` epochs (a fresh optimizer each time).
    """
    snap = Snapshot(rewind_epoch)
    fit(model, [snap])  # the unpruned network whose magnitudes rank the first round
    assert snap.weights is not None  # rewind_epoch < epochs: validated by the config
    masks = [np.ones(layer.kernel.shape, dtype=np.float32) for layer in prunable]
    for _start, end in rounds:
        masks = magnitude_masks(prunable, masks, end)
        model.set_weights(snap.weights)  # rewind: survivors restart from the early weights
        masker = KernelMask(prunable, masks)
        masker.apply()
        fit(model, [masker])
        masker.apply()
    return model


# ----------------------------------------------------------------------------- structured pruning

class NeuronMask(_callback_base()):  # type: ignore[misc]
    """Zero the lowest-L2-norm units of each QDense / QConv2D layer (never the output layer's).

    A unit is a neuron of a QDense or a filter of a QConv2D: the last axis of the kernel. Pruning
    unit j of layer i zeroes kernel[..., j] and bias j of layer i, and every input of layer i+1
    that reads it (its value is always 0 then): kernel row j of a following QDense, input channel j
    of a following QConv2D, and the Flatten positions of channel j (rows j, j+C, j+2C, ...) of a
    QDense after Flatten (channels last; pooling and ReLU keep a zero channel zero). Pruned units
    stay pruned; the pruned fraction rises linearly from the round's start to its end over
    ``ramp_epochs`` epochs, re-chosen per epoch.
    """

    def __init__(self, layers: list[Any], ramp_epochs: int, scores: Any = None) -> None:
        super().__init__()
        self.layers = layers
        self.ramp_epochs = ramp_epochs
        #: ``scores()`` -> an importance per unit of each hidden layer (pruning.criterion); None: L2 norm
        self.scores = scores
        self.keep = [np.ones(_units(d), dtype=bool) for d in layers[:-1]]
        self.start = self.end = 0.0

    def set_round(self, start: float, end: float) -> None:
        self.start, self.end = start, end

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        frac = self.end if epoch >= self.ramp_epochs else (
            self.start + (self.end - self.start) * (epoch + 1) / self.ramp_epochs)
        importance = self.scores() if self.scores is not None else None
        for i, d in enumerate(self.layers[:-1]):
            self.keep[i] = self._choose(d, self.keep[i], frac, None if importance is None else importance[i])
        self.apply()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.apply()

    @staticmethod
    def _choose(layer: Any, keep: np.ndarray, frac: float, importance: np.ndarray | None = None) -> np.ndarray:
        """Prune the least important live units until ``frac`` of them are gone (at least one
        stays); importance None: the L2 norm of the unit's weights and bias."""
        units = _units(layer)
        n_prune = min(int(round(frac * units)), units - 1)
        if n_prune <= int((~keep).sum()):
            return keep
        if importance is None:
            kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
            norms = np.sqrt((kernel.reshape(-1, units) ** 2).sum(axis=0) + bias ** 2)
        else:
            norms = np.asarray(importance, dtype=np.float64).copy()
        norms[~keep] = -1.0  # already pruned: stay pruned
        new = np.ones_like(keep)
        new[np.argsort(norms, kind="stable")[:n_prune]] = False
        return new

    def input_keep(self, i: int) -> np.ndarray:
        """Which inputs of layer i (kernel axis -2) are alive: the previous layer's live units,
        repeated over the positions a Flatten lays out before them."""
        n_in = int(self.layers[i].kernel.shape[-2])
        if i == 0:
            return np.ones(n_in, dtype=bool)
        prev = self.keep[i - 1]
        if n_in % len(prev):
            raise ValueError(f"layer {self.layers[i].name}: {n_in} inputs are not a whole number of "
                             f"copies of the {len(prev)} units of {self.layers[i - 1].name}")
        return np.tile(prev, n_in // len(prev))

    def apply(self) -> None:
        for i, d in enumerate(self.layers):
            col = self.keep[i] if i < len(self.keep) else np.ones(_units(d), dtype=bool)
            mask = np.outer(self.input_keep(i), col).astype(np.float32)  # broadcasts over conv taps
            d.kernel.assign(d.kernel.numpy() * mask)
            d.bias.assign(d.bias.numpy() * col.astype(np.float32))


def _units(layer: Any) -> int:
    """Neurons of a dense layer, filters of a conv layer: the kernel's last axis."""
    return int(layer.kernel.shape[-1])


# ----------------------------------------------------------------------------- criteria

def scorer(criterion: str, model: Any, prunable: list[Any], X: np.ndarray, y: np.ndarray,
           batch_size: int) -> Callable[[], list[np.ndarray]] | None:
    """``score()`` -> per hidden prunable layer, one importance per unit (higher: keep); None for
    "magnitude" (NeuronMask's own L2 norm).

    Args:
        X, y: training samples shaped for the model (the first CALIBRATION_SAMPLES are used).
    """
    if criterion == "magnitude":
        return None
    X, y = X[:CALIBRATION_SAMPLES], y[:CALIBRATION_SAMPLES]
    if criterion == "taylor":
        return lambda: taylor_scores(model, prunable[:-1], X, y, batch_size)
    if criterion == "activation":
        return lambda: activation_scores(model, prunable[:-1], X)
    raise ValueError(f"unknown pruning criterion {criterion!r}")


def taylor_scores(model: Any, layers: list[Any], X: np.ndarray, y: np.ndarray,
                  batch_size: int) -> list[np.ndarray]:
    """(sum over unit j's kernel column and bias of w * dL/dw)^2, averaged over the batches."""
    import tensorflow as tf

    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = [v for layer in layers for v in (layer.kernel, layer.bias)]
    scores = [np.zeros(int(layer.kernel.shape[-1])) for layer in layers]
    n_batches = 0
    for lo in range(0, len(X), batch_size):
        with tf.GradientTape() as tape:
            loss = loss_fn(y[lo:lo + batch_size], model(X[lo:lo + batch_size], training=False))
        grads = tape.gradient(loss, variables)
        for i, layer in enumerate(layers):
            gk, gb = grads[2 * i], grads[2 * i + 1]
            k, b = layer.kernel.numpy(), layer.bias.numpy()
            units = k.shape[-1]
            s = (k * gk.numpy()).reshape(-1, units).sum(axis=0) + b * gb.numpy()
            scores[i] += s.astype(np.float64) ** 2
        n_batches += 1
    return [s / max(1, n_batches) for s in scores]


def activation_scores(model: Any, layers: list[Any], X: np.ndarray) -> list[np.ndarray]:
    """Per unit, the fraction of samples (and positions) on which the activation after the layer is
    nonzero: the output of the layer that follows it in the model (its ReLU or quantizer)."""
    import tensorflow as tf

    order = list(model.layers)
    outputs = [order[order.index(layer) + 1].output for layer in layers]
    probe = tf.keras.Model(model.inputs, outputs)
    acts = probe.predict(X, batch_size=1024, verbose=0)
    if len(layers) == 1:
        acts = [acts]
    return [(np.asarray(a) != 0).reshape(-1, a.shape[-1]).mean(axis=0) for a in acts]
