"""Live progress on a terminal (tqdm): the running stage's elapsed time and training epochs.

Only when standard output is a terminal: a log file, a pipe or a test sees the plain lines the CLI
prints anyway. The CLI turns it on (:func:`enable`); library callers get none.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

_enabled = False


def enable(on: bool = True) -> None:
    """Show live progress from now on (when standard output is a terminal)."""
    global _enabled
    _enabled = on


def active() -> bool:
    return _enabled and sys.stdout.isatty()


class StageTicker:
    """``[stage] running  0:42`` on one terminal line, refreshed twice a second until :meth:`close`."""

    def __init__(self, stage: str) -> None:
        self.bar: Any = None
        self._stop = threading.Event()
        if not active():
            return
        from tqdm import tqdm

        self.bar = tqdm(total=None, desc=f"[{stage:>6}] running", bar_format="{desc} {elapsed}", file=sys.stdout,
                        leave=False)
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self._stop.set()
            self._thread.join()
            self.bar.close()
            self.bar = None


def keras_epochs(epochs: int, desc: str = "training") -> list[Any]:
    """Keras callbacks showing an epoch bar with the loss and accuracy (none when inactive)."""
    if not active():
        return []
    import tensorflow as tf
    from tqdm import tqdm

    class EpochBar(tf.keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_begin(self, logs: Any = None) -> None:
            self.bar = tqdm(total=epochs, desc=f"         {desc}", unit="epoch", file=sys.stdout, leave=False)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = logs or {}
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items() if k in ("loss", "accuracy")})
            self.bar.update(1)

        def on_train_end(self, logs: Any = None) -> None:
            self.bar.close()

    return [EpochBar()]
