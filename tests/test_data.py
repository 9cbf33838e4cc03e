"""Data sets: the digits split is on the k/16 grid, stratified and seeded; npz errors name the array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codesign.config import DataConfig
from codesign.data import load_dataset
from codesign.errors import DataError


def test_digits_shapes_grid_and_split() -> None:
    ds = load_dataset(DataConfig(test_fraction=0.2), seed=0)
    assert ds.name == "digits" and ds.n_features == 64 and ds.n_classes == 10
    assert len(ds.X_train) + len(ds.X_test) == 1797
    assert len(ds.X_test) == pytest.approx(0.2 * 1797, abs=1)
    assert ds.X_train.shape[1] == ds.X_test.shape[1] == 64
    for X in (ds.X_train, ds.X_test):
        assert X.min() >= 0.0 and X.max() <= 1.0
        np.testing.assert_array_equal(X * 16, np.round(X * 16))  # every value is k/16
    assert ds.X_train.max() == 1.0  # a full-scale pixel exists, so 1.0 must be representable


def test_digits_stratified() -> None:
    ds = load_dataset(DataConfig(test_fraction=0.25), seed=3)
    train_frac = np.bincount(ds.y_train, minlength=10) / len(ds.y_train)
    test_frac = np.bincount(ds.y_test, minlength=10) / len(ds.y_test)
    np.testing.assert_allclose(train_frac, test_frac, atol=0.01)


def test_digits_seed_controls_split() -> None:
    a = load_dataset(DataConfig(), seed=0)
    b = load_dataset(DataConfig(), seed=0)
    c = load_dataset(DataConfig(), seed=1)
    np.testing.assert_array_equal(a.X_test, b.X_test)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.X_test, c.X_test)


def _npz(path: Path, **arrays: np.ndarray) -> DataConfig:
    np.savez(path, **arrays)
    return DataConfig(dataset="npz", path=str(path))


def _good() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"X_train": rng.random((20, 5)), "y_train": np.arange(20) % 3,
            "X_test": rng.random((8, 5)), "y_test": np.arange(8) % 3}


def test_npz_loads(tmp_path: Path) -> None:
    arrays = _good()
    ds = load_dataset(_npz(tmp_path / "mine.npz", **arrays), seed=0)
    assert (ds.n_features, ds.n_classes, ds.name) == (5, 3, "mine")
    np.testing.assert_allclose(ds.X_test, arrays["X_test"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, arrays["y_train"])
    assert ds.y_train.dtype == np.int64


def test_npz_accepts_integral_float_labels(tmp_path: Path) -> None:
    arrays = _good()
    arrays["y_train"] = arrays["y_train"].astype(np.float64)
    ds = load_dataset(_npz(tmp_path / "f.npz", **arrays), seed=0)
    assert ds.y_train.dtype == np.int64


@pytest.mark.parametrize(
    "change, culprit",
    [
        ({"drop": "y_test"}, "y_test"),
        ({"X_train": np.zeros((19, 5))}, "X_train"),  # 19 samples vs 20 labels
        ({"X_test": np.zeros((8, 5, 1))}, "X_test"),  # rank 3
        ({"y_train": np.zeros((20, 1))}, "y_train"),  # rank 2 labels
        ({"y_test": np.linspace(0, 1, 8)}, "y_test"),  # non-integer labels
        ({"y_test": np.array(list("abcdefgh"))}, "y_test"),  # strings
        ({"y_train": -(np.arange(20) % 3)}, "y_train"),  # negative labels
        ({"X_test": np.zeros((8, 4))}, "X_test"),  # feature counts differ
        ({"X_train": np.full((20, 5), np.nan)}, "X_train"),
    ],
)
def test_npz_errors_name_file_and_array(tmp_path: Path, change: dict, culprit: str) -> None:
    arrays = _good()
    if "drop" in change:
        del arrays[change.pop("drop")]
    arrays.update(change)
    path = tmp_path / "bad.npz"
    with pytest.raises(DataError) as info:
        load_dataset(_npz(path, **arrays), seed=0)
    assert str(path) in str(info.value) and culprit in str(info.value)


def test_npz_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.npz"
    with pytest.raises(DataError, match="nope.npz.*does not exist"):
        load_dataset(DataConfig(dataset="npz", path=str(path)), seed=0)


@pytest.mark.parametrize("content", [b"", b"this is not a zip file", b"PK\x03\x04truncated"])
def test_npz_corrupt_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "corrupt.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match="corrupt.npz"):
        load_dataset(DataConfig(dataset="npz", path=str(path)), seed=0)


def test_npz_truncated_real_file(tmp_path: Path) -> None:
    good = tmp_path / "good.npz"
    np.savez(good, **_good())
    path = tmp_path / "cut.npz"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="cut.npz"):
        load_dataset(DataConfig(dataset="npz", path=str(path)), seed=0)


def test_npz_with_object_array_is_refused(tmp_path: Path) -> None:
    arrays = _good()
    arrays["X_train"] = np.array([object()] * 20, dtype=object)
    path = tmp_path / "obj.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match="obj.npz.*X_train"):
        load_dataset(DataConfig(dataset="npz", path=str(path)), seed=0)
