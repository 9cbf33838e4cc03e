"""Tests of the IP-core packaging (codesign/ipcore.py, codesign/templates/ip/).

The design under test is a tiny network built here (7 x fixed<6,2> -> Dense 5, ReLU -> Dense 3
with reuse factor 2, so II = 2): its 42-bit input and 3 x 13 = 39-bit output both need byte padding. Its
vectors come from codesign.golden (the integer model of the same graph the RTL is generated from).
The AXI4-Stream wrapper is checked with the project's cocotb testbench through a test-only shim
that gives it the bare core's port names; the FuseSoC core is run with the fusesoc in the venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codesign import golden, ipcore, simtools, verify
from codesign.errors import StageError, ToolError
from codesign.fixedpoint import FixedType
from codesign.graph import Graph, Layer
from codesign.rtlgen import generate

TOP = "tiny"
VLNV = f"codesign:nn:{TOP}:{ipcore.CORE_VERSION}"
FUSESOC = Path(sys.executable).parent / "fusesoc"


def tiny_graph() -> Graph:
    rng = np.random.default_rng(7)
    t_in = FixedType(6, 2, True, "RND_CONV", "SAT")
    acc0, t_h = FixedType(16, 6, True), FixedType(5, 1, False, "RND_CONV", "SAT")
    acc1 = FixedType(13, 6, True)
    w0 = rng.integers(-8, 8, size=(7, 5)) * (rng.random((7, 5)) > 0.3)
    w1 = rng.integers(-8, 8, size=(5, 3))
    return Graph(t_in, 7, (
        Layer("dense_0", "dense", 7, 5, t_in, acc0, "Dense(linear)", acc0, w0.astype(np.int64), 3,
              rng.integers(-16, 16, size=5).astype(np.int64), 3, 1),
        Layer("relu_0", "relu", 5, 5, acc0, t_h, "Activation(relu)"),
        Layer("dense_1", "dense", 5, 3, t_h, acc1, "Dense(linear)", acc1, w1.astype(np.int64), 3,
              rng.integers(-16, 16, size=3).astype(np.int64), 3, 2),
    ))


def tiny_vectors(graph: Graph, path: Path, n: int = 120) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    t = graph.input_type
    inputs = rng.integers(t.min_code, t.max_code + 1, size=(n, graph.n_in), dtype=np.int64)
    outs = golden.layer_outputs(graph, inputs)
    arrays = {"inputs": inputs, "expected": outs[graph.layers[-1].name],
              **{f"golden_{k}": v for k, v in outs.items()}}
    np.savez(path, **arrays)
    return arrays


def build(tmp: Path, with_vectors: bool = True) -> tuple[Path, dict[str, Any], Path]:
    """rtl dir with the core and its IP files (and the vectors file used)."""
    rtl = tmp / "rtl"
    g = tiny_graph()
    design = generate(g, rtl, top=TOP)
    design["clock_period_ns"] = 4.0
    (rtl / "design.json").write_text(json.dumps(design, indent=1, sort_keys=True) + "\n")
    vec = tmp / "vectors.npz"
    tiny_vectors(g, vec)
    design["ip_files"] = ipcore.package(rtl, design, vectors=vec if with_vectors else None)
    return rtl, design, vec


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path]:
    return build(tmp_path_factory.mktemp("ipcore"))


def fusesoc(cores_root: Path, target: str, work: Path) -> subprocess.CompletedProcess[str]:
    env = simtools.sim_env("verilator")
    env.pop("PYTEST_CURRENT_TEST", None)
    work.mkdir(parents=True, exist_ok=True)
    (work / "fusesoc.conf").write_text("")  # no user or system configuration
    cmd = [str(FUSESOC), "--config", str(work / "fusesoc.conf"), "--cores-root", str(cores_root), "run",
           "--build-root", str(work / "build"), "--target", target, VLNV]
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------------------- fast checks
def test_files_exist_are_listed_and_deterministic(core: tuple[Path, dict[str, Any], Path], tmp_path: Path) -> None:
    rtl, design, _ = core
    expected = {f"{TOP}_axis.v", f"{TOP}.core", "datasheet.md", f"tb_{TOP}.v", f"tb_{TOP}_in.hex",
                f"tb_{TOP}_expected.hex", "tb_network.py", "bus.py", "run_tb.py", "vectors.npz"}
    assert set(design["ip_files"]) == expected
    assert "ip_files" not in json.loads((rtl / "design.json").read_text()), "package() rewrote design.json"
    for f in expected:
        assert (rtl / f).is_file(), f
    again, _, _ = build(tmp_path)
    for f in sorted(expected) + ["design.json"]:
        assert (rtl / f).read_bytes() == (again / f).read_bytes(), f"{f} differs between two builds"
        if f != "vectors.npz":
            text = (rtl / f).read_text()
            assert str(rtl) not in text and str(tmp_path) not in text, f"{f} holds an absolute path"


def test_axis_widths_padding_and_ports(core: tuple[Path, dict[str, Any], Path]) -> None:
    rtl, design, _ = core
    assert (design["input"]["bits"], design["output"]["bits"]) == (42, 39)
    assert (ipcore.tdata_bits(42), ipcore.tdata_bits(39), ipcore.tdata_bits(8)) == (48, 40, 8)
    v = (rtl / f"{TOP}_axis.v").read_text()
    for decl in ("input  wire aclk", "input  wire aresetn", "input  wire [47:0] s_axis_tdata",
                 "output wire [39:0] m_axis_tdata", "output wire s_axis_tready", "input  wire m_axis_tready",
                 "wire rst = ~aresetn;", "assign m_axis_tdata = { 1'd0, core_out_data };",
                 ".in_data(s_axis_tdata[41:0])"):
        assert decl in v, decl
    sheet = (rtl / "datasheet.md").read_text()
    assert "| `s_axis_tdata` | in | 48 |" in sheet and "| `m_axis_tdata` | out | 40 |" in sheet
    assert "bits [47:42] ignored" in sheet and "bits [39:39] driven 0" in sheet
    assert f"| Latency | {design['latency']} clock cycles" in sheet
    assert "| 2 | dense_1 | dense (Dense(linear)) | 5 | 3 | 2 |" in sheet
    assert sheet.count("Not measured yet") == 2


def test_hex_vectors_match_the_packed_npz(core: tuple[Path, dict[str, Any], Path]) -> None:
    rtl, _, vec = core
    z = np.load(vec)
    lines = (rtl / f"tb_{TOP}_expected.hex").read_text().split()
    assert len(lines) == min(ipcore.TB_VECTORS, len(z["expected"]))
    word = int(lines[3], 16)
    got = [((word >> (13 * i)) & 0x1FFF) - (0x2000 if (word >> (13 * i + 12)) & 1 else 0) for i in range(3)]
    assert got == z["expected"][3].tolist()
    assert word >> 39 == 0 and all(len(s) == 10 for s in lines)


def test_vectors_that_do_not_fit_are_refused(core: tuple[Path, dict[str, Any], Path], tmp_path: Path) -> None:
    rtl, design, _ = core
    bad = tmp_path / "bad.npz"
    np.savez(bad, inputs=np.zeros((4, 6), np.int64), expected=np.zeros((4, 3), np.int64))
    with pytest.raises(StageError, match=r"bad.npz.*'inputs' has shape \(4, 6\).*7 input"):
        ipcore.package(tmp_path, dict(design), vectors=bad)


def test_ip_stage_reads_the_run_figures(core: tuple[Path, dict[str, Any], Path], tmp_path: Path) -> None:
    """The ip stage packages <run>/rtl into <run>/ip with the run's vectors and measured figures,
    and leaves every other stage's folder as it was."""
    src, _, vec = core
    run = tmp_path / "run"
    (run / "rtl").mkdir(parents=True)
    for f in json.loads((src / "design.json").read_text())["files"] + ["design.json", "filelist.f"]:
        shutil.copyfile(src / f, run / "rtl" / f)
    (run / "rtl" / "result.json").write_text("{}")
    (run / "sim").mkdir()
    (run / "synth").mkdir()
    (run / "model").mkdir()
    shutil.copyfile(vec, run / "sim" / "vectors.npz")
    (run / "synth" / "resources.json").write_text(json.dumps({"LUT": 123, "FF": 45, "DSP": 0, "note": "estimate"}))
    (run / "sim" / "verify.json").write_text(json.dumps(
        {"passed": True, "mismatches": 0, "vectors_checked": 120, "latency_min": 7, "latency_max": 7, "ii": 2,
         "accuracy": 0.875, "labeled": 8}))
    (run / "model" / "result.json").write_text(json.dumps({"test_accuracy": 0.9125}))
    rtl_before = {f.name: f.read_bytes() for f in (run / "rtl").iterdir()}
    result = ipcore.run(None, run)
    assert "datasheet.md" in result["files"] and "vectors.npz" in result["files"] and result["vectors"]
    for f in result["files"]:
        assert (run / "ip" / f).is_file(), f
    assert {f.name: f.read_bytes() for f in (run / "rtl").iterdir()} == rtl_before, "the ip stage wrote into rtl/"
    assert (run / "ip" / "design.json").read_bytes() == rtl_before["design.json"]
    sheet = (run / "ip" / "datasheet.md").read_text()
    assert "Not measured yet" not in sheet
    assert "| LUT | 123 |" in sheet and "| FF | 45 |" in sheet and "estimate" in sheet
    assert "passed: 0 mismatching of 120 vectors" in sheet and "| 0.8750 (8 labeled vectors) |" in sheet
    assert "| QKeras model test accuracy | 0.9125 | model/result.json |" in sheet
    assert "STALE" not in sheet
    (run / "sim" / "result.json").write_text(json.dumps({"rtl_fingerprint": "0123456789abcdef"}))
    (run / "synth" / "result.json").write_text(json.dumps({"rtl_fingerprint": "0123456789abcdef"}))
    ipcore.run(None, run)
    sheet = (run / "ip" / "datasheet.md").read_text()
    assert "sim/verify.json (STALE: verified a different design.json)" in sheet
    assert "STALE: these figures were synthesized from a different design.json" in sheet


