"""A 20-case subset of the streaming-CNN campaign (``python -m codesign.tools.fuzz --family cnn-stream``):
random io_stream geometries (1-D and 2-D images up to 16x16 / 40 samples, 'same' / 'valid' padding,
strides, max / average stream pooling, per-layer reuse factors, Dense heads), each converted with
io_type io_stream, golden == C-sim on every integer, RTL linted, and streamed image by image through
the simulator (Icarus or Verilator, as the case's size picks): 0 mismatches, measured latency and II
equal to design.json. Its own file so that the test runner can run it beside the others.

The cases are the first 20 of the campaign recorded in docs/campaigns/ (seed 2027).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from codesign.tools import fuzz

STREAM_SEED = 2027
STREAM_CASES = 20


@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
@pytest.mark.icarus
def test_random_streaming_cnns_are_bit_exact(tmp_path: Path) -> None:
    results = [fuzz.run_case(fuzz.family_case("cnn-stream", STREAM_SEED, i), tmp_path / f"s{i}", vectors=100)
               for i in range(STREAM_CASES)]
    bad = [r.line() for r in results if r.status != "passed"]
    assert not bad, "\n".join(bad)
    assert all(r.golden_mismatches == 0 and r.simulators for r in results)
    assert all(r.spec.stream for r in results)
    assert len({r.spec.describe() for r in results}) == STREAM_CASES  # 20 different geometries
