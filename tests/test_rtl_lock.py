"""The RTL lock: the backend writes the same bytes for a fixed corpus of graphs.

The corpus (tests/fixtures/rtl_lock/*.graph.json) is the hardware IR of hls4ml's reference models
and of the test suite's fuzz cases; hashes.json holds the SHA-256 of every file the backend wrote
for each (or the refusal message). A change here is a change of the generated RTL: regenerate
with ``python -m codesign.tools.rtl_lock --write`` only when it is intended, and say why.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codesign.errors import RtlGenError
from codesign.tools import rtl_lock

HASHES = json.loads((rtl_lock.LOCK_DIR / rtl_lock.HASHES).read_text())
#: Cases whose generation takes minutes (the float jet-tagging MLP at RF 1: a 16-bit adder graph).
SLOW = {"KERAS_3layer_rf1"}


def test_lock_covers_the_corpus() -> None:
    graphs = sorted(p.name.removesuffix(".graph.json") for p in rtl_lock.LOCK_DIR.glob("*.graph.json"))
    assert graphs == sorted(HASHES)
    assert len(graphs) == len(rtl_lock.REFERENCE_CASES) + rtl_lock.MLP_CASES + rtl_lock.CNN_CASES


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c
                                  for c in sorted(HASHES)])
def test_generated_rtl_is_byte_identical(case: str, tmp_path: Path) -> None:
    expected = HASHES[case]
    graph_json = rtl_lock.LOCK_DIR / f"{case}.graph.json"
    if "refused" in expected:
        with pytest.raises(RtlGenError) as e:
            rtl_lock.design_digests(graph_json, tmp_path)
        assert str(e.value) == expected["refused"]
        return
    assert rtl_lock.design_digests(graph_json, tmp_path) == expected