def test_without_vectors_the_sim_testbench_says_so(tmp_path: Path) -> None:
    rtl, design, _ = build(tmp_path, with_vectors=False)
    assert "vectors.npz" not in design["ip_files"] and not (rtl / "vectors.npz").exists()
    assert (rtl / f"tb_{TOP}_in.hex").read_text() == ""
    tb = (rtl / f"tb_{TOP}.v").read_text()
    assert "FAIL: no test vectors" in tb and "$fatal" in tb and "$readmemh" not in tb


# ------------------------------------------------------------------------------- tools
def shim_text(design: dict[str, Any]) -> str:
    """Test-only: the bare core's port names around the AXI4-Stream wrapper."""
    ib, ob = design["input"]["bits"], design["output"]["bits"]
    it, ot = ipcore.tdata_bits(ib), ipcore.tdata_bits(ob)
    pad_in = f"{{{it - ib}'d0, in_data}}" if it > ib else "in_data"
    unused = f"  wire unused_pad = ^m_axis_tdata[{ot - 1}:{ob}];\n" if ot > ob else ""
    return f"""`default_nettype none
module {TOP}_axis_tbshim (
  input  wire clk,
  input  wire rst,
  input  wire in_valid,
  output wire in_ready,
  input  wire [{ib - 1}:0] in_data,
  output wire out_valid,
  input  wire out_ready,
  output wire [{ob - 1}:0] out_data
);
  wire [{ot - 1}:0] m_axis_tdata;
  {TOP}_axis u_axis (
    .aclk(clk), .aresetn(~rst),
    .s_axis_tvalid(in_valid), .s_axis_tready(in_ready), .s_axis_tdata({pad_in}),
    .m_axis_tvalid(out_valid), .m_axis_tready(out_ready), .m_axis_tdata(m_axis_tdata)
  );
  assign out_data = m_axis_tdata[{ob - 1}:0];
{unused}endmodule
`default_nettype wire
"""


