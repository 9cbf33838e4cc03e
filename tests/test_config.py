"""Config validation: every error names the field; the example YAML is the default config."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from codesign import config
from codesign.config import Config
from codesign.errors import ConfigError


def test_empty_is_default() -> None:
    assert config.from_dict({}) == Config()
    assert config.from_dict(None) == Config()
    assert config.load(None) == Config()


def test_unknown_field_names_it_and_lists_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        config.from_dict({"training": {"epoch": 5}})
    msg = str(info.value)
    assert "training.epoch" in msg
    for valid in ("epochs", "batch_size", "learning_rate", "seed"):
        assert valid in msg


def test_unknown_top_level_section() -> None:
    with pytest.raises(ConfigError, match="trainng: unknown field.*training"):
        config.from_dict({"trainng": {}})


@pytest.mark.parametrize(
    "data, field",
    [
        ({"training": {"epochs": "ten"}}, "training.epochs"),
        ({"training": {"epochs": 2.5}}, "training.epochs"),
        ({"training": {"epochs": True}}, "training.epochs"),  # bool is not an int here
        ({"training": {"learning_rate": "fast"}}, "training.learning_rate"),
        ({"pruning": {"structured": "yes"}}, "pruning.structured"),
        ({"model": {"hidden": 32}}, "model.hidden"),
        ({"model": {"hidden": [32, "x"]}}, "model.hidden[1]"),
        ({"model": {"layer_bits": [1, 2]}}, "model.layer_bits"),
        ({"model": {"layer_bits": {"dense_0": "six"}}}, "model.layer_bits.dense_0"),
        ({"data": {"dataset": 3}}, "data.dataset"),
        ({"hls": "fast"}, "hls"),
    ],
)
def test_wrong_type_names_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.from_dict(data)
    assert str(info.value).startswith(field)


@pytest.mark.parametrize(
    "dotted, value",
    [
        ("data.dataset", "mnist"),
        ("data.test_fraction", 0.95),
        ("data.test_fraction", 0.0),
        ("model.kind", "rnn"),
        ("model.conv_filters", [8, 0]),
        ("model.kernel_size", 0),
        ("model.kernel_size", 16),
        ("model.pool_size", -1),
        ("model.pool_size", 17),
        ("model.image_shape", [8, 8]),
        ("model.image_shape", [8, 0, 1]),
        ("model.cnn_hidden", [16, 0]),
        ("model.conv_relu_integer_bits", 6),  # must stay below bits (6)
        ("model.conv_relu_integer_bits", -1),
        ("model.hidden", [0, 32]),
        ("model.bits", 1),
        ("model.bits", 17),
        ("model.integer_bits", 6),  # must stay below bits (6)
        ("model.integer_bits", -1),
        ("model.input_bits", 1),
        ("model.layer_bits", {"dense_1": 40}),
        ("pruning.target_sparsity", 1.0),
        ("pruning.target_sparsity", -0.1),
        ("pruning.rounds", 0),
        ("training.epochs", 0),
        ("training.batch_size", 0),
        ("training.learning_rate", 0.0),
        ("training.learning_rate", 1.5),
        ("hls.strategy", "Fast"),
        ("hls.reuse_factor", 0),
        ("hls.clock_period_ns", 0.0),
        ("hls.layer_reuse_factor", {"dense_0": 0}),
        ("hls.layer_strategy", {"dense_0": "latency"}),
        ("verify.simulator", "modelsim"),
        ("verify.input_gap_prob", 1.0),
        ("verify.backpressure_prob", -0.5),
        ("verify.random_vectors", -1),
    ],
)
def test_out_of_range_names_field(dotted: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        Config().replace(**{dotted: value})
    assert str(info.value).startswith(dotted), str(info.value)


def test_out_of_range_lists_valid_choices() -> None:
    with pytest.raises(ConfigError, match="hls.strategy: 'Fast' is invalid; valid: Latency, Resource"):
        Config().replace(**{"hls.strategy": "Fast"})
    with pytest.raises(ConfigError, match="model.integer_bits.*0 .. 3"):
        Config().replace(**{"model.bits": 4, "model.integer_bits": 4})


def test_model_kind_lists_valid_choices() -> None:
    with pytest.raises(ConfigError, match="model.kind: 'rnn' is invalid; valid: mlp, cnn"):
        Config().replace(**{"model.kind": "rnn"})


def test_cnn_defaults() -> None:
    m = config.from_dict({"model": {"kind": "cnn"}}).model
    assert (m.kind, m.conv_filters, m.kernel_size, m.pool_size, m.image_shape, m.cnn_hidden) == \
        ("cnn", (8,), 3, 2, None, ())
    assert m.conv_relu_integer_bits == 1
    assert m.hidden == (32, 32)  # the MLP's widths stay as they were (the CNN ignores them)


def test_cnn_fields_parse_and_round_trip(tmp_path: Path) -> None:
    cfg = Config().replace(**{"model.kind": "cnn", "model.conv_filters": [4, 8], "model.kernel_size": 2,
                              "model.pool_size": 0, "model.image_shape": [10, 6, 2],
                              "model.cnn_hidden": [16]})
    assert cfg.model.image_shape == (10, 6, 2) and cfg.model.conv_filters == (4, 8)
    path = tmp_path / "cnn.yaml"
    config.dump(cfg, path)
    assert config.load(path) == cfg
    assert yaml.safe_load(path.read_text())["model"]["image_shape"] == [10, 6, 2]


def test_cnn_needs_a_conv_and_an_image_that_survives_the_blocks() -> None:
    with pytest.raises(ConfigError, match="model.conv_filters: \\[\\] is invalid; valid: at least one"):
        Config().replace(**{"model.kind": "cnn", "model.conv_filters": []})
    Config().replace(**{"model.conv_filters": []})  # the MLP does not use it
    # 8 -conv3-> 6 -pool2-> 3 -conv3-> 1 -pool2-> 0: too small
    with pytest.raises(ConfigError, match="model.image_shape: \\[8, 8, 1\\] is invalid.*2 conv block"):
        Config().replace(**{"model.kind": "cnn", "model.conv_filters": [4, 4],
                            "model.image_shape": [8, 8, 1]})
    ok = Config().replace(**{"model.kind": "cnn", "model.conv_filters": [4, 4], "model.pool_size": 1,
                             "model.image_shape": [8, 8, 1]})  # 8 -> 6 -> 4 without pooling
    assert config.cnn_output_size(8, ok.model) == 4


def test_npz_needs_path() -> None:
    with pytest.raises(ConfigError, match="data.path"):
        Config().replace(**{"data.dataset": "npz"})
    cfg = Config().replace(**{"data.dataset": "npz", "data.path": "x.npz"})
    assert cfg.data.path == "x.npz"


def test_weights_path_needs_import_path() -> None:
    with pytest.raises(ConfigError, match="model.weights_path.*model.import_path"):
        Config().replace(**{"model.weights_path": "w.h5"})


@pytest.mark.parametrize(
    "where, text, culprit",
    [
        ("input_precision", "fixed<8>", "hls.input_precision"),
        ("input_precision", "float", "hls.input_precision"),
        ("input_precision", "fixed<0,0>", "hls.input_precision"),
        ("input_precision", "fixed<80,8>", "hls.input_precision"),
        ("input_precision", "fixed<8,3,RND_WRONG,SAT>", "hls.input_precision"),
        ("input_precision", "fixed<8,3,RND,SATURATE>", "hls.input_precision"),
    ],
)
def test_invalid_input_precision_names_field(where: str, text: str, culprit: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config().replace(**{f"hls.{where}": text})
    assert str(info.value).startswith(culprit) and repr(text) in str(info.value)


def test_invalid_layer_precision_names_layer_and_kind() -> None:
    with pytest.raises(ConfigError, match=r"hls.layer_precision.dense_0.accum: 'fixed<x,y>'"):
        Config().replace(**{"hls.layer_precision": {"dense_0": {"accum": "fixed<x,y>"}}})
    with pytest.raises(ConfigError, match=r"hls.layer_precision.dense_0.*result, accum, weight, bias"):
        Config().replace(**{"hls.layer_precision": {"dense_0": {"acc": "fixed<8,3>"}}})


@pytest.mark.parametrize("text", ["fixed<8,3>", "ufixed<6,0,RND_CONV,SAT>", "fixed<16,6,AP_RND,AP_WRAP>",
                                  "int<8>", "uint<4>", "fixed<8,-2>"])
def test_valid_precisions_accepted(text: str) -> None:
    cfg = Config().replace(**{"hls.input_precision": text})
    assert cfg.hls.input_precision == text


def test_example_yaml_round_trips_to_default() -> None:
    text = config.example_yaml()
    data = yaml.safe_load(text)
    assert config.from_dict(data) == Config()
    # every field of every section is present (the example documents all of them)
    for f in dataclasses.fields(Config):
        assert f.name in data
        value = getattr(Config(), f.name)
        if dataclasses.is_dataclass(value):
            assert set(data[f.name]) == {g.name for g in dataclasses.fields(value)}


def test_example_yaml_has_field_comments() -> None:
    text = config.example_yaml()
    assert "# Training epochs per pruning round." in text
    assert "# Fraction of weights set to zero at the end of training" in text


def test_dump_load_round_trip(tmp_path: Path) -> None:
    cfg = Config().replace(**{"model.hidden": [16, 8], "model.layer_bits": {"dense_0": 4},
                              "hls.layer_precision": {"dense_0": {"accum": "fixed<20,8>"}}})
    path = tmp_path / "c.yaml"
    config.dump(cfg, path)
    assert config.load(path) == cfg
    assert cfg.model.hidden == (16, 8)  # lists become tuples


def test_load_errors_name_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        config.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        config.load(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("training:\n  epochs: -3\n")
    with pytest.raises(ConfigError, match="wrong.yaml: training.epochs"):
        config.load(wrong)


def test_replace_changes_only_named_fields() -> None:
    base = Config()
    cfg = base.replace(**{"hls.reuse_factor": 4, "training.seed": 7})
    assert cfg.hls.reuse_factor == 4 and cfg.training.seed == 7
    assert base.hls.reuse_factor == 1  # frozen original untouched
    assert cfg.replace(**{"hls.reuse_factor": 1, "training.seed": 0}) == base
    assert cfg.model == base.model and cfg.pruning == base.pruning


def test_replace_whole_section_and_validates() -> None:
    cfg = Config().replace(pruning={"target_sparsity": 0.75, "structured": True, "rounds": 3})
    assert cfg.pruning == config.PruningConfig(0.75, True, 3)
    with pytest.raises(ConfigError, match="pruning.rounds"):
        cfg.replace(**{"pruning.rounds": 99})


@pytest.mark.parametrize("dotted", ["training.epoch", "nosuch.field", "training.seed.x", "hls"])
def test_replace_unknown_field(dotted: str) -> None:
    if dotted == "hls":  # a section replaced by a non-mapping is a type error naming it
        with pytest.raises(ConfigError, match="^hls"):
            Config().replace(hls=3)
        return
    with pytest.raises(ConfigError, match=dotted.replace(".", r"\.")):
        Config().replace(**{dotted: 1})


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().training.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize("text", ["int<0>", "uint<200>"])
def test_integer_precision_width_range(text: str) -> None:
    with pytest.raises(ConfigError, match="hls.input_precision"):
        Config().replace(**{"hls.input_precision": text})
