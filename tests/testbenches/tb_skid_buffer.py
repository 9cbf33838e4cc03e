"""cocotb testbench for rtl/skid_buffer.v.

Environment: SKID_W (data width, must equal the HDL parameter W), SKID_WORDS (words per test),
SKID_SEED (random seed for gaps and back-pressure).

The driver changes inputs at the falling edge; a transfer happens at the next rising edge when
valid and ready were both high (in_ready and out_valid are registers, so they are stable there).
Source: random valid gaps, holds valid and data until accepted (AXI4-Stream). Sink: random ready.
Checks: every word arrives exactly once and in order; the output obeys the AXI rules (out_valid
stays high and out_data stable until accepted); with an always-ready sink and an always-valid
source one word passes per cycle; in_ready is low during reset.
"""

from __future__ import annotations

import os
import random
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

W = int(os.environ.get("SKID_W", "8"))
WORDS = int(os.environ.get("SKID_WORDS", "2000"))
SEED = int(os.environ.get("SKID_SEED", "1"))


async def _reset(dut: Any) -> None:
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.in_valid.value = 0
    dut.in_data.value = 0
    dut.out_ready.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    assert int(dut.in_ready.value) == 0, "in_ready must be low during reset"
    assert int(dut.out_valid.value) == 0, "out_valid must be low during reset"
    dut.rst.value = 0


async def _stream(dut: Any, rng: random.Random, p_valid: float, p_ready: float,
                  words: list[int], max_cycles: int) -> tuple[list[int], list[int], list[int]]:
    """Run until every word came out. Returns (accepted, received, cycle of each output)."""
    accepted: list[int] = []
    received: list[int] = []
    out_cycles: list[int] = []
    idx = 0
    valid = False
    prev_out: tuple[int, int] | None = None  # (valid, data) when the last cycle stalled
    for cycle in range(max_cycles):
        await FallingEdge(dut.clk)
        in_ready = int(dut.in_ready.value)
        out_valid = int(dut.out_valid.value)
        out_data = int(dut.out_data.value.to_unsigned()) if out_valid else None
        if prev_out is not None:  # AXI: a stalled output holds valid and data
            assert out_valid == 1 and out_data == prev_out[1], (
                f"cycle {cycle}: output changed while stalled: was {prev_out}, now {out_valid}/{out_data}")
        # Source: keep a pending word; otherwise maybe start the next one.
        if not valid and idx < len(words) and rng.random() < p_valid:
            valid = True
        dut.in_valid.value = int(valid)
        dut.in_data.value = words[idx] if valid else rng.getrandbits(W)  # junk when not valid
        ready = rng.random() < p_ready
        dut.out_ready.value = int(ready)
        # What happens at the next rising edge:
        if valid and in_ready:
            accepted.append(words[idx])
            idx += 1
            valid = False
        if out_valid and ready:
            received.append(out_data)  # type: ignore[arg-type]
            out_cycles.append(cycle)
        prev_out = (out_valid, out_data) if (out_valid and not ready) else None  # type: ignore[assignment]
        if len(received) == len(words):
            await FallingEdge(dut.clk)  # let that last transfer happen
            break
    dut.in_valid.value = 0
    dut.out_ready.value = 0
    return accepted, received, out_cycles


@cocotb.test()
async def random_gaps_and_backpressure(dut: Any) -> None:
    assert len(dut.in_data) == W and len(dut.out_data) == W, "SKID_W differs from the HDL parameter"
    await _reset(dut)
    rng = random.Random(SEED)
    for p_valid, p_ready in ((0.5, 0.5), (0.9, 0.3), (0.3, 0.9), (1.0, 0.5), (0.7, 1.0)):
        words = [rng.getrandbits(W) for _ in range(WORDS // 5)]
        acc, rec, _ = await _stream(dut, rng, p_valid, p_ready, words, max_cycles=40 * len(words) + 100)
        assert acc == words, f"p_valid={p_valid} p_ready={p_ready}: accepted words differ from sent"
        assert rec == words, (
            f"p_valid={p_valid} p_ready={p_ready}: {len(rec)} of {len(words)} words out, "
            f"first difference at {next((i for i, (a, b) in enumerate(zip(rec, words)) if a != b), len(rec))}")
        # Drained: nothing left inside.
        await FallingEdge(dut.clk)
        assert int(dut.out_valid.value) == 0 and int(dut.in_ready.value) == 1


@cocotb.test()
async def full_throughput(dut: Any) -> None:
    await _reset(dut)
    rng = random.Random(SEED + 1)
    words = [rng.getrandbits(W) for _ in range(200)]
    acc, rec, cycles = await _stream(dut, rng, 1.0, 1.0, words, max_cycles=400)
    assert rec == words and acc == words
    # One word per cycle: consecutive outputs on consecutive cycles, latency one cycle after
    # in_ready rises (the first edge after reset).
    assert cycles == list(range(cycles[0], cycles[0] + len(words))), "a bubble in the output stream"
    assert cycles[0] <= 2, f"first word out at cycle {cycles[0]}"


@cocotb.test()
async def stall_fills_both_entries(dut: Any) -> None:
    """Two words enter while the sink stalls (the skid entry is used), then in_ready drops."""
    await _reset(dut)
    await FallingEdge(dut.clk)  # in_ready rises on the first edge after reset
    assert int(dut.in_ready.value) == 1
    mask = (1 << W) - 1
    dut.out_ready.value = 0
    seen_ready = []
    for k in range(4):  # offer 4 words, sink stalled
        dut.in_valid.value = 1
        dut.in_data.value = (0x5A + k) & mask
        seen_ready.append(int(dut.in_ready.value))
        await FallingEdge(dut.clk)
        if seen_ready[-1] == 0:
            break
    assert seen_ready == [1, 1, 0], f"in_ready over the stall: {seen_ready}"
    dut.in_valid.value = 0
    dut.out_ready.value = 1
    outs = []
    for _ in range(4):  # sink ready: whatever is valid now transfers at the next edge
        if int(dut.out_valid.value):
            outs.append(int(dut.out_data.value.to_unsigned()))
        await FallingEdge(dut.clk)
    assert outs == [0x5A & mask, 0x5B & mask], f"words out after the stall: {outs}"
    assert int(dut.in_ready.value) == 1 and int(dut.out_valid.value) == 0
