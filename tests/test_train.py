"""Training stage: the layer-name contract, measured metrics, pruning modes, determinism, targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codesign import config, model_stats, rundir, train
from codesign.config import Config
from codesign.data import load_dataset
from codesign.errors import ConfigError, DataError
from codesign.model_io import load_model

#: Small and quick: a few epochs of a narrow MLP; every test overrides from here.
FAST = {"model.hidden": [16, 12], "training.epochs": 3}


def _cfg(**over: Any) -> Config:
    return config.from_dict({}).replace(**{**FAST, **over})


def _dense_kernels(model: Any) -> dict[str, np.ndarray]:
    return {layer.name: model_stats.quantized_weights(layer)[0] for layer in model.layers
            if type(layer).__name__ == "QDense"}


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Path, dict[str, Any]]:
    cfg = _cfg(**{"model.layer_bits": {"dense_1": 4, "relu_0": 5}, "pruning.target_sparsity": 0.5,
                  "training.epochs": 8})
    run_dir = tmp_path_factory.mktemp("run")
    return cfg, run_dir, train.run(cfg, run_dir)


@pytest.mark.train
def test_stage_files_and_result(fast_run: tuple[Config, Path, dict[str, Any]]) -> None:
    cfg, run_dir, result = fast_run
    out = run_dir / "model"
    assert sorted(p.name for p in out.iterdir()) == ["data.npz", "model.h5", "result.json"]
    assert not list(run_dir.glob(".model*"))  # no partial directory left behind
    assert rundir.read_json(out / "result.json") == result
    assert result["source"] == "trained" and result["has_data"] is True
    assert result["model_file"] == "model.h5" and result["data_file"] == "data.npz"
    assert result["train_seconds"] > 0


@pytest.mark.train
def test_layer_name_and_quantizer_contract(fast_run: tuple[Config, Path, dict[str, Any]]) -> None:
    cfg, run_dir, _ = fast_run
    model = load_model(run_dir / "model" / "model.h5")
    names = [(layer.name, type(layer).__name__) for layer in model.layers]
    assert names == [("x_in", "InputLayer"), ("inq", "QActivation"), ("dense_0", "QDense"),
                     ("relu_0", "QActivation"), ("dense_1", "QDense"), ("relu_1", "QActivation"),
                     ("dense_2", "QDense")]
    assert train.layer_names(cfg) == [n for n, _ in names[1:]]
    inq = model.get_layer("inq").quantizer
    assert type(inq).__name__ == "quantized_bits"
    assert (inq.bits, inq.integer, inq.keep_negative) == (cfg.model.input_bits, 1, False)
    # 1.0 and every k/16 pass the input quantizer unchanged
    grid = np.arange(17, dtype=np.float32) / 16
    np.testing.assert_array_equal(np.asarray(inq(grid)), grid)
    bits = {layer.name: layer.kernel_quantizer_internal.bits for layer in model.layers
            if type(layer).__name__ == "QDense"}
    assert bits == {"dense_0": 6, "dense_1": 4, "dense_2": 6}  # layer_bits override for dense_1
    assert model.get_layer("relu_0").quantizer.bits == 5 and model.get_layer("relu_1").quantizer.bits == 6
    assert model.get_layer("dense_1").bias_quantizer_internal.bits == 4
    assert model.get_layer("dense_2").get_config()["activation"] == "linear"  # logits
    assert model.outputs[0].shape[-1] == 10


@pytest.mark.train
def test_data_npz_is_the_split_used(fast_run: tuple[Config, Path, dict[str, Any]]) -> None:
    cfg, run_dir, result = fast_run
    ds = load_dataset(cfg.data, cfg.training.seed)
    with np.load(run_dir / "model" / "data.npz") as d:
        for key in ("X_train", "y_train", "X_test", "y_test"):
            np.testing.assert_array_equal(d[key], getattr(ds, key))
    assert (result["n_train"], result["n_test"]) == (len(ds.X_train), len(ds.X_test))


@pytest.mark.train
def test_metrics_are_measured_from_the_saved_model(fast_run: tuple[Config, Path, dict[str, Any]]) -> None:
    _, run_dir, result = fast_run
    model = load_model(run_dir / "model" / "model.h5")
    with np.load(run_dir / "model" / "data.npz") as d:
        X, y = d["X_test"], d["y_test"]
    acc = float(np.mean(np.argmax(model.predict(X, verbose=0), axis=1) == y))
    assert result["test_accuracy"] == pytest.approx(acc)
    assert result["test_accuracy"] > 0.5, result["test_accuracy"]  # 8 epochs learn (chance: 0.1)
    kernels = _dense_kernels(model)
    layers = {e["name"]: e for e in result["layers"]}
    input_bits = {"dense_0": 8, "dense_1": 5, "dense_2": 6}  # inq, relu_0 (override), relu_1
    bops = 0
    for name, k in kernels.items():
        e = layers[name]
        assert (e["weights"], e["nonzero"]) == (k.size, np.count_nonzero(k))
        assert e["sparsity"] == pytest.approx(1 - np.count_nonzero(k) / k.size)
        assert e["input_bits"] == input_bits[name]
        bops += e["nonzero"] * e["bits"] * e["input_bits"]
    assert result["bops"] == bops
    total = sum(k.size for k in kernels.values())
    assert result["weight_sparsity"] == pytest.approx(1 - sum(np.count_nonzero(k) for k in kernels.values()) / total)


@pytest.mark.train
def test_magnitude_pruning_reaches_target(fast_run: tuple[Config, Path, dict[str, Any]]) -> None:
    _, run_dir, result = fast_run
    model = load_model(run_dir / "model" / "model.h5")
    for layer in model.layers:
        if type(layer).__name__ == "QDense":  # the float kernel itself is pruned (tfmot keeps round(n/2))
            kernel = layer.get_weights()[0]
            assert np.count_nonzero(kernel) <= round(kernel.size * 0.5), layer.name
    for e in result["layers"]:
        if e["weights"]:
            assert e["sparsity"] >= 0.5 - 1 / e["weights"], e
    assert result["weight_sparsity"] >= 0.49


@pytest.mark.parametrize("steps, epochs", [(23, 1), (23, 3), (23, 60), (1, 1), (1, 5), (7, 2), (100, 7)])
def test_prune_schedule_reaches_final_sparsity_inside_training(steps: int, epochs: int) -> None:
    frequency, end_step = train._prune_steps(steps, epochs)
    assert frequency >= 1 and end_step % frequency == 0  # tfmot updates the mask on step end_step
    assert end_step <= max(1, steps * epochs // 2) < steps * epochs or steps * epochs == 1


@pytest.mark.train
def test_no_pruning_when_target_zero(tmp_path: Path) -> None:
    result = train.run(_cfg(**{"pruning.target_sparsity": 0.0}), tmp_path)
    # only weights that quantize to 0 are zero: far from the 50 % default target
    assert result["weight_sparsity"] < 0.25


@pytest.mark.train
def test_iterative_rounds_reach_target(tmp_path: Path) -> None:
    assert train._round_targets(0.6, 3) == [(0.0, pytest.approx(0.2)), (pytest.approx(0.2), pytest.approx(0.4)),
                                            (pytest.approx(0.4), pytest.approx(0.6))]
    result = train.run(_cfg(**{"pruning.target_sparsity": 0.7, "pruning.rounds": 2, "training.epochs": 2}),
                       tmp_path)
    assert result["epochs_total"] == 4
    for e in result["layers"]:
        if e["weights"]:
            assert e["sparsity"] >= 0.7 - 1 / e["weights"], e


@pytest.mark.train
def test_structured_pruning_removes_whole_neurons(tmp_path: Path) -> None:
    cfg = _cfg(**{"pruning.structured": True, "pruning.target_sparsity": 0.5, "pruning.rounds": 2,
                  "training.epochs": 2})
    train.run(cfg, tmp_path)
    model = load_model(tmp_path / "model" / "model.h5")
    dense = [model.get_layer(f"dense_{i}") for i in range(3)]
    for i, layer in enumerate(dense):
        kernel, bias = layer.get_weights()
        dead = np.all(kernel == 0, axis=0) & (bias == 0)
        if i < 2:  # hidden layers: half the neurons gone, together with their bias ...
            assert dead.sum() == round(0.5 * layer.units), (layer.name, dead)
            # ... and the next layer never reads them
            next_kernel = dense[i + 1].get_weights()[0]
            assert np.all(next_kernel[dead, :] == 0)
        else:  # the output layer keeps every class
            assert not dead.any()


@pytest.mark.train
def test_same_seed_same_model_other_seed_differs(tmp_path: Path) -> None:
    cfg = _cfg(**{"training.epochs": 2})
    a = train.run(cfg, tmp_path / "a")
    b = train.run(cfg, tmp_path / "b")
    c = train.run(cfg.replace(**{"training.seed": 5}), tmp_path / "c")
    ka = _dense_kernels(load_model(tmp_path / "a" / "model" / "model.h5"))
    kb = _dense_kernels(load_model(tmp_path / "b" / "model" / "model.h5"))
    kc = _dense_kernels(load_model(tmp_path / "c" / "model" / "model.h5"))
    for name in ka:
        np.testing.assert_array_equal(ka[name], kb[name])
    assert any(not np.array_equal(ka[n], kc[n]) for n in ka)
    assert a["test_accuracy"] == b["test_accuracy"]
    assert c["seed"] == 5


def test_unknown_layer_bits_name_is_refused(tmp_path: Path) -> None:
    cfg = _cfg(**{"model.layer_bits": {"dense_7": 4}})
    with pytest.raises(ConfigError, match="model.layer_bits.dense_7.*valid: dense_0, relu_0"):
        train.run(cfg, tmp_path)
    assert not (tmp_path / "model").exists()


@pytest.mark.train
def test_npz_dataset_and_failure_keeps_previous_stage(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 8, (120, 6)) / 8.0
    y = (X[:, 0] > X[:, 1]).astype(np.int64)  # a learnable 2-class problem
    path = tmp_path / "tiny.npz"
    np.savez(path, X_train=X[:90], y_train=y[:90], X_test=X[90:], y_test=y[90:])
    cfg = _cfg(**{"data.dataset": "npz", "data.path": str(path), "model.hidden": [4],
                  "pruning.target_sparsity": 0.0})
    result = train.run(cfg, tmp_path / "run")
    assert (result["n_features"], result["n_classes"], result["dataset"]) == (6, 2, "tiny")
    model = load_model(tmp_path / "run" / "model" / "model.h5")
    assert model.outputs[0].shape[-1] == 2 and model.inputs[0].shape[-1] == 6
    before = (tmp_path / "run" / "model" / "result.json").read_text()
    with pytest.raises(DataError, match="missing.npz"):
        train.run(cfg.replace(**{"data.path": str(tmp_path / "missing.npz")}), tmp_path / "run")
    assert (tmp_path / "run" / "model" / "result.json").read_text() == before


@pytest.mark.slow
@pytest.mark.train
@pytest.mark.parametrize(
    "over, min_accuracy, min_sparsity",
    [
        ({}, 0.96, 0.49),  # the default: 64-32-32-10, 6 bit, 50 % sparsity, 60 epochs
        ({"model.bits": 4, "pruning.target_sparsity": 0.75}, 0.94, 0.74),
    ],
)
def test_default_accuracy_targets(tmp_path: Path, over: dict[str, Any], min_accuracy: float,
                                  min_sparsity: float) -> None:
    cfg = config.from_dict({}).replace(**over) if over else config.from_dict({})
    result = train.run(cfg, tmp_path)
    summary = {k: result[k] for k in ("test_accuracy", "weight_sparsity", "train_seconds")}
    assert result["test_accuracy"] >= min_accuracy, summary
    assert result["weight_sparsity"] >= min_sparsity, summary
    assert result["train_seconds"] < 60, summary


# ----------------------------------------------------------------------------- CNN

#: The digits CNN, small and quick: 4 filters, 3 epochs.
CNN_FAST = {"model.kind": "cnn", "model.conv_filters": [4], "training.epochs": 3}


def test_cnn_layer_names_and_shapes() -> None:
    cfg = _cfg(**{"model.kind": "cnn", "model.layer_bits": {"conv_0": 4, "crelu_0": 5, "dense_0": 3}})
    assert train.layer_names(cfg) == ["inq", "conv_0", "crelu_0", "pool_0", "flatten", "dense_0"]
    assert train.quantized_layer_names(cfg) == ["inq", "conv_0", "crelu_0", "dense_0"]
    assert train.input_shape(cfg, 64) == (8, 8, 1)
    model = train._connect(train.input_shape(cfg, 64), train._layers(cfg, 10))
    assert model.layers[0].name == "x_in" and tuple(model.input_shape) == (None, 8, 8, 1)
    got = [(layer.name, type(layer).__name__, tuple(layer.output_shape[1:])) for layer in model.layers[1:]]
    assert got == [("inq", "QActivation", (8, 8, 1)),
                   ("conv_0", "QConv2D", (6, 6, 8)), ("crelu_0", "QActivation", (6, 6, 8)),
                   ("pool_0", "MaxPooling2D", (3, 3, 8)), ("flatten", "Flatten", (72,)),
                   ("dense_0", "QDense", (10,))]
    assert [n for n, _, _ in got] == train.layer_names(cfg)
    conv = model.get_layer("conv_0")
    assert conv.get_config()["padding"] == "valid" and tuple(conv.kernel.shape) == (3, 3, 1, 8)
    assert conv.kernel_quantizer_internal.bits == 4 and conv.bias_quantizer_internal.bits == 4
    crelu = model.get_layer("crelu_0").quantizer
    assert (type(crelu).__name__, crelu.bits, crelu.integer) == ("quantized_relu", 5, 1)
    assert model.get_layer("dense_0").kernel_quantizer_internal.bits == 3
    assert model.get_layer("dense_0").get_config()["activation"] == "linear"


def test_cnn_options_change_the_layers() -> None:
    cfg = _cfg(**{"model.kind": "cnn", "model.conv_filters": [4, 6], "model.kernel_size": 2,
                  "model.pool_size": 1, "model.cnn_hidden": [12], "model.image_shape": [4, 6, 2]})
    assert train.layer_names(cfg) == ["inq", "conv_0", "crelu_0", "conv_1", "crelu_1", "flatten",
                                      "dense_0", "relu_0", "dense_1"]
    model = train._connect(train.input_shape(cfg, 48), train._layers(cfg, 3))
    shapes = {layer.name: tuple(layer.output_shape[1:]) for layer in model.layers}
    assert shapes["conv_0"] == (3, 5, 4) and shapes["conv_1"] == (2, 4, 6) and shapes["flatten"] == (48,)
    assert shapes["dense_0"] == (12,) and shapes["dense_1"] == (3,)
    assert model.name == "cnn"


def test_cnn_image_shape_errors(tmp_path: Path) -> None:
    cfg = _cfg(**{"model.kind": "cnn"})
    with pytest.raises(ConfigError, match="model.image_shape: null, and the data's 60 features are not"):
        train.input_shape(cfg, 60)
    with pytest.raises(ConfigError, match=r"model.image_shape: \[8, 4, 1\] holds 32 values but the data has"):
        train.run(cfg.replace(**{"model.image_shape": [8, 4, 1]}), tmp_path)
    with pytest.raises(ConfigError, match="4x4x1 image inferred from the data shrinks to nothing"):
        train.input_shape(cfg.replace(**{"model.conv_filters": [2, 2]}), 16)
    assert not (tmp_path / "model").exists()


def test_cnn_unknown_layer_bits_lists_conv_names(tmp_path: Path) -> None:
    cfg = _cfg(**{"model.kind": "cnn", "model.layer_bits": {"pool_0": 4}})
    with pytest.raises(ConfigError, match="model.layer_bits.pool_0.*valid: conv_0, crelu_0, dense_0$"):
        train.run(cfg, tmp_path)
    with pytest.raises(ConfigError, match="model.layer_bits.crelu_0: 2 bits.*conv_relu_integer_bits = 2"):
        train.run(cfg.replace(**{"model.layer_bits": {"crelu_0": 2}, "model.conv_relu_integer_bits": 2}),
                  tmp_path)


@pytest.mark.train
def test_cnn_trains_prunes_conv_and_reports_it(tmp_path: Path) -> None:
    cfg = _cfg(**{**CNN_FAST, "pruning.target_sparsity": 0.5})
    result = train.run(cfg, tmp_path)
    assert (result["model_kind"], result["input_shape"], result["n_features"]) == ("cnn", [8, 8, 1], 64)
    model = load_model(tmp_path / "model" / "model.h5")
    assert [layer.name for layer in model.layers[1:]] == train.layer_names(cfg)
    with np.load(tmp_path / "model" / "data.npz") as d:
        X, y = d["X_test"], d["y_test"]
    assert X.ndim == 2  # the saved data stays flat
    acc = float(np.mean(np.argmax(model.predict(X.reshape(-1, 8, 8, 1), verbose=0), axis=1) == y))
    assert result["test_accuracy"] == pytest.approx(acc) and acc > 0.3  # 3 epochs learn (chance 0.1)
    layers = {e["name"]: e for e in result["layers"]}
    conv = layers["conv_0"]
    kernel = model_stats.quantized_weights(model.get_layer("conv_0"))[0]
    assert (conv["kind"], conv["weights"], conv["nonzero"], conv["uses"]) == \
        ("QConv2D", 36, np.count_nonzero(kernel), 36)  # 3x3x1x4 weights at 6x6 positions
    assert np.count_nonzero(model.get_layer("conv_0").get_weights()[0]) <= 18  # magnitude-pruned too
    assert conv["sparsity"] >= 0.5 and layers["dense_0"]["sparsity"] >= 0.5 - 1 / 360
    assert (conv["input_bits"], layers["dense_0"]["input_bits"]) == (8, 6)  # through pool and flatten
    assert layers["dense_0"]["uses"] == 1 and layers["pool_0"]["weights"] == 0
    assert result["total_weights"] == 36 + 360
    assert result["bops"] == conv["nonzero"] * 36 * 6 * 8 + layers["dense_0"]["nonzero"] * 6 * 6


@pytest.mark.train
def test_cnn_structured_pruning_removes_whole_filters(tmp_path: Path) -> None:
    cfg = _cfg(**{**CNN_FAST, "model.conv_filters": [4, 6], "model.pool_size": 0, "model.cnn_hidden": [8],
                  "pruning.structured": True, "pruning.target_sparsity": 0.5, "training.epochs": 2})
    train.run(cfg, tmp_path)
    model = load_model(tmp_path / "model" / "model.h5")
    names = ["conv_0", "conv_1", "dense_0", "dense_1"]
    dead = {}
    for name in names:
        kernel, bias = model.get_layer(name).get_weights()
        dead[name] = np.all(kernel.reshape(-1, kernel.shape[-1]) == 0, axis=0) & (bias == 0)
    assert [int(dead[n].sum()) for n in names] == [2, 3, 4, 0]  # half of each hidden layer, no class
    # nothing reads a dead unit: conv_1's input channels, and dense_0's flattened positions of dead
    # conv_1 channels (channels last: flat index = pixel * 6 + channel)
    assert np.all(model.get_layer("conv_1").get_weights()[0][:, :, dead["conv_0"], :] == 0)
    rows = model.get_layer("dense_0").get_weights()[0]  # (4 * 4 * 6, 8)
    assert np.all(rows[np.tile(dead["conv_1"], 16), :] == 0)
    assert np.all(model.get_layer("dense_1").get_weights()[0][dead["dense_0"], :] == 0)


@pytest.mark.slow
@pytest.mark.train
def test_default_cnn_accuracy_target(tmp_path: Path) -> None:
    """The digits CNN: 8x8x1 -> QConv2D(8, 3x3) -> ReLU -> MaxPool 2 -> Flatten -> QDense(10), 6 bit, 50 %."""
    cfg = config.from_dict({"model": {"kind": "cnn"}})
    result = train.run(cfg, tmp_path)
    summary = {k: result[k] for k in ("test_accuracy", "weight_sparsity", "train_seconds")}
    assert result["test_accuracy"] >= 0.95, summary
    assert result["weight_sparsity"] >= 0.49, summary
    for e in result["layers"]:
        if e["weights"]:
            assert e["sparsity"] >= 0.5 - 1 / e["weights"], e  # the conv is pruned as well
    assert result["train_seconds"] < 60, summary
