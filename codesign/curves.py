"""Learning curves of the model stage: test accuracy after every epoch (a Keras callback).

Recorded for distillation and lottery-ticket rewinding (model/result.json ``curves``, the report's
learning-curve plot); only ever reported, never used to choose anything.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from codesign.data import Dataset
from codesign.model_io import model_input


def _callback_base() -> type:
    import tensorflow as tf

    return tf.keras.callbacks.Callback


class TestAccuracyCurve(_callback_base()):  # type: ignore[misc]
    """Append the test accuracy after every epoch to ``curve`` (a list shared across rounds)."""

    def __init__(self, data: Dataset, curve: list[float] | None = None) -> None:
        super().__init__()
        self.data = data
        self.curve = [] if curve is None else curve

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        logits = self.model.predict(model_input(self.model, self.data.X_test), batch_size=1024, verbose=0)
        self.curve.append(float(np.mean(np.argmax(logits, axis=1) == self.data.y_test)))
