"""cocotb testbench for rtl/fxp_cast.v and rtl/fxp_relu.v: every input code, integers equal.

The DUT is either one fxp_cast / fxp_relu (ports din, dout) or a wrapper holding many of them side
by side (ports din_<k>, dout_<k>). The environment variable FXP_CASES holds a JSON list, one entry
per instance: {"port": "" or "_<k>", "kind": "cast" | "relu", "W_IN", "F_IN", "SIGNED_IN", "W_OUT",
"F_OUT", "SIGNED_OUT", "ROUND", "OVERFLOW"} (ROUND / OVERFLOW as in fixedpoint.QUANT_CODE /
OVERFLOW_CODE). The golden model is codesign.fixedpoint.cast; relu is ``x > 0 ? cast(x) : 0``.

Driver: every instance gets every code of its input type (instances with fewer codes cycle).
Monitor: reads every output after the inputs settle. Checker: compares whole code vectors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import cocotb
import numpy as np
from cocotb.triggers import Timer

from codesign.fixedpoint import OVERFLOW_MODES, QUANT_MODES, FixedType, cast


@dataclass(frozen=True)
class Case:
    port: str
    kind: str
    w_in: int
    f_in: int
    signed_in: bool
    dst: FixedType

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Case:
        dst = FixedType(int(d["W_OUT"]), int(d["W_OUT"]) - int(d["F_OUT"]), bool(d["SIGNED_OUT"]),
                        QUANT_MODES[int(d["ROUND"])], OVERFLOW_MODES[int(d["OVERFLOW"])])
        return cls(d.get("port", ""), d["kind"], int(d["W_IN"]), int(d["F_IN"]), bool(d["SIGNED_IN"]), dst)

    @property
    def codes(self) -> np.ndarray:
        lo = -(1 << (self.w_in - 1)) if self.signed_in else 0
        return np.arange(lo, lo + (1 << self.w_in), dtype=np.int64)

    def model(self, codes: np.ndarray) -> np.ndarray:
        """Golden model: fixedpoint.cast, or hls4ml's relu `x > 0 ? (res_T)x : 0`."""
        out = cast(codes, self.f_in, self.dst, self.signed_in)
        if self.kind == "relu":
            out = np.where(codes > 0, out, 0)
        return out

    def __str__(self) -> str:
        s = "fixed" if self.signed_in else "ufixed"
        return (f"{self.kind}{self.port}: {s}<{self.w_in},{self.w_in - self.f_in}> -> {self.dst}")


def _signed(raw: int, width: int, signed: bool) -> int:
    return raw - (1 << width) if signed and raw >> (width - 1) else raw


@cocotb.test()
async def exhaustive(dut: Any) -> None:
    cases = [Case.from_json(d) for d in json.loads(os.environ["FXP_CASES"])]
    assert cases, "FXP_CASES is empty"
    dins = [getattr(dut, f"din{c.port}") for c in cases]
    douts = [getattr(dut, f"dout{c.port}") for c in cases]
    # The HDL parameters reached the DUT: port widths match what the model assumes.
    for c, din, dout in zip(cases, dins, douts):
        assert len(din) == c.w_in and len(dout) == c.dst.width, f"{c}: port widths {len(din)}/{len(dout)}"

    n_steps = max(1 << c.w_in for c in cases)
    stimuli = [np.resize(c.codes, n_steps) for c in cases]
    got = [np.zeros(n_steps, dtype=np.int64) for _ in cases]
    for i in range(n_steps):
        for c, din, stim in zip(cases, dins, stimuli):  # driver
            din.value = int(stim[i]) & ((1 << c.w_in) - 1)
        await Timer(1, unit="ns")
        for k, (c, dout) in enumerate(zip(cases, douts)):  # monitor
            got[k][i] = _signed(dout.value.to_unsigned(), c.dst.width, c.dst.signed)

    failures = []
    for c, stim, g in zip(cases, stimuli, got):  # checker
        want = c.model(stim)
        if not np.array_equal(g, want):
            bad = np.flatnonzero(g != want)
            rows = "; ".join(f"din {stim[i]}: rtl {g[i]}, model {want[i]}" for i in bad[:4])
            failures.append(f"{c}: {bad.size}/{stim.size} differ: {rows}")
    dut._log.info("checked %d instances, %d input codes each (up to)", len(cases), n_steps)
    assert not failures, "\n".join(failures)
