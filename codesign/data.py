"""Data sets for the flow: sklearn's embedded digits, or a user's ``.npz`` file.

Digits pixels are integers 0..16; dividing by 16 puts every input on the grid k/16 in [0, 1], which
any fixed-point input type with >= 4 fractional bits represents exactly, so QKeras, hls4ml C-sim and
the RTL all see the same numbers.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codesign.config import DATASETS, DataConfig
from codesign.errors import DataError

NPZ_ARRAYS = ("X_train", "y_train", "X_test", "y_test")


@dataclass(frozen=True)
class Dataset:
    """A train/test split: X as float32 (n, features), y as int64 class indices (n,)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_features: int
    n_classes: int
    name: str


def load_dataset(cfg: DataConfig, seed: int) -> Dataset:
    """Load the configured data set; the digits split is stratified and depends only on ``seed``.

    Raises:
        DataError: the data set is unknown, or the npz file is missing or malformed.
    """
    if cfg.dataset == "digits":
        return _digits(cfg.test_fraction, seed, cfg.digits_size)
    if cfg.dataset == "npz":
        if not cfg.path:
            raise DataError("data.path must name a .npz file when data.dataset is 'npz'")
        return load_npz(Path(cfg.path))
    raise DataError(f"data.dataset {cfg.dataset!r} is unknown; valid: {', '.join(DATASETS)}")


def resize_digits(x: np.ndarray, size: int) -> np.ndarray:
    """8x8 digit rows (n, 64) as ``size`` x ``size`` images by nearest neighbour, flattened row-major;
    the values are the original pixels, so they stay on the k/16 grid."""
    src = np.arange(size) * 8 // size  # the source row / column of each output row / column
    images = np.asarray(x).reshape(-1, 8, 8)[:, src][:, :, src]
    return images.reshape(len(images), size * size)


def _digits(test_fraction: float, seed: int, size: int = 8) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    if size != 8:
        X = resize_digits(X, size)
    y = digits.target.astype(np.int64)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    return Dataset(X_tr, y_tr, X_te, y_te, n_features=X.shape[1], n_classes=10, name="digits")


def load_npz(path: Path) -> Dataset:
    """Load and check a user's npz (X_train, y_train, X_test, y_test). Raise DataError naming the array."""
    arrays = _read_npz(path)
    X_tr, y_tr = _check_pair(path, arrays, "train")
    X_te, y_te = _check_pair(path, arrays, "test")
    if X_tr.shape[1] != X_te.shape[1]:
        raise DataError(
            f"{path}: X_train has {X_tr.shape[1]} features but X_test has {X_te.shape[1]}; they must match"
        )
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    if n_classes < 2:
        raise DataError(f"{path}: y_train/y_test contain a single class; need at least 2")
    return Dataset(X_tr, y_tr, X_te, y_te, n_features=int(X_tr.shape[1]), n_classes=n_classes,
                   name=path.stem)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from e
    with npz:
        missing = [k for k in NPZ_ARRAYS if k not in npz.files]
        if missing:
            raise DataError(
                f"{path}: array {missing[0]} is missing; the file must hold {', '.join(NPZ_ARRAYS)} "
                f"(found: {', '.join(npz.files) or 'nothing'})"
            )
        return {k: _read_array(path, npz, k) for k in NPZ_ARRAYS}


def _read_array(path: Path, npz: Any, key: str) -> np.ndarray:
    try:
        return np.asarray(npz[key])
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise DataError(f"{path}: array {key} cannot be read ({type(e).__name__}: {e})") from e


def _check_pair(path: Path, arrays: dict[str, np.ndarray], split: str) -> tuple[np.ndarray, np.ndarray]:
    X, y = arrays[f"X_{split}"], arrays[f"y_{split}"]
    if X.ndim != 2:
        raise DataError(f"{path}: X_{split} must have rank 2 (samples, features), got shape {X.shape}")
    if y.ndim != 1:
        raise DataError(f"{path}: y_{split} must have rank 1 (class indices), got shape {y.shape}")
    if len(X) != len(y):
        raise DataError(f"{path}: X_{split} has {len(X)} samples but y_{split} has {len(y)}")
    if len(X) == 0:
        raise DataError(f"{path}: X_{split} is empty")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise DataError(f"{path}: X_{split} must be real numbers, got dtype {X.dtype}")
    if not np.all(np.isfinite(X)):
        raise DataError(f"{path}: X_{split} contains NaN or infinite values")
    return X.astype(np.float32), _labels(path, y, f"y_{split}")


def _labels(path: Path, y: np.ndarray, name: str) -> np.ndarray:
    """Class indices must be non-negative integers (integer dtype, or floats with integral values)."""
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        yi = y.astype(np.int64)
    elif np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        yi = y.astype(np.int64)
    else:
        raise DataError(f"{path}: {name} must hold integer class indices, got dtype {y.dtype}"
                        + (f" with values like {y.flat[0]!r}" if y.size else ""))
    if yi.min() < 0:
        raise DataError(f"{path}: {name} has a negative class index {int(yi.min())}")
    return yi
