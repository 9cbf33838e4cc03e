"""Model import: the reference models load with their weights; bad inputs fail naming the culprit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from codesign import config, rundir
from codesign.errors import DataError, ModelImportError
from codesign.model_io import SUPPORTED_LAYERS, import_model, load_model, model_input

tf = pytest.importorskip("tensorflow")
qkeras = pytest.importorskip("qkeras")

from conftest import REFERENCE_MODELS as REF  # noqa: E402
REFERENCE = {
    # name: (layer classes in order, input size, output size)
    "KERAS_3layer": (["InputLayer", "Dense", "Dense", "Dense", "Dense"], 16, 5),
    "qkeras_3layer": (["QDense", "QActivation"] * 3 + ["QDense", "Activation"], 16, 5),
    "qkeras_mnist_dense": (["InputLayer", "QActivation", "QDense", "QActivation", "QDense", "Activation"],
                           784, 10),
}


def _ref(name: str) -> tuple[Path, Path]:
    return REF / f"{name}.json", REF / f"{name}_weights.h5"


def _saved_kernel(weights: Path, layer: str) -> np.ndarray:
    with h5py.File(weights, "r") as f:
        group = f[layer]
        kernel_name = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]][0]
        return np.asarray(group[kernel_name])


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_models_load_with_their_weights(name: str) -> None:
    arch, weights = _ref(name)
    model = load_model(arch, weights)
    classes, n_in, n_out = REFERENCE[name]
    assert [type(layer).__name__ for layer in model.layers] == classes
    assert model.inputs[0].shape[-1] == n_in and model.outputs[0].shape[-1] == n_out
    dense = [layer for layer in model.layers if type(layer).__name__ in ("Dense", "QDense")]
    for layer in dense:  # every weight came from the file, by name
        np.testing.assert_array_equal(layer.get_weights()[0], _saved_kernel(weights, layer.name))


def _cfg(tmp_path: Path, import_path: Path, weights: Path | None = None, **over: Any) -> config.Config:
    model = {"import_path": str(import_path)}
    if weights is not None:
        model["weights_path"] = str(weights)
    return config.from_dict({"output_dir": str(tmp_path), "model": model, **over})


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_import_reference_model_stage(tmp_path: Path, name: str) -> None:
    arch, weights = _ref(name)
    result = import_model(_cfg(tmp_path, arch, weights), tmp_path)
    out = tmp_path / "model"
    assert result == rundir.read_json(out / "result.json")
    assert result["source"] == "imported" and result["model_file"] == "model.h5"
    # digits has 64 features; none of these models takes 64 inputs
    assert result["has_data"] is False and not (out / "data.npz").exists()
    assert result["test_accuracy"] is None
    # the re-saved model computes exactly what the original computes
    original = load_model(arch, weights)
    resaved = load_model(out / "model.h5")
    x = np.random.default_rng(0).random((16, REFERENCE[name][1])).astype(np.float32)
    np.testing.assert_array_equal(original.predict(x, verbose=0), resaved.predict(x, verbose=0))
    # per-layer counts are measured from the weights
    dense = {e["name"]: e for e in result["layers"] if e["kind"] in ("Dense", "QDense")}
    for layer in original.layers:
        if layer.name in dense:
            assert dense[layer.name]["weights"] == layer.get_weights()[0].size
    assert result["total_weights"] == sum(e["weights"] for e in dense.values())


def test_qkeras_reference_sparsity_counts_quantized_zeros(tmp_path: Path) -> None:
    """qkeras_3layer's float weights are dense, but many quantize to 0 at 6 bits: count those."""
    arch, weights = _ref("qkeras_3layer")
    result = import_model(_cfg(tmp_path, arch, weights), tmp_path)
    fc1 = next(e for e in result["layers"] if e["name"] == "fc1")
    model = load_model(arch, weights)
    layer = model.get_layer("fc1")
    q = np.asarray(layer.kernel_quantizer_internal(layer.get_weights()[0]))
    assert fc1["nonzero"] == np.count_nonzero(q) < q.size
    assert fc1["bits"] == 6
    assert 0 < result["weight_sparsity"] < 1


def _small_qmodel(n_in: int = 64, n_out: int = 10, seed: int = 0) -> Any:
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((n_in,), name="x")
    h = QActivation(quantized_bits(8, 1, keep_negative=False, alpha=1), name="inq")(inp)
    h = QDense(8, kernel_quantizer=quantized_bits(6, 0, alpha=1),
               bias_quantizer=quantized_bits(6, 0, alpha=1), name="d0")(h)
    h = QActivation(quantized_relu(6), name="r0")(h)
    h = QDense(n_out, kernel_quantizer=quantized_bits(6, 0, alpha=1),
               bias_quantizer=quantized_bits(6, 0, alpha=1), name="d1")(h)
    return tf.keras.Model(inp, h)