@pytest.mark.verilator
def test_wrapper_and_testbench_are_lint_clean(core: tuple[Path, dict[str, Any], Path], tmp_path: Path) -> None:
    rtl, design, _ = core
    sources = [rtl / f for f in design["files"]] + [rtl / f"{TOP}_axis.v"]
    simtools.verilator_lint(sources, f"{TOP}_axis", tmp_path / "lint.log")
    shim = tmp_path / f"{TOP}_axis_tbshim.v"
    shim.write_text(shim_text(design))
    simtools.verilator_lint(sources + [shim], f"{TOP}_axis_tbshim", tmp_path / "lint_shim.log")
    # the generated Verilog testbench too (it needs --timing for its clock and Verilator's lint)
    cmd = [str(simtools.verilator_root() / "bin" / "verilator"), "--lint-only", "-Wall", "--timing",
           "--timescale", "1ns/1ps", "--top-module", f"tb_{TOP}", *map(str, sources), str(rtl / f"tb_{TOP}.v")]
    proc = subprocess.run(cmd, env=simtools.sim_env("verilator"), capture_output=True, text=True)
    assert proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr
    # the lint really looks at the wrapper: an unused signal in it fails
    broken = tmp_path / f"{TOP}_axis.v"
    broken.write_text((rtl / f"{TOP}_axis.v").read_text().replace("  wire rst = ~aresetn;",
                                                                  "  wire rst = ~aresetn;\n  wire spare = rst;"))
    with pytest.raises(ToolError, match="verilator --lint-only"):
        simtools.verilator_lint(sources[:-1] + [broken], f"{TOP}_axis", tmp_path / "lint_broken.log")
    assert "spare" in (tmp_path / "lint_broken.log").read_text()


