"""Timing estimate of a mapped Xilinx netlist: the longest register-to-register path and its Fmax.

Yosys maps the design (:mod:`codesign.synth`) and writes the netlist as JSON; this module walks it
in topological order with a delay per cell and reports the slowest path: its delay, its LUT levels
and carry cells, and the Fmax it allows. It is an estimate for comparing designs and for checking
``hls.clock_period_ns`` roughly, not a timing sign-off: there is no placement, so routing is one
fixed delay per LUT input.

The delay model (:data:`UPLUS`), UltraScale+ (-2 speed grade) figures rounded from the data sheet
(DS923) and typical Vivado timing reports:

- a path starts at a flip-flop's Q (clock-to-out) or a module input, and ends at a flip-flop's
  D / CE / reset (plus setup) or a module output;
- a LUT costs its logic delay plus one routed net in front of it;
- a carry cell (CARRY4 / CARRY8) costs a routed net plus the entry into the chain from its S / DI
  inputs, and only the chain delay from CI (the dedicated carry route);
- MUXF7 / F8 / F9 sit next to their LUTs: their own delay, no routing;
- an SRL, a LUTRAM or a DSP is a register boundary (its outputs start paths, its inputs end them);
  a LUTRAM's read is a LUT from its address to its output.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DelayModel:
    clk_to_q: float
    setup: float
    lut: float  #: LUT logic delay
    net: float  #: one routed net (in front of every LUT and every entry into a carry chain)
    carry_entry: float  #: S / DI -> CO / O of the first carry cell
    carry_chain: float  #: CI -> CO / O of a carry cell
    muxf: float  #: MUXF7 / F8 / F9
    name: str


#: UltraScale+ -2, in ns (see the module docstring)
UPLUS = DelayModel(clk_to_q=0.08, setup=0.05, lut=0.10, net=0.30, carry_entry=0.20, carry_chain=0.05, muxf=0.10,
                   name="UltraScale+ -2 estimate (codesign.timing.UPLUS)")

_LUTRAM_PREFIX = "RAM"
_IGNORED = ("BUFG", "IBUF", "OBUF", "VCC", "GND")


@dataclass(frozen=True)
class Path_:
    delay_ns: float
    lut_levels: int
    carry_cells: int


def _kind(cell_type: str) -> str:
    t = cell_type.lstrip("\\")
    if t.startswith(_IGNORED):
        return "ignore"
    if t.startswith("LUT") or t == "INV":
        return "lut"
    if t.startswith("CARRY"):
        return "carry"
    if t.startswith("MUXF"):
        return "muxf"
    if t.startswith(_LUTRAM_PREFIX) and not t.startswith("RAMB"):
        return "lutram"
    return "reg"  # flip-flops, SRLs, DSPs, block RAM, and any unknown primitive: a register boundary


def _inputs(c: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(port, bit) of a cell's data inputs (a LUTRAM's write side and every clock left out)."""
    out = []
    for port, bits in c.get("connections", {}).items():
        if c.get("port_directions", {}).get(port) != "input" or port in ("C", "CLK", "WCLK"):
            continue
        if _kind(c["type"]) == "lutram" and port.startswith(("D", "W")):
            continue
        out.extend((port, b) for b in bits)
    return out


def _arrivals(module: Mapping[str, Any], model: DelayModel) -> Path_:
    """The slowest path of one module of a Yosys JSON netlist (a carry cell as one node)."""
    cells = module.get("cells", {})
    kinds = {name: _kind(c["type"]) for name, c in cells.items()}
    driver: dict[int, str] = {}  # net bit -> the cell driving it
    for name, c in cells.items():
        for port, bits in c.get("connections", {}).items():
            if c.get("port_directions", {}).get(port) == "output":
                driver.update((b, name) for b in bits if isinstance(b, int))
    start = Path_(model.clk_to_q, 0, 0)
    comb = [n for n, k in kinds.items() if k in ("lut", "carry", "muxf", "lutram")]
    arrival: dict[str, Path_] = {}

    def source(b: Any) -> Path_:
        d = driver.get(b) if isinstance(b, int) else None
        return arrival.get(d, start) if d is not None and kinds[d] not in ("reg", "ignore") else start

    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for root in comb:
        if state.get(root):
            continue
        stack = [root]
        while stack:
            cur = stack[-1]
            if state.get(cur) == 2:
                stack.pop()
                continue
            state[cur] = 1
            todo = [d for _, b in _inputs(cells[cur]) if isinstance(b, int) and (d := driver.get(b)) is not None
                    and kinds[d] in ("lut", "carry", "muxf", "lutram") and not state.get(d)]
            if todo:
                stack.extend(dict.fromkeys(todo))
                continue
            k, best = kinds[cur], start
            for port, b in _inputs(cells[cur]):
                a = source(b)  # a predecessor still on the stack (a loop) counts as a start
                if k in ("lut", "lutram"):
                    p = Path_(a.delay_ns + model.net + model.lut, a.lut_levels + 1, a.carry_cells)
                elif k == "carry":
                    chained = port == "CI" and isinstance(b, int) and kinds.get(driver.get(b, ""), "") == "carry"
                    p = Path_(a.delay_ns + (model.carry_chain if chained else model.net + model.carry_entry),
                              a.lut_levels, a.carry_cells + 1)
                else:
                    p = Path_(a.delay_ns + model.muxf, a.lut_levels, a.carry_cells)
                if p.delay_ns > best.delay_ns:
                    best = p
            arrival[cur] = best
            state[cur] = 2
            stack.pop()
    ends: list[Any] = []
    for name, c in cells.items():
        if kinds[name] == "reg":
            ends.extend(b for _, b in _inputs(c))
        if kinds[name] == "lutram":  # its write port ends paths (its address feeds the read, a LUT)
            ends.extend(b for port, bits in c.get("connections", {}).items() if port.startswith(("D", "W"))
                        and c.get("port_directions", {}).get(port) == "input" and port != "WCLK" for b in bits)
    for p in module.get("ports", {}).values():
        if p.get("direction") == "output":
            ends.extend(p.get("bits", []))
    worst = max((source(b) for b in ends), key=lambda a: a.delay_ns, default=start)
    return Path_(round(worst.delay_ns + model.setup, 3), worst.lut_levels, worst.carry_cells)


def estimate(netlist: Path, modules: list[str] | None = None, model: DelayModel = UPLUS) -> dict[str, dict[str, Any]]:
    """For each module of a Yosys ``write_json`` netlist (or those named): the slowest path's delay
    (clock-to-out, logic and routing, setup), its LUT levels and carry cells, and the Fmax it allows."""
    doc = json.loads(Path(netlist).read_text())
    mods = {k.lstrip("\\"): v for k, v in doc.get("modules", {}).items()}
    out = {}
    for name in modules if modules is not None else sorted(mods):
        if name not in mods:
            continue
        p = _arrivals(mods[name], model)
        out[name] = {"critical_path_ns": p.delay_ns, "lut_levels": p.lut_levels, "carry_cells": p.carry_cells,
                     "fmax_mhz": round(1000.0 / p.delay_ns, 1) if p.delay_ns > 0 else None}
    return out
