"""codesign.timing: the longest register-to-register path of a mapped netlist under the delay model,
checked on hand-built netlists whose depth is known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codesign import timing

M = timing.UPLUS


def _cell(ctype: str, inputs: dict[str, list[int]], outputs: dict[str, list[int]]) -> dict:
    return {"type": ctype, "port_directions": {**{p: "input" for p in inputs}, **{p: "output" for p in outputs}},
            "connections": {**inputs, **outputs}}


def _netlist(tmp: Path, cells: dict[str, dict], ports: dict | None = None) -> Path:
    path = tmp / "netlist.json"
    path.write_text(json.dumps({"modules": {"top": {"ports": ports or {}, "cells": cells}}}))
    return path


def test_a_chain_of_luts_between_flip_flops(tmp_path: Path) -> None:
    # FF q=1 -> LUT -> 2 -> LUT -> 3 -> LUT -> 4 -> FF; and a shorter branch LUT(1) -> 5 -> FF
    cells = {"ff_a": _cell("FDRE", {"C": [100], "D": [9], "CE": ["1"], "R": ["0"]}, {"Q": [1]}),
             "l1": _cell("LUT2", {"I0": [1], "I1": ["0"]}, {"O": [2]}),
             "l2": _cell("LUT4", {"I0": [2], "I1": [1], "I2": ["1"], "I3": [1]}, {"O": [3]}),
             "l3": _cell("LUT6", {"I0": [3], "I1": [2], "I2": [1], "I3": [1], "I4": [1], "I5": [1]}, {"O": [4]}),
             "ff_b": _cell("FDRE", {"C": [100], "D": [4], "CE": ["1"], "R": ["0"]}, {"Q": [9]}),
             "l4": _cell("LUT1", {"I0": [1]}, {"O": [5]}),
             "ff_c": _cell("FDRE", {"C": [100], "D": [5], "CE": ["1"], "R": ["0"]}, {"Q": [6]})}
    est = timing.estimate(_netlist(tmp_path, cells))["top"]
    expected = M.clk_to_q + 3 * (M.net + M.lut) + M.setup
    assert est["lut_levels"] == 3 and est["carry_cells"] == 0
    assert est["critical_path_ns"] == pytest.approx(expected, abs=1e-3)
    assert est["fmax_mhz"] == pytest.approx(1000 / expected, abs=0.1)


def test_a_carry_chain_pays_one_entry_then_the_dedicated_route(tmp_path: Path) -> None:
    # FF -> CARRY4 (S) -> CO -> CARRY4 (CI) -> CO -> CARRY4 (CI) -> O -> LUT -> FF
    cells = {"ff_a": _cell("FDRE", {"C": [100], "D": [1], "CE": ["1"], "R": ["0"]}, {"Q": [1]}),
             "c0": _cell("CARRY4", {"CI": ["0"], "CYINIT": ["0"], "DI": [1, 1, 1, 1], "S": [1, 1, 1, 1]},
                         {"O": [10, 11, 12, 13], "CO": [14, 15, 16, 17]}),
             "c1": _cell("CARRY4", {"CI": [17], "CYINIT": ["0"], "DI": ["0"] * 4, "S": ["1"] * 4},
                         {"O": [20, 21, 22, 23], "CO": [24, 25, 26, 27]}),
             "c2": _cell("CARRY4", {"CI": [27], "CYINIT": ["0"], "DI": ["0"] * 4, "S": ["1"] * 4},
                         {"O": [30, 31, 32, 33], "CO": [34, 35, 36, 37]}),
             "l": _cell("LUT3", {"I0": [33], "I1": [1], "I2": [1]}, {"O": [40]}),
             "ff_b": _cell("FDRE", {"C": [100], "D": [40], "CE": ["1"], "R": ["0"]}, {"Q": [41]})}
    est = timing.estimate(_netlist(tmp_path, cells))["top"]
    expected = M.clk_to_q + (M.net + M.carry_entry) + 2 * M.carry_chain + (M.net + M.lut) + M.setup
    assert (est["lut_levels"], est["carry_cells"]) == (1, 3)
    assert est["critical_path_ns"] == pytest.approx(expected, abs=1e-3)


def test_module_ports_start_and_end_paths(tmp_path: Path) -> None:
    # a purely combinational module: input port -> two LUTs -> output port
    cells = {"l1": _cell("LUT2", {"I0": [2], "I1": [3]}, {"O": [4]}),
             "l2": _cell("LUT2", {"I0": [4], "I1": [2]}, {"O": [5]})}
    ports = {"a": {"direction": "input", "bits": [2, 3]}, "y": {"direction": "output", "bits": [5]}}
    est = timing.estimate(_netlist(tmp_path, cells, ports))["top"]
    assert est["lut_levels"] == 2
    assert est["critical_path_ns"] == pytest.approx(M.clk_to_q + 2 * (M.net + M.lut) + M.setup, abs=1e-3)
