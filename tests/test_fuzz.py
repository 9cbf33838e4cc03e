"""A fast subset of the random-model campaign (codesign.tools.fuzz): 20 small random QKeras MLPs, 6 CNNs
(the streaming CNNs: tests/test_fuzz_stream.py).

All 20 go through convert -> golden == C-sim -> rtl (or a clear refusal) -> lint; the first
SIMULATED non-refused cases are simulated, alternating Icarus and Verilator, with 0 mismatches and
measured latency / II equal to design.json. The long campaign is ``python -m codesign.tools.fuzz``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from codesign.tools import fuzz

SEED = 11
CASES = 20
SIMULATED = 6


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[fuzz.CaseResult]:
    root = tmp_path_factory.mktemp("fuzz")
    out = []
    sims = ["icarus", "verilator"]
    n_sim = 0
    for i in range(CASES):
        spec = fuzz.make_case(SEED, i, max_width=8, max_layers=3, max_reuse=6)
        simulate = n_sim < SIMULATED
        r = fuzz.run_case(spec, Path(root) / f"case{i}", simulator=sims[n_sim % 2], vectors=100,
                          simulate=simulate)
        if simulate and r.status != "refused" and r.stage not in ("convert", "golden", "rtl", "build"):
            n_sim += 1
        out.append(r)
    return out


def test_case_generation_is_deterministic() -> None:
    assert fuzz.make_case(SEED, 3) == fuzz.make_case(SEED, 3)
    assert fuzz.make_case(SEED, 3) != fuzz.make_case(SEED, 4)


@pytest.mark.hls4ml
@pytest.mark.verilator
@pytest.mark.icarus
def test_golden_equals_csim_for_every_case(results: list[fuzz.CaseResult]) -> None:
    assert len(results) == CASES
    bad = [r.line() for r in results if r.golden_mismatches != 0]
    assert not bad, "\n".join(bad)


@pytest.mark.hls4ml
@pytest.mark.verilator
@pytest.mark.icarus
def test_no_case_fails(results: list[fuzz.CaseResult]) -> None:
    """Every case passes or is refused with an RtlGenError naming a layer (lint problems aside)."""
    bad = [r.line() for r in results if r.status == "failed" and r.stage != "lint"]
    assert not bad, "\n".join(bad)
    refused = [r for r in results if r.status == "refused"]
    assert all("layer fc" in r.detail for r in refused)
    assert len(refused) < CASES // 2, "the generator should mostly build accepted designs"


@pytest.mark.hls4ml
@pytest.mark.verilator
@pytest.mark.icarus
def test_simulated_cases_cover_both_simulators(results: list[fuzz.CaseResult]) -> None:
    simulated = [r for r in results if r.simulators]
    assert len(simulated) >= 5
    assert {s for r in simulated for s in r.simulators} == {"icarus", "verilator"}
    for r in simulated:  # passed, or failed only at lint (simulation itself passed, see run_case)
        assert r.status == "passed" or (r.stage == "lint" and r.detail.endswith("simulation passed")), r.line()


@pytest.mark.hls4ml
@pytest.mark.verilator
@pytest.mark.icarus
def test_every_generated_design_is_lint_clean(results: list[fuzz.CaseResult]) -> None:
    bad = [r.line() for r in results if r.stage == "lint"]
    assert not bad, "\n".join(bad)


# ----------------------------------------------------------------------------- CNN family

CNN_SEED = 3
CNN_CASES = 6


@pytest.fixture(scope="module")
def cnn_results(tmp_path_factory: pytest.TempPathFactory) -> list[fuzz.CaseResult]:
    root = tmp_path_factory.mktemp("fuzz_cnn")
    return [fuzz.run_case(fuzz.family_case("cnn", CNN_SEED, i), Path(root) / f"cnn{i}", vectors=100)
            for i in range(CNN_CASES)]


@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
@pytest.mark.icarus
def test_random_cnns_are_bit_exact_or_refused_by_name(cnn_results: list[fuzz.CaseResult]) -> None:
    """Random conv/pool geometries (1-D and 2-D, padding, stride, max/avg, per-layer RFs), simulated."""
    assert len(cnn_results) == CNN_CASES
    bad = [r.line() for r in cnn_results if r.status == "failed"]
    assert not bad, "\n".join(bad)
    assert all(r.golden_mismatches == 0 for r in cnn_results if r.status == "passed")
    passed = [r for r in cnn_results if r.status == "passed"]
    assert len(passed) >= CNN_CASES - 2 and all(r.simulators for r in passed)
    refused = [r for r in cnn_results if r.status == "refused"]
    assert all(r.detail.startswith("layer ") for r in refused)
