"""Training levers (issue 16): distillation, lottery-ticket rewinding, structured-pruning criteria,
low-rank Dense layers. Tiny models, few epochs; the measured comparison is
``python -m codesign.tools.bench_toolbox``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codesign import config, distill, low_rank, pruning, train
from codesign.config import Config
from codesign.errors import ConfigError
from codesign.model_io import load_model

#: A narrow MLP, 1 epoch: every test overrides from here.
FAST = {"model.hidden": [16, 12], "training.epochs": 1}


def _cfg(**over: Any) -> Config:
    return config.from_dict({}).replace(**{**FAST, **over})


def _accuracy(model: Any, run_dir: Path) -> float:
    with np.load(run_dir / "model" / "data.npz") as d:
        X, y = d["X_test"], d["y_test"]
    return float(np.mean(np.argmax(model.predict(X, verbose=0), axis=1) == y))


# ----------------------------------------------------------------------------- bad values

@pytest.mark.parametrize("over, match", [
    ({"pruning.criterion": "random"}, r"pruning.criterion: 'random' is invalid; valid: magnitude, taylor, activation"),
    ({"pruning.criterion": "taylor"}, r"pruning.criterion: 'taylor' is invalid; valid: magnitude unless "
                                      r"pruning.structured is true"),
    ({"pruning.rewind_epoch": 1}, r"pruning.rewind_epoch: 1 is invalid; valid: null or 0 .. 0 \(an epoch before "
                                  r"training.epochs = 1\)"),
    ({"pruning.rewind_epoch": -1}, r"pruning.rewind_epoch: -1 is invalid"),
    ({"pruning.rewind_epoch": 0, "pruning.structured": True}, r"pruning.rewind_epoch: 0 is invalid; valid: null "
                                                              r"unless magnitude pruning is on"),
    ({"pruning.rewind_epoch": 0, "pruning.target_sparsity": 0.0}, r"pruning.rewind_epoch: 0 is invalid"),
    ({"training.distill.temperature": 0.0}, r"training.distill.temperature: 0.0 is invalid; valid: > 0"),
    ({"training.distill.alpha": 1.5}, r"training.distill.alpha: 1.5 is invalid; valid: 0 .. 1"),
    ({"training.distill.alpha": -0.1}, r"training.distill.alpha: -0.1 is invalid"),
    ({"training.distill.teacher": "big"}, r"training.distill.teacher: 'big' is invalid; valid: null, \"float\""),
    ({"training.distill.teacher_width": 0}, r"training.distill.teacher_width: 0 is invalid; valid: 1 .. 16"),
    ({"model.low_rank": {"dense_0": 0}}, r"model.low_rank.dense_0: 0 is invalid; valid: a rank >= 1"),
    ({"model.import_path": "x.h5", "training.distill.teacher": "float"},
     r"model.import_path imports a model, so nothing is trained"),
])
def test_bad_lever_values_name_field_and_choices(over: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _cfg(**over)


def test_low_rank_names_and_ranks_are_checked_against_the_model() -> None:
    cfg = _cfg(**{"model.low_rank": {"dense_1": 5}})
    shapes = train.dense_shapes(cfg, 64, 10)
    assert shapes == {"dense_0": (64, 16), "dense_1": (16, 12), "dense_2": (12, 10)}
    low_rank.check(cfg.model.low_rank, shapes)  # fine
    with pytest.raises(ConfigError, match="model.low_rank.dense_7: no such dense layer in this model; "
                                          "valid: dense_0, dense_1, dense_2"):
        low_rank.check({"dense_7": 2}, shapes)
    with pytest.raises(ConfigError, match=r"model.low_rank.dense_1: rank 12 is invalid for a 16 x 12 kernel; "
                                          r"valid: 1 .. 11"):
        low_rank.check({"dense_1": 12}, shapes)
    assert train.layer_names(cfg) == ["inq", "dense_0", "relu_0", "dense_1_u", "dense_1", "relu_1", "dense_2"]
    cnn = _cfg(**{"model.kind": "cnn", "model.cnn_hidden": [6]})
    assert train.dense_shapes(cnn, 64, 10) == {"dense_0": (72, 6), "dense_1": (6, 10)}  # 3x3x8 after the pool


def test_init_documents_every_lever() -> None:
    text = config.example_yaml()
    for key in ("low_rank: {}", "rewind_epoch: null", "criterion: magnitude", "distill:", "teacher: null",
                "teacher_width: 1", "temperature: 4.0", "alpha: 0.5"):
        assert key in text, key
    assert config.from_dict(__import__("yaml").safe_load(text)) == Config()


# ----------------------------------------------------------------------------- pieces, no training

def test_distill_loss_matches_its_formula() -> None:
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    y = rng.integers(0, 4, 5)
    packed = distill.targets(y, t)
    assert packed.shape == (5, 5) and np.array_equal(packed[:, 0], y.astype(np.float32))

    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z.astype(np.float64)
        return z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)

    T, alpha = 3.0, 0.25
    hard = -log_softmax(s)[np.arange(5), y]
    soft = (np.exp(log_softmax(t / T)) * (log_softmax(t / T) - log_softmax(s / T))).sum(1) * T * T
    got = np.asarray(distill.loss(T, alpha)(packed, s))
    np.testing.assert_allclose(got, (1 - alpha) * hard + alpha * soft, rtol=1e-5)
    # the student equal to the teacher: the soft term vanishes
    np.testing.assert_allclose(np.asarray(distill.loss(T, 1.0)(distill.targets(y, s), s)), 0.0, atol=1e-6)
    acc = np.asarray(distill.accuracy_metric()(packed, s))
    np.testing.assert_array_equal(acc, (np.argmax(s, 1) == y).astype(np.float32))


def test_magnitude_masks_prune_smallest_and_keep_pruned() -> None:
    class Layer:
        def __init__(self, w: np.ndarray) -> None:
            self.kernel = type("V", (), {"numpy": lambda _self: w, "shape": w.shape})()

    w = np.array([[0.5, -0.1], [0.05, -2.0], [0.3, 0.2]], dtype=np.float32)
    (m,) = pruning.magnitude_masks([Layer(w)], [np.ones_like(w)], 0.5)
    np.testing.assert_array_equal(m, [[1, 0], [0, 1], [1, 0]])
    # an already pruned weight stays pruned even when it is the largest; one more goes (0.05)
    prev = np.array([[1, 1], [1, 0], [1, 1]], dtype=np.float32)
    (m2,) = pruning.magnitude_masks([Layer(w)], [prev], 1 / 3)
    np.testing.assert_array_equal(m2, [[1, 1], [0, 0], [1, 1]])


def test_rewinding_resets_survivors_to_the_early_weights() -> None:
    """train_rewound with a stand-in for fit: every round starts from the snapshot, masked."""
    model = train._connect((6,), train._layers(_cfg(**{"model.hidden": [5]}), 3))
    prunable = [layer for layer in model.layers if train._prunable(layer)]
    rng = np.random.default_rng(1)
    starts: list[list[np.ndarray]] = []

    def fake_fit(m: Any, callbacks: list[Any]) -> None:
        for cb in callbacks:
            cb.set_model(m)
            cb.on_train_begin()
        starts.append([w.copy() for w in m.get_weights()])
        for epoch in range(2):  # "training": random steps
            m.set_weights([w + rng.normal(size=w.shape).astype(np.float32) for w in m.get_weights()])
            for cb in callbacks:
                cb.on_train_batch_end(0)
                cb.on_epoch_end(epoch)

    pruning.train_rewound(model, prunable, train._round_targets(0.6, 2), 1, fake_fit)
    assert len(starts) == 3  # unpruned training, then two pruned rounds
    snapshot = None
    for k, w in enumerate(starts[1:]):
        if snapshot is None:  # the weights after epoch 1 of the first fit, masked
            snapshot = w
        kernels = [i for i, a in enumerate(w) if a.ndim == 2]
        for i in range(len(w)):
            kept = w[i] != 0
            np.testing.assert_array_equal(w[i][kept], snapshot[i][kept])  # survivors: the early values
        for i in kernels:
            assert np.count_nonzero(w[i] == 0) >= round((0.3, 0.6)[k] * w[i].size)
    final = [layer.kernel.numpy() for layer in prunable]
    for kern in final:
        assert np.count_nonzero(kern == 0) == round(0.6 * kern.size)


def test_criteria_scores_see_dead_and_silent_units() -> None:
    import tensorflow as tf

    cfg = _cfg(**{"model.hidden": [4]})
    model = train._connect((6,), train._layers(cfg, 3))
    d0 = model.get_layer("dense_0")
    k, b = d0.get_weights()
    k[:, 1] = 0.0
    b[1] = 0.0  # unit 1: no weights, never fires, no Taylor importance
    b[2] = -0.9
    k[:, 2] = -0.5  # unit 2: negative for every nonnegative input: never fires
    d0.set_weights([k, b])
    X = np.random.default_rng(0).uniform(0, 1, (64, 6)).astype(np.float32)
    y = np.arange(64) % 3
    (act,) = pruning.activation_scores(model, [d0], X)
    assert act[1] == 0.0 and act[2] == 0.0 and act[0] + act[3] > 0
    (tay,) = pruning.taylor_scores(model, [d0], X, y, 16)
    assert tay[1] == 0.0 and tay.shape == (4,)
    # by hand for one batch: (sum over unit j of w * dL/dw)^2
    with tf.GradientTape() as tape:
        loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, model(X, training=False))
    gk, gb = tape.gradient(loss, [d0.kernel, d0.bias])
    want = ((k * gk.numpy()).sum(0) + b * gb.numpy()) ** 2
    np.testing.assert_allclose(pruning.taylor_scores(model, [d0], X, y, 64)[0], want, rtol=1e-5)


# ----------------------------------------------------------------------------- trained

@pytest.mark.train
def test_distillation_from_a_float_teacher_is_recorded(tmp_path: Path) -> None:
    cfg = _cfg(**{"training.distill": {"teacher": "float", "teacher_width": 2, "temperature": 2.0, "alpha": 0.7,
                                       "teacher_epochs": 2}})
    result = train.run(cfg, tmp_path)
    d = result["distill"]
    assert (d["teacher"], d["temperature"], d["alpha"], d["teacher_epochs"]) == ("float (width x2)", 2.0, 0.7, 2)
    assert 0.3 < d["teacher_accuracy"] <= 1.0  # 2 epochs learn (chance: 0.1)
    curves = result["curves"]
    assert len(curves["test_accuracy"]) == 1 and curves["round_starts"] == [0]
    assert len(curves["teacher_test_accuracy"]) == 2
    assert curves["teacher_test_accuracy"][-1] == d["teacher_accuracy"]
    model = load_model(tmp_path / "model" / "model.h5")
    assert curves["test_accuracy"][-1] == result["test_accuracy"] == pytest.approx(_accuracy(model, tmp_path))
    assert result["weight_sparsity"] >= 0.49  # the student is still pruned


@pytest.mark.train
def test_distillation_from_an_h5_teacher(tmp_path: Path) -> None:
    cfg = _cfg(**{"pruning.target_sparsity": 0.0})
    teacher = distill.float_model(cfg, (64,), 10)  # untrained: its accuracy is whatever it measures
    path = tmp_path / "teacher.h5"
    teacher.save(path)
    X_test = None
    result = train.run(cfg.replace(**{"training.distill.teacher": str(path)}), tmp_path / "run")
    with np.load(tmp_path / "run" / "model" / "data.npz") as d:
        X_test, y_test = d["X_test"], d["y_test"]
    want = float(np.mean(np.argmax(teacher.predict(X_test, verbose=0), axis=1) == y_test))
    assert result["distill"]["teacher"] == str(path) and result["distill"]["teacher_accuracy"] == want
    assert result["distill"]["teacher_epochs"] is None and result["curves"]["teacher_test_accuracy"] == []
    wrong = distill.float_model(cfg, (64,), 7)
    wrong.save(tmp_path / "wrong.h5")
    with pytest.raises(ConfigError, match="training.distill.teacher: .*wrong.h5 maps 64 inputs to 7 outputs; "
                                          "the data has 64 features and 10 classes"):
        train.run(cfg.replace(**{"training.distill.teacher": str(tmp_path / "wrong.h5")}), tmp_path / "w")
    with pytest.raises(ConfigError, match="training.distill.teacher: .*missing.h5 does not exist"):
        train.run(cfg.replace(**{"training.distill.teacher": str(tmp_path / "missing.h5")}), tmp_path / "w")


@pytest.mark.train
def test_rewound_pruning_reaches_target_and_records_rounds(tmp_path: Path) -> None:
    cfg = _cfg(**{"pruning.target_sparsity": 0.8, "pruning.rounds": 2, "pruning.rewind_epoch": 0})
    result = train.run(cfg, tmp_path)
    assert result["pruning"]["rewind_epoch"] == 0 and result["pruning"]["criterion"] == "magnitude"
    assert result["epochs_total"] == 3  # unpruned, then two rounds
    assert result["curves"]["round_starts"] == [0, 1, 2] and len(result["curves"]["test_accuracy"]) == 3
    model = load_model(tmp_path / "model" / "model.h5")
    for layer in model.layers:
        if type(layer).__name__ == "QDense":
            kernel = layer.get_weights()[0]
            assert np.count_nonzero(kernel) == kernel.size - round(0.8 * kernel.size), layer.name
    assert result["test_accuracy"] == pytest.approx(_accuracy(model, tmp_path))


@pytest.mark.train
@pytest.mark.parametrize("criterion", ["taylor", "activation"])
def test_structured_criteria_remove_whole_neurons(tmp_path: Path, criterion: str) -> None:
    cfg = _cfg(**{"pruning.structured": True, "pruning.criterion": criterion, "pruning.target_sparsity": 0.5})
    result = train.run(cfg, tmp_path)
    assert result["pruning"]["criterion"] == criterion
    model = load_model(tmp_path / "model" / "model.h5")
    dense = [model.get_layer(f"dense_{i}") for i in range(3)]
    for i, layer in enumerate(dense[:2]):
        kernel, bias = layer.get_weights()
        dead = np.all(kernel == 0, axis=0) & (bias == 0)
        assert dead.sum() == round(0.5 * layer.units), (layer.name, dead)
        assert np.all(dense[i + 1].get_weights()[0][dead, :] == 0)


@pytest.mark.train
def test_low_rank_dense_is_two_dense_layers(tmp_path: Path) -> None:
    cfg = _cfg(**{"model.low_rank": {"dense_0": 4}, "pruning.target_sparsity": 0.0,
                  "model.layer_bits": {"dense_0_u": 5}})
    result = train.run(cfg, tmp_path)
    model = load_model(tmp_path / "model" / "model.h5")
    names = [(layer.name, type(layer).__name__) for layer in model.layers[1:]]
    assert names == [("inq", "QActivation"), ("dense_0_u", "QDense"), ("dense_0", "QDense"),
                     ("relu_0", "QActivation"), ("dense_1", "QDense"), ("relu_1", "QActivation"),
                     ("dense_2", "QDense")]
    assert model.get_layer("dense_0_u").get_weights()[0].shape == (64, 4)
    assert model.get_layer("dense_0").get_weights()[0].shape == (4, 16)
    assert model.get_layer("dense_0_u").kernel_quantizer_internal.bits == 5
    layers = {e["name"]: e for e in result["layers"]}
    lr = result["low_rank"]["dense_0"]
    assert (lr["rank"], lr["n_in"], lr["n_out"], lr["multipliers_full"], lr["multipliers"]) == \
        (4, 64, 16, 1024, 320)
    assert lr["nonzero"] == layers["dense_0_u"]["nonzero"] + layers["dense_0"]["nonzero"]
    assert result["test_accuracy"] == pytest.approx(_accuracy(model, tmp_path))
    assert result["distill"] is None and result["curves"] is None


@pytest.mark.slow
@pytest.mark.train
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_low_rank_model_converts_and_verifies_bit_exact(tmp_path: Path) -> None:
    """U and V are two ordinary Dense layers downstream: C-sim equals QKeras on every test row and
    the RTL equals the C-sim on the test set and random vectors."""
    from codesign.flow import run_flow

    cfg = _cfg(**{"model.low_rank": {"dense_0": 4, "dense_2": 3}, "training.epochs": 3,
                  "verify.random_vectors": 200, "output_dir": str(tmp_path)})
    res = run_flow(cfg, tmp_path, stages="train,convert,rtl,verify")
    cmp = res["hls"]["csim_vs_qkeras"]
    assert cmp["exact_rows"] == cmp["rows"] == 360
    assert [layer["name"] for layer in res["hls"]["layers"] if layer["kind"] == "dense"] == \
        ["dense_0_u", "dense_0", "dense_1", "dense_2_u", "dense_2"]
    sim = res["sim"]
    assert sim["passed"] and sim["mismatches"] == 0 and sim["vectors_checked"] == 360 + 200
