"""Tests of the network testbench (codesign/testbenches/tb_network.py) and the verify stage (codesign/verify.py).

The DUT is a hand-written two-layer fixture (tests/fixtures/verify/): add_0 adds ADD0 to every
element (latency LAT0, II II0), add_1 adds ADD1 + STEP1*i (latency LAT1, II II1), and can be told to
corrupt output element 0 when its input element 0 equals BUG1_IN. Its in_ready depends
combinationally on out_ready. The Python model below computes the same integers.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codesign import resources, simtools, verify
from codesign.errors import SimulationError, StageError

FIXTURE = Path(__file__).parent / "fixtures" / "verify"


def _load_tb() -> Any:
    spec = importlib.util.spec_from_file_location("tb_network_under_test", resources.TESTBENCHES / "tb_network.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is created
    # it imports its sibling ``bus`` from its own folder, as in cocotb's run (folder on sys.path)
    sys.path.insert(0, str(resources.TESTBENCHES))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(resources.TESTBENCHES))
    return mod


def fixture_model(inputs: np.ndarray, params: dict[str, int]) -> dict[str, np.ndarray]:
    """Golden per-layer codes of the fixture network (unsigned add_0, signed add_1)."""
    w = params["W"]
    mask = (1 << w) - 1
    add_0 = (inputs + params["ADD0"]) & mask
    idx = np.arange(inputs.shape[1], dtype=np.int64)
    add_1 = (add_0 + params["ADD1"] + params["STEP1"] * idx) & mask
    add_1 = np.where(add_1 >= (1 << (w - 1)), add_1 - (1 << w), add_1)
    return {"add_0": add_0, "add_1": add_1}


def make_rtl(tmp: Path, **changes: Any) -> tuple[Path, dict[str, Any]]:
    """Copy the fixture RTL to tmp/rtl; apply changes to design.json (``parameters`` are merged)."""
    rtl = tmp / "rtl"
    shutil.copytree(FIXTURE, rtl)
    design = json.loads((rtl / "design.json").read_text())
    params = dict(design["parameters"], **changes.pop("parameters", {}))
    design.update(changes, parameters=params)
    (rtl / "design.json").write_text(json.dumps(design, indent=1))
    return rtl, design


def make_vectors(path: Path, design: dict[str, Any], n: int = 60, seed: int = 0,
                 force_first: int | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = design["parameters"]
    inputs = rng.integers(0, 1 << p["W"], size=(n, p["N"]), dtype=np.int64)
    if force_first is not None:
        inputs[:, 0] = np.where(inputs[:, 0] == force_first, force_first ^ 1, inputs[:, 0])
    gold = fixture_model(inputs, p)
    labels = np.argmax(gold["add_1"], axis=1)[: n // 2].copy()
    labels[:3] = (labels[:3] + 1) % p["N"]  # 3 wrong labels: accuracy must come out below 1
    qkeras_pred = np.argmax(gold["add_1"], axis=1)[: n // 2]
    arrays = {"inputs": inputs, "expected": gold["add_1"].copy(), "labels": labels, "qkeras_pred": qkeras_pred,
              "golden_add_0": gold["add_0"], "golden_add_1": gold["add_1"]}
    np.savez(path, **arrays)
    return arrays


# ------------------------------------------------------------------------------ pure Python parts
def test_pack_unpack_roundtrip_signed_and_unsigned() -> None:
    tb = _load_tb()
    rng = np.random.default_rng(3)
    for width, signed in ((1, False), (3, True), (6, False), (8, True), (13, True), (16, False)):
        lo, hi = (-(1 << (width - 1)), 1 << (width - 1)) if signed else (0, 1 << width)
        codes = rng.integers(lo, hi, size=(7, 5), dtype=np.int64)
        words = tb.pack_rows(codes, width)
        for row, word in zip(codes, words):
            # element i sits at bits [i*W +: W], two's complement
            ref = sum((int(c) & ((1 << width) - 1)) << (i * width) for i, c in enumerate(row))
            assert word == ref
            assert np.array_equal(tb.unpack_word(word, 5, width, signed), row)


def test_load_design_names_missing_file(tmp_path: Path) -> None:
    rtl, _ = make_rtl(tmp_path, files=["fixture_stage.v", "nope.v"])
    with pytest.raises(StageError, match="nope.v"):
        verify.load_design(rtl)
    with pytest.raises(StageError, match="design.json"):
        verify.load_design(tmp_path / "elsewhere")


# ------------------------------------------------------------------------------ simulations
def _sim(tmp_path: Path, simulator: str, n: int = 60, **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    rtl, design = make_rtl(tmp_path, **kw.pop("design", {}))
    vec = tmp_path / "vectors.npz"
    arrays = make_vectors(vec, design, n=n, force_first=kw.pop("force_first", None))
    if "corrupt" in kw:
        idx, k = kw.pop("corrupt")
        arrays["expected"][idx, k] += 1
        np.savez(vec, **arrays)
    res = verify.verify_design(rtl, vec, tmp_path / "out", simulator=simulator,
                               build_dir=tmp_path / "build", **kw)
    return res, arrays


def _check_pass(res: dict[str, Any], arrays: dict[str, np.ndarray], n: int) -> None:
    assert res["passed"], res["failures"]
    assert res["failures"] == []
    assert res["mismatches"] == 0 and res["first_mismatch"] is None
    assert res["vectors_checked"] == n
    assert res["protocol_violations"] == 0
    # measured, not typed in: the fixture promises LAT0 + LAT1 = 5 and max(II0, II1) = 4
    assert (res["latency_min"], res["latency_max"], res["ii"]) == (5, 5, 4)
    # back-pressure and gaps really happened: some vectors took longer than the idle latency
    assert res["stream_latency_max"] > 5
    labels = arrays["labels"]
    assert res["labeled"] == len(labels)
    assert res["accuracy"] == pytest.approx((len(labels) - 3) / len(labels))
    assert res["qkeras_agreement"] == 1.0
    assert res["cycles"] > n * 4


@pytest.mark.verilator
def test_fixture_passes_with_measured_latency_and_ii(tmp_path: Path) -> None:
    res, arrays = _sim(tmp_path, "verilator", n=200, input_gap_prob=0.3, backpressure_prob=0.4)
    _check_pass(res, arrays, 200)
    saved = json.loads((tmp_path / "out" / "verify.json").read_text())
    assert saved["passed"] and saved["mismatches"] == 0
    assert simtools.junit_failures(tmp_path / "out" / "results.xml") == []
    assert "waves" not in res["files"]


@pytest.mark.verilator
def test_wrong_latency_in_design_json_fails_clearly(tmp_path: Path) -> None:
    res, _ = _sim(tmp_path, "verilator", n=20, design={"latency": 6, "ii": 3}, waves_on_failure=False)
    assert not res["passed"]
    assert res["mismatches"] == 0  # the data is right; only the promise is wrong
    text = " | ".join(res["failures"])
    assert "measured latency 5 cycles" in text and "design.json latency 6" in text
    assert "measured II 4 cycles" in text and "design.json ii 3" in text
    assert simtools.junit_failures(tmp_path / "out" / "results.xml") == ["test_network"]


@pytest.mark.verilator
def test_wrong_expected_is_a_mismatch_at_that_vector(tmp_path: Path) -> None:
    res, arrays = _sim(tmp_path, "verilator", n=40, corrupt=(17, 2))
    assert not res["passed"]
    assert res["mismatches"] == 1 and res["mismatched_elements"] == 1
    fm = res["first_mismatch"]
    assert (fm["vector"], fm["output"]) == (17, 2)
    assert fm["expected"] == arrays["expected"][17, 2] and fm["got"] == arrays["expected"][17, 2] - 1
    # the RTL agrees with the golden model at every layer, so no layer is blamed
    assert fm["layer"] is None
    assert [x["status"] for x in fm["layers"]] == ["match", "match"]
    # the waveform of the re-run is kept
    assert res["files"]["waves"] == "waves.vcd"
    assert (tmp_path / "out" / "waves.vcd").stat().st_size > 1000


def _plant(tmp_path: Path, where: list[int]) -> tuple[Path, Path, dict[str, np.ndarray]]:
    rtl, design = make_rtl(tmp_path, parameters={"BUG1_EN": 1, "BUG1_IN": 0x5A})
    vec = tmp_path / "vectors.npz"
    arrays = make_vectors(vec, design, n=50, force_first=0x57)
    for i in where:
        arrays["inputs"][i, 0] = 0x57
    gold = fixture_model(arrays["inputs"], design["parameters"])
    arrays.update(expected=gold["add_1"], golden_add_0=gold["add_0"], golden_add_1=gold["add_1"])
    np.savez(vec, **arrays)
    return rtl, vec, arrays


@pytest.mark.verilator
def test_rtl_bug_names_first_vector_and_layer(tmp_path: Path) -> None:
    rtl, vec, arrays = _plant(tmp_path, [23, 31])
    res = verify.verify_design(rtl, vec, tmp_path / "out", build_dir=tmp_path / "build", waves_on_failure=False)
    assert not res["passed"]
    assert res["mismatches"] == 2
    fm = res["first_mismatch"]
    assert (fm["vector"], fm["output"]) == (23, 0)
    assert fm["got"] == fm["expected"] ^ 1  # bit 0 flipped
    assert fm["layer"] == "add_1"
    assert [x["status"] for x in fm["layers"]] == ["match", "differs"]


@pytest.mark.verilator
def test_unstable_data_under_backpressure_is_a_protocol_violation(tmp_path: Path) -> None:
    res, _ = _sim(tmp_path, "verilator", n=40, backpressure_prob=0.5, waves_on_failure=False,
                  design={"parameters": {"BAD_AXI": 1}})
    assert not res["passed"]
    assert res["protocol_violations"] > 0
    assert "out_data changed" in res["first_protocol_violation"]
    assert any("AXI4-Stream rule broken" in f for f in res["failures"])


@pytest.mark.verilator
def test_same_design_without_backpressure_has_no_violation(tmp_path: Path) -> None:
    # the BAD_AXI fixture only misbehaves under back-pressure: the check is not a false alarm
    res, arrays = _sim(tmp_path, "verilator", n=30, backpressure_prob=0.0, input_gap_prob=0.3,
                       design={"parameters": {"BAD_AXI": 1}})
    assert res["passed"], res["failures"]
    assert res["protocol_violations"] == 0


@pytest.mark.icarus
@pytest.mark.verilator
def test_icarus_gives_the_same_result(tmp_path: Path) -> None:
    res, arrays = _sim(tmp_path, "icarus", n=60, input_gap_prob=0.3, backpressure_prob=0.4)
    _check_pass(res, arrays, 60)
    res_v, _ = _sim(tmp_path / "v", "verilator", n=60, input_gap_prob=0.3, backpressure_prob=0.4)
    keys = ("mismatches", "latency_min", "latency_max", "ii", "stream_latency_min", "stream_latency_max",
            "stream_cycles", "accuracy", "qkeras_agreement", "vectors_checked")
    assert {k: res[k] for k in keys} == {k: res_v[k] for k in keys}


@pytest.mark.icarus
def test_broken_build_is_a_simulation_error(tmp_path: Path) -> None:
    rtl, design = make_rtl(tmp_path)
    (rtl / "fixture_stage.v").write_text("module fixture_stage(; endmodule\n")
    vec = tmp_path / "vectors.npz"
    make_vectors(vec, design, n=4)
    with pytest.raises(SimulationError, match="codesign_top"):
        verify.verify_design(rtl, vec, tmp_path / "out", simulator="icarus", build_dir=tmp_path / "build")


# ------------------------------------------------------------------------------ the stage
def _stage_run_dir(tmp_path: Path, corrupt: bool, broken: bool = False) -> tuple[Path, Any]:
    import types

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rtl, design = make_rtl(run_dir)
    if broken:
        (rtl / "codesign_top.v").write_text("module codesign_top(input wire clk; endmodule\n")
    (rtl / "result.json").write_text(json.dumps({"design_file": "design.json"}))

    def fake_make_vectors(cfg: Any, rd: Path, out_path: Path) -> Path:
        assert Path(rd) == run_dir
        arrays = make_vectors(out_path, design, n=30)
        if corrupt:
            arrays["expected"][4, 1] += 2
            np.savez(out_path, **arrays)
        return out_path

    return run_dir, types.SimpleNamespace(make_vectors=fake_make_vectors)


@pytest.mark.icarus
@pytest.mark.parametrize("corrupt", [False, True])
def test_stage_writes_sim_dir_and_mismatch_is_a_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       corrupt: bool) -> None:
    from codesign import config

    run_dir, fake = _stage_run_dir(tmp_path, corrupt)
    monkeypatch.setitem(sys.modules, "codesign.vectors", fake)
    cfg = config.from_dict({"verify": {"simulator": "icarus", "seed": 5}})
    result = verify.run(cfg, run_dir)
    sim = run_dir / "sim"
    assert json.loads((sim / "result.json").read_text()) == json.loads(json.dumps(result))
    for name in ("verify.json", "results.xml", "vectors.npz", "sim.log"):
        assert (sim / name).is_file(), name
    assert result["seed"] == 5 and result["simulator"] == "icarus"
    assert (result["latency_min"], result["ii"]) == (5, 4)
    if corrupt:
        assert result["passed"] is False
        assert result["mismatches"] == 1
        assert (result["first_mismatch"]["vector"], result["first_mismatch"]["output"]) == (4, 1)
        assert (sim / result["files"]["waves"]).is_file()
    else:
        assert result["passed"] is True and result["mismatches"] == 0


@pytest.mark.icarus
def test_stage_broken_build_raises_and_keeps_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from codesign import config

    run_dir, fake = _stage_run_dir(tmp_path, corrupt=False, broken=True)
    monkeypatch.setitem(sys.modules, "codesign.vectors", fake)
    cfg = config.from_dict({"verify": {"simulator": "icarus"}})
    with pytest.raises(SimulationError, match="sim.failed") as info:
        verify.run(cfg, run_dir)
    assert "codesign_top" in str(info.value)
    assert not (run_dir / "sim").exists()
    assert "syntax error" in (run_dir / "sim.failed" / "sim.log").read_text()