@pytest.mark.verilator
def test_fusesoc_lint_and_sim_targets(core: tuple[Path, dict[str, Any], Path], tmp_path: Path) -> None:
    rtl, design, _ = core
    lib = tmp_path / "lib"  # the core file and what it lists, nothing else
    lib.mkdir()
    core_text = (rtl / f"{TOP}.core").read_text()
    for f in design["files"] + [f"{TOP}_axis.v", f"tb_{TOP}.v", f"tb_{TOP}_in.hex", f"tb_{TOP}_expected.hex"]:
        assert f in core_text
        shutil.copyfile(rtl / f, lib / f)
    (lib / f"{TOP}.core").write_text(core_text)
    lint = fusesoc(lib, "lint", tmp_path / "w_lint")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    vc = (tmp_path / "w_lint" / "build" / f"codesign_nn_{TOP}_{ipcore.CORE_VERSION}" / "lint-verilator")
    assert f"--top-module {TOP}_axis" in next(vc.glob("*.vc")).read_text()
    sim = fusesoc(lib, "sim", tmp_path / "w_sim")
    n = min(ipcore.TB_VECTORS, 120)
    assert sim.returncode == 0, sim.stdout + sim.stderr
    assert f"PASS: {n} vectors, 0 mismatches, latency {design['latency']}, II {design['ii']}" in sim.stdout
    # the sim target can fail: one wrong expected word
    lines = (lib / f"tb_{TOP}_expected.hex").read_text().split()
    lines[5] = f"{int(lines[5], 16) ^ 1:0{len(lines[5])}x}"
    (lib / f"tb_{TOP}_expected.hex").write_text("".join(s + "\n" for s in lines))
    bad = fusesoc(lib, "sim", tmp_path / "w_sim")
    assert bad.returncode != 0
    assert "FAIL: output 5 is" in bad.stdout and "FAIL: 1 error(s)" in bad.stdout


@pytest.mark.verilator
def test_wrapper_passes_the_cocotb_testbench_via_the_shim(core: tuple[Path, dict[str, Any], Path],
                                                          tmp_path: Path) -> None:
    rtl, design, vec = core
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    files = design["files"] + [f"{TOP}_axis.v"]
    for f in files:
        shutil.copyfile(rtl / f, shim_dir / f)
    (shim_dir / f"{TOP}_axis_tbshim.v").write_text(shim_text(design))
    variant = json.loads((rtl / "design.json").read_text())
    variant.update(top=f"{TOP}_axis_tbshim", files=files + [f"{TOP}_axis_tbshim.v"])
    for lay in variant["layers"]:
        lay.pop("probe", None)  # the layer probes sit two levels down, out of the testbench's reach
    (shim_dir / "design.json").write_text(json.dumps(variant))
    res = verify.verify_design(shim_dir, vec, tmp_path / "out", waves_on_failure=False)
    assert res["passed"], res["failures"]
    assert res["mismatches"] == 0 and res["vectors_checked"] == 120 and res["protocol_violations"] == 0
    assert (res["latency_min"], res["latency_max"], res["ii"]) == (design["latency"], design["latency"], design["ii"])


@pytest.mark.verilator
def test_run_tb_verifies_the_core_dir_alone(core: tuple[Path, dict[str, Any], Path], tmp_path: Path) -> None:
    rtl, design, _ = core
    alone = tmp_path / "core"
    shutil.copytree(rtl, alone)
    env = simtools.sim_env("verilator")
    env.pop("PYTEST_CURRENT_TEST", None)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "run_tb.py", "--build-dir", str(tmp_path / "b")], cwd=alone,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{TOP}: PASS: 120 vectors, 0 mismatches, latency {design['latency']}..{design['latency']}" in proc.stdout
    res = json.loads((tmp_path / "b" / "tb_result.json").read_text())
    assert res["passed"] and res["mismatches"] == 0 and res["ii"] == design["ii"]
    assert os.path.samefile(res["design"], alone / "design.json")


def test_ip_stage_packages_the_rtl_stage_core(tmp_path: Path) -> None:
    from codesign import config, rtlgen
    from codesign.rundir import write_json

    run = tmp_path / "run"
    (run / "hls").mkdir(parents=True)
    g = tiny_graph()
    g.save(run / "hls" / "graph.json")
    write_json(run / "hls" / "result.json", {"clock_period_ns": 4.0})
    (run / "sim").mkdir()
    tiny_vectors(g, run / "sim" / "vectors.npz")  # newer than graph.json: packaged
    rtlgen.run(config.from_dict({}), run)
    design = json.loads((run / "rtl" / "design.json").read_text())
    top = design["top"]
    assert not (run / "rtl" / f"{top}_axis.v").exists(), "the rtl stage writes only the generated RTL"
    files = ipcore.run(config.from_dict({}), run)["files"]
    assert f"{top}_axis.v" in files and "vectors.npz" in files and f"{top}.v" in files
    for f in files:
        assert (run / "ip" / f).is_file(), f
    assert "| Clock assumption | 4.0 ns (250 MHz" in (run / "ip" / "datasheet.md").read_text()
    assert len((run / "ip" / f"tb_{top}_in.hex").read_text().split()) == 64
