"""The search-vs-grid comparison of codesign.tools.bench_search: exact hypervolume and dominance."""

from __future__ import annotations

import pytest

from codesign.tools.bench_search import compare, hypervolume


def test_hypervolume_of_boxes_is_exact() -> None:
    ref = [1.0, 1.0, 1.0]
    assert hypervolume([[0.5, 0.5, 0.5]], ref) == pytest.approx(0.125)
    # two overlapping boxes: 0.125 + 0.09375 - 0.0625
    assert hypervolume([[0.5, 0.5, 0.5], [0.25, 0.75, 0.5]], ref) == pytest.approx(0.15625)
    # a dominated point adds nothing; a point outside the reference adds nothing
    assert hypervolume([[0.5, 0.5, 0.5], [0.6, 0.6, 0.6], [1.2, 0.0, 0.0]], ref) == pytest.approx(0.125)
    assert hypervolume([], ref) == 0.0


def test_compare_names_the_dominating_front_point() -> None:
    objectives = ["accuracy", "LUT", "latency"]
    grid = [{"name": "g1", "accuracy": 0.90, "LUT": 5000, "latency": 6},
            {"name": "g2", "accuracy": 0.95, "LUT": 15000, "latency": 6}]
    front = [{"name": "t1", "accuracy": 0.92, "LUT": 4000, "latency": 6},   # dominates g1 only
             {"name": "t2", "accuracy": 0.94, "LUT": 9000, "latency": 5}]   # less accurate than g2
    res = compare(objectives, {"LUT": 20000}, grid, front)
    assert [d["name"] if d else None for d in res["dominated_by"]] == ["t1", None]
    # normalised by the LUT bound 20000 and the worst latency 6: the front covers more volume
    assert res["hv_search"] > 0 and res["hv_grid"] > 0
    solo = compare(objectives, {"LUT": 20000}, grid[:1], front[:1])
    assert solo["hv_search"] > solo["hv_grid"]