def test_import_model_with_matching_data_writes_data(tmp_path: Path) -> None:
    model = _small_qmodel()
    path = tmp_path / "small.h5"
    model.save(path)
    result = import_model(_cfg(tmp_path, path), tmp_path / "run")
    out = tmp_path / "run" / "model"
    assert result["has_data"] is True and result["data_file"] == "data.npz"
    with np.load(out / "data.npz") as d:
        X, y = d["X_test"], d["y_test"]
    expected = float(np.mean(np.argmax(model.predict(X, verbose=0), axis=1) == y))
    assert result["test_accuracy"] == pytest.approx(expected)
    # BOPs = nonzero x weight bits x input bits, measured per layer
    layers = {e["name"]: e for e in result["layers"]}
    assert layers["d0"]["input_bits"] == 8 and layers["d1"]["input_bits"] == 6
    assert result["bops"] == layers["d0"]["nonzero"] * 6 * 8 + layers["d1"]["nonzero"] * 6 * 6


def test_json_plus_weights_round_trip(tmp_path: Path) -> None:
    model = _small_qmodel(n_in=5, n_out=3)
    arch, weights = tmp_path / "m.json", tmp_path / "m_weights.h5"
    arch.write_text(model.to_json())
    model.save_weights(weights)
    loaded = load_model(arch, weights)
    x = np.random.default_rng(1).random((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_pruning_wrappers_are_stripped(tmp_path: Path) -> None:
    import tensorflow_model_optimization as tfmot

    pruned = tf.keras.models.clone_model(
        _small_qmodel(n_in=5, n_out=3),
        clone_function=lambda layer: tfmot.sparsity.keras.prune_low_magnitude(layer)
        if type(layer).__name__ == "QDense" else layer,
    )
    path = tmp_path / "pruned.h5"
    pruned.save(path)
    model = load_model(path)
    assert [type(layer).__name__ for layer in model.layers] == [
        "InputLayer", "QActivation", "QDense", "QActivation", "QDense"]


# ----------------------------------------------------------------------------- bad inputs

def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelImportError, match="nothere.h5 does not exist"):
        load_model(tmp_path / "nothere.h5")


def test_missing_weights_file(tmp_path: Path) -> None:
    arch, _ = _ref("qkeras_3layer")
    with pytest.raises(ModelImportError, match="weights file .*nothere_weights.h5 does not exist"):
        load_model(arch, tmp_path / "nothere_weights.h5")


def test_truncated_h5(tmp_path: Path) -> None:
    good = tmp_path / "good.h5"
    _small_qmodel(n_in=5, n_out=3).save(good)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelImportError, match="cut.h5.*truncated or corrupt"):
        load_model(cut)


def test_truncated_weights_h5(tmp_path: Path) -> None:
    arch, weights = _ref("qkeras_3layer")
    cut = tmp_path / "cut_weights.h5"
    cut.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelImportError, match="cut_weights.h5"):
        load_model(arch, cut)


