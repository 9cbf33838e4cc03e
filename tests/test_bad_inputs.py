"""Bad inputs: each gets a clear error naming the culprit, and no half-written stage looks finished."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codesign import cli
from codesign.config import from_dict
from codesign.errors import ConfigError, ConversionError, ModelImportError, RtlGenError, StageError

from conftest import REFERENCE_MODELS as REF  # noqa: E402


def tiny_model(act: str = "relu", extra: Any = None) -> Any:
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    tf.keras.backend.clear_session()
    x_in = tf.keras.Input(shape=(4,), name="x_in")
    x = QActivation(quantized_bits(6, 1, alpha=1), name="inq")(x_in)
    fc0 = QDense(3, kernel_quantizer=quantized_bits(6, 1, alpha=1), bias_quantizer=quantized_bits(6, 1, alpha=1),
                 name="fc0")
    x = fc0(x)
    x = QActivation(quantized_relu(6, 2), name="act0")(x) if act == "relu" else tf.keras.layers.Activation(
        act, name="act0")(x)
    model = tf.keras.Model(x_in, x)
    fc0.set_weights([np.full((4, 3), 0.5), np.full(3, 0.25)])  # partial sums reach 4.125
    return model


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


# ----------------------------------------------------------------------------- model files

def test_unsupported_layer_is_refused_naming_the_layer(tmp_path: Path) -> None:
    import tensorflow as tf

    from codesign.model_io import load_model

    m = tf.keras.Sequential([tf.keras.Input((8, 1)), tf.keras.layers.GlobalAveragePooling1D(keepdims=True, name="up_a"),
                             tf.keras.layers.Flatten(), tf.keras.layers.Dense(2)])
    m.save(tmp_path / "up.h5")
    with pytest.raises(ModelImportError, match=r"layer 'up_a' \(GlobalAveragePooling1D\) is not supported; supported"):
        load_model(tmp_path / "up.h5")


def test_sigmoid_activation_is_refused_at_import(tmp_path: Path) -> None:
    from codesign.model_io import check_supported

    with pytest.raises(ModelImportError, match=r"layer 'act0' \(Activation\): activation 'sigmoid'"):
        check_supported(tiny_model("sigmoid"), "tiny")


@pytest.mark.hls4ml
def test_sigmoid_reaching_the_rtl_backend_is_refused_by_name(tmp_path: Path) -> None:
    """Past the import check (convert_model called directly), the RTL stage still names the layer."""
    from codesign import rtlgen
    from codesign.convert import convert_model
    from codesign.layers import from_hls4ml

    hls_model, _, stripped = convert_model(from_dict({}), tiny_model("sigmoid"), tmp_path / "hls")
    graph = from_hls4ml(hls_model, stripped)
    with pytest.raises(RtlGenError, match=r"layer act0: Activation\(sigmoid\) is not supported"):
        rtlgen.generate(graph, tmp_path / "rtl")


def test_model_weights_mismatch_names_the_layer(tmp_path: Path) -> None:
    from codesign.model_io import load_model

    with pytest.raises(ModelImportError, match=r"has no weights for layer 'fc1'|weights of layer"):
        load_model(REF / "qkeras_3layer.json", REF / "qkeras_mnist_dense_weights.h5")


def test_truncated_h5_is_a_clear_error(tmp_path: Path) -> None:
    from codesign.model_io import load_model

    data = (REF / "qkeras_3layer_weights.h5").read_bytes()
    bad = tmp_path / "cut_weights.h5"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelImportError, match=r"cut_weights\.h5: not a readable HDF5 weights file"):
        load_model(REF / "qkeras_3layer.json", bad)


# ----------------------------------------------------------------------------- config

def test_weights_path_without_import_path() -> None:
    with pytest.raises(ConfigError, match="model.weights_path is set but model.import_path is not"):
        from_dict({"model": {"weights_path": "w.h5"}})


def test_unsupported_type_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"hls.layer_precision.fc0.result: rounding mode 'AP_BANKERS'"):
        from_dict({"hls": {"layer_precision": {"fc0": {"result": "fixed<8,3,AP_BANKERS,AP_SAT>"}}}})
    with pytest.raises(ConfigError, match=r"overflow mode 'AP_CLIP'"):
        from_dict({"hls": {"layer_precision": {"fc0": {"accum": "fixed<8,3,AP_RND,AP_CLIP>"}}}})


def test_unknown_layer_in_layer_reuse_factor(tmp_path: Path) -> None:
    from codesign.convert import convert_model

    cfg = from_dict({"hls": {"layer_reuse_factor": {"fc9": 2}}})
    with pytest.raises(ConfigError, match=r"hls.layer_reuse_factor.fc9: no layer named 'fc9'; layers: .*fc0"):
        convert_model(cfg, tiny_model(), tmp_path / "hls")


@pytest.mark.hls4ml
def test_reuse_factor_out_of_range(tmp_path: Path) -> None:
    from codesign.convert import convert_model

    with pytest.raises(ConfigError, match=r"hls.reuse_factor: 0 is invalid"):
        from_dict({"hls": {"reuse_factor": 0}})
    cfg = from_dict({"hls": {"layer_reuse_factor": {"fc0": 13}}})  # fc0 is 4 x 3
    with pytest.raises(ConversionError, match=r"layer fc0: reuse factor 13 exceeds n_in\*n_out = 12"):
        convert_model(cfg, tiny_model(), tmp_path / "hls")


@pytest.mark.hls4ml
def test_saturating_accum_that_can_overflow_is_refused_after_convert(tmp_path: Path) -> None:
    from codesign import rtlgen
    from codesign.convert import convert_model
    from codesign.layers import from_hls4ml

    # at reuse factor 1 this accum is built as hls4ml's sequential chain; folded, it is refused
    cfg = from_dict({"hls": {"layer_precision": {"fc0": {"accum": "fixed<11,3,AP_TRN,AP_SAT>"}},
                             "layer_reuse_factor": {"fc0": 2}}})
    hls_model, _, stripped = convert_model(cfg, tiny_model(), tmp_path / "hls")
    with pytest.raises(RtlGenError, match=r"layer fc0: saturating accum type fixed<11,3,TRN,SAT> can overflow"):
        rtlgen.generate(from_hls4ml(hls_model, stripped), tmp_path / "rtl")


# ----------------------------------------------------------------------------- CLI and run dirs

def test_cli_rtl_on_empty_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    code, err = run_cli(capsys, "rtl", "--out", str(run))
    assert code == 2
    assert "rtl needs the 'hls' stage" in err and f"run `codesign convert --out {run}` first" in err
    assert not (run / "rtl" / "result.json").exists()


def test_cli_verify_on_empty_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "verify", "--out", str(tmp_path / "run"))
    assert code == 2 and "verify needs the 'rtl' stage" in err and "codesign rtl" in err


def test_cli_import_with_mismatched_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    code, err = run_cli(capsys, "train", "--out", str(run), "--from-model", str(REF / "qkeras_3layer.json"),
                        "--weights", str(REF / "KERAS_3layer_weights.h5"))
    assert code == 2 and "KERAS_3layer_weights.h5" in err and "fc1" in err
    assert not (run / "model" / "result.json").exists()


def test_output_dir_not_writable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run directory under a regular file cannot be created, even by root."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    code, err = run_cli(capsys, "train", "--out", str(blocker / "run"), "--from-model",
                        str(REF / "qkeras_3layer.json"), "--weights", str(REF / "qkeras_3layer_weights.h5"))
    assert code == 2 and f"cannot create run directory {blocker / 'run'}" in err


@pytest.mark.hls4ml
def test_failed_stage_leaves_nothing_that_looks_finished(tmp_path: Path) -> None:
    """The rtl stage fails (saturating accum) after convert: no rtl/result.json, no partial dir."""
    from codesign.flow import COMMANDS, run_stage
    from codesign.model_io import import_model

    run = tmp_path / "run"
    model = tiny_model()
    model.save(tmp_path / "tiny.h5")
    cfg = from_dict({"output_dir": str(run), "model": {"import_path": str(tmp_path / "tiny.h5")},
                     "hls": {"layer_precision": {"fc0": {"accum": "fixed<11,3,AP_TRN,AP_SAT>"}},
                             "layer_reuse_factor": {"fc0": 2}}})
    import_model(cfg, run)
    run_stage(COMMANDS["convert"], cfg, run)
    with pytest.raises(RtlGenError, match="layer fc0"):
        run_stage(COMMANDS["rtl"], cfg, run)
    assert not (run / "rtl").exists() and not (run / ".rtl.partial").exists()
    assert (run / "hls" / "result.json").is_file()
    with pytest.raises(StageError, match="verify needs the 'rtl' stage"):
        run_stage(COMMANDS["verify"], cfg, run)
    assert not (run / "sim").exists()


def test_bad_design_json_is_a_stage_error(tmp_path: Path) -> None:
    from codesign.verify import load_design

    (tmp_path / "design.json").write_text("{\"top\": 1")
    with pytest.raises(StageError, match=r"design.json is not valid JSON"):
        load_design(tmp_path)