def test_weights_only_h5_as_model(tmp_path: Path) -> None:
    _, weights = _ref("qkeras_3layer")
    with pytest.raises(ModelImportError, match="no model architecture"):
        load_model(weights)


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2, 3]", "not a Keras model"),
        ('{"hello": "world"}', "not a Keras model"),
        ('{"class_name": "Dense", "config": {"units": 3}}', "'Dense', not a model"),
        ('{"class_name": "Sequential", "config": {"layers": [{"class_name": "NoSuchLayer", "config": {}}]}}',
         "cannot build the model"),
    ],
)
def test_json_that_is_not_a_model(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    _, weights = _ref("qkeras_3layer")
    with pytest.raises(ModelImportError, match=match) as info:
        load_model(path, weights)
    assert "bad.json" in str(info.value)


def test_json_without_weights(tmp_path: Path) -> None:
    arch, _ = _ref("qkeras_3layer")
    with pytest.raises(ModelImportError, match="weights_path"):
        load_model(arch)


def test_weights_of_another_model_name_the_layer() -> None:
    arch, _ = _ref("qkeras_3layer")
    _, other = _ref("KERAS_3layer")
    with pytest.raises(ModelImportError, match="no weights for layer 'fc1' \\(QDense\\)"):
        load_model(arch, other)


def test_weights_with_wrong_shapes_name_the_layer(tmp_path: Path) -> None:
    small = _small_qmodel(n_in=5, n_out=3)
    arch = tmp_path / "m.json"
    arch.write_text(small.to_json())
    wider = _small_qmodel(n_in=6, n_out=3)  # same layer names, d0 kernel is 6x8 instead of 5x8
    weights = tmp_path / "wider_weights.h5"
    wider.save_weights(weights)
    with pytest.raises(ModelImportError, match="layer 'd0' \\(QDense\\) have shapes \\[\\(6, 8\\)"):
        load_model(arch, weights)


def _check_unsupported(tmp_path: Path, model: Any, layer: str, cls: str) -> None:
    path = tmp_path / "unsupported.h5"
    model.save(path)
    with pytest.raises(ModelImportError) as info:
        load_model(path)
    msg = str(info.value)
    assert f"'{layer}'" in msg and cls in msg and "unsupported.h5" in msg
    assert ", ".join(SUPPORTED_LAYERS) in msg


def test_unsupported_conv3d(tmp_path: Path) -> None:
    inp = tf.keras.Input((4, 4, 4, 1))
    x = tf.keras.layers.Conv3D(2, 3, name="conv")(inp)
    x = tf.keras.layers.Flatten(name="flat")(x)
    _check_unsupported(tmp_path, tf.keras.Model(inp, tf.keras.layers.Dense(2)(x)), "conv", "Conv3D")


def test_unsupported_lstm(tmp_path: Path) -> None:
    inp = tf.keras.Input((3, 2))
    x = tf.keras.layers.LSTM(4, name="lstm")(inp)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(2, name="out")(x))
    _check_unsupported(tmp_path, model, "lstm", "LSTM")


def test_unsupported_layer_after_supported_ones(tmp_path: Path) -> None:
    inp = tf.keras.Input((6,))
    x = tf.keras.layers.Dense(6, name="d")(inp)
    x = tf.keras.layers.RepeatVector(2, name="rep")(x)
    model = tf.keras.Model(inp, tf.keras.layers.LSTM(3, name="lstm")(x))
    _check_unsupported(tmp_path, model, "rep", "RepeatVector")


def test_non_flat_input_refused(tmp_path: Path) -> None:
    inp = tf.keras.Input((3, 2))
    model = tf.keras.Model(inp, tf.keras.layers.Dense(2, name="d")(inp))
    path = tmp_path / "nonflat.h5"
    model.save(path)
    with pytest.raises(ModelImportError, match="nonflat.h5: input shape \\(3, 2\\) is not a flat vector"):
        load_model(path)


def test_unsupported_activation_names_layer(tmp_path: Path) -> None:
    inp = tf.keras.Input((4,))
    model = tf.keras.Model(inp, tf.keras.layers.Dense(3, activation="tanh", name="dt")(inp))
    path = tmp_path / "tanh.h5"
    model.save(path)
    with pytest.raises(ModelImportError, match="layer 'dt' \\(Dense\\): activation 'tanh'.*linear, relu, softmax"):
        load_model(path)


def test_unsupported_quantizer_names_layer(tmp_path: Path) -> None:
    from qkeras import QActivation, quantized_tanh

    inp = tf.keras.Input((4,))
    x = tf.keras.layers.Dense(3, name="d")(inp)
    model = tf.keras.Model(inp, QActivation(quantized_tanh(4), name="qt")(x))
    path = tmp_path / "qtanh.h5"
    model.save(path)
    with pytest.raises(ModelImportError, match="layer 'qt' \\(QActivation\\).*quantized_tanh.*quantized_relu"):
        load_model(path)


def test_unsupported_file_type(tmp_path: Path) -> None:
    path = tmp_path / "model.keras"
    path.write_bytes(b"PK")
    with pytest.raises(ModelImportError, match="model.keras.*'.keras'.*valid"):
        load_model(path)


def test_import_needs_import_path(tmp_path: Path) -> None:
    with pytest.raises(ModelImportError, match="model.import_path"):
        import_model(config.from_dict({}), tmp_path)
    assert not (tmp_path / "model").exists()


def test_failed_import_keeps_previous_stage(tmp_path: Path) -> None:
    arch, weights = _ref("qkeras_3layer")
    import_model(_cfg(tmp_path, arch, weights), tmp_path)
    before = (tmp_path / "model" / "result.json").read_text()
    _, other = _ref("KERAS_3layer")
    with pytest.raises(ModelImportError):
        import_model(_cfg(tmp_path, arch, other), tmp_path)
    assert (tmp_path / "model" / "result.json").read_text() == before
    assert json.loads(before)["weights_path"] == str(weights)


# ----------------------------------------------------------------------------- CNNs and model_input

def _small_cnn(**conv: Any) -> Any:
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

    inp = tf.keras.Input((6, 6, 2), name="x_in")
    x = QConv2D(3, 3, kernel_quantizer=quantized_bits(6, 0, alpha=1),
                bias_quantizer=quantized_bits(6, 0, alpha=1), name="conv_0", **conv)(inp)
    x = QActivation(quantized_relu(6, 1), name="crelu_0")(x)
    x = tf.keras.layers.MaxPooling2D(2, name="pool_0")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    return tf.keras.Model(inp, QDense(4, kernel_quantizer=quantized_bits(6, 0, alpha=1), name="dense_0")(x))


def test_model_input_reshapes_flat_rows_row_major() -> None:
    model = _small_cnn()
    X = np.arange(3 * 72, dtype=np.float32).reshape(3, 72)
    shaped = model_input(model, X)
    assert shaped.shape == (3, 6, 6, 2)
    # channels last, row-major: flat index (h * 6 + w) * 2 + c
    assert shaped[1, 2, 4, 1] == X[1, (2 * 6 + 4) * 2 + 1]
    assert model_input(model, shaped) is shaped  # already shaped: passed through
    assert model_input((6, 6, 2), X).shape == (3, 6, 6, 2)  # a shape instead of a model
    flat = np.ones((5, 16), dtype=np.float32)
    assert model_input((16,), flat) is flat  # an MLP's input is the data itself
    assert model_input(model, X[:0]).shape == (0, 6, 6, 2)


@pytest.mark.parametrize("shape", [(3, 71), (3, 6, 6, 1), (3, 6, 12), (72,)])
def test_model_input_error_names_both_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(DataError) as info:
        model_input(_small_cnn(), np.zeros(shape, dtype=np.float32))
    msg = str(info.value)
    assert f"data of shape {shape}" in msg and "input shape (None, 6, 6, 2)" in msg and "(samples, 72)" in msg


def test_cnn_loads_and_predicts_on_flat_data(tmp_path: Path) -> None:
    model = _small_cnn()
    path = tmp_path / "cnn.h5"
    model.save(path)
    loaded = load_model(path)
    assert [type(layer).__name__ for layer in loaded.layers] == [
        "InputLayer", "QConv2D", "QActivation", "MaxPooling2D", "Flatten", "QDense"]
    X = np.random.default_rng(0).integers(0, 17, (4, 72)) / 16.0
    np.testing.assert_array_equal(loaded.predict(model_input(loaded, X), verbose=0),
                                  model.predict(model_input(model, X), verbose=0))


def test_import_cnn_measures_accuracy_on_flat_data(tmp_path: Path) -> None:
    model = _small_cnn()
    path = tmp_path / "cnn.h5"
    model.save(path)
    rng = np.random.default_rng(1)
    X, y = rng.integers(0, 17, (40, 72)) / 16.0, rng.integers(0, 4, 40)
    npz = tmp_path / "img.npz"
    np.savez(npz, X_train=X[:30], y_train=y[:30], X_test=X[30:], y_test=y[30:])
    cfg = config.from_dict({"model": {"import_path": str(path)},
                            "data": {"dataset": "npz", "path": str(npz)}})
    result = import_model(cfg, tmp_path / "run")
    assert (result["n_features"], result["input_shape"], result["has_data"]) == (72, [6, 6, 2], True)
    expected = float(np.mean(np.argmax(model.predict(X[30:].reshape(-1, 6, 6, 2), verbose=0), 1) == y[30:]))
    assert result["test_accuracy"] == pytest.approx(expected)
    conv = {e["name"]: e for e in result["layers"]}["conv_0"]
    assert (conv["weights"], conv["uses"], conv["input_bits"]) == (3 * 3 * 2 * 3, 16, None)


def test_dilated_conv_refused(tmp_path: Path) -> None:
    path = tmp_path / "dilated.h5"
    _small_cnn(dilation_rate=2).save(path)
    with pytest.raises(ModelImportError,
                       match="dilated.h5: layer 'conv_0' \\(QConv2D\\): unsupported dilation_rate"):
        load_model(path)


def test_dense_on_an_image_refused(tmp_path: Path) -> None:
    inp = tf.keras.Input((4, 4, 1))
    x = tf.keras.layers.Conv2D(2, 3, name="c")(inp)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(2, name="d")(x))  # no Flatten
    path = tmp_path / "noflat.h5"
    model.save(path)
    with pytest.raises(ModelImportError, match="layer 'd' \\(Dense\\) gets a 3-D input.*Flatten"):
        load_model(path)
