"""End to end on the default digits model: train once, then convert -> rtl -> verify at several
reuse factors; every output integer equals hls4ml's C-sim and latency/II are measured."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from codesign import graph as hwgraph
from codesign import pipeline
from codesign.cli import main as cli_main
from codesign.config import Config
from codesign.flow import run_flow
from codesign.rundir import read_json, write_json
from codesign.verify import verify_design

VECTORS = 1000


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Path]:
    run = tmp_path_factory.mktemp("digits")
    cfg = Config().replace(**{"verify.random_vectors": VECTORS, "output_dir": str(run)})
    res = run_flow(cfg, run, stages="train")
    assert res["model"]["test_accuracy"] >= 0.96
    return cfg, run


def _run_at(trained: tuple[Config, Path], tmp: Path, rf: int) -> tuple[dict, Path]:
    cfg, base = trained
    run = tmp / f"rf{rf}"
    run.mkdir()
    shutil.copytree(base / "model", run / "model")
    cfg = cfg.replace(**{"hls.reuse_factor": rf, "output_dir": str(run)})
    return run_flow(cfg, run, stages="convert,rtl,verify"), run


@pytest.mark.slow
@pytest.mark.train
@pytest.mark.hls4ml
@pytest.mark.verilator
@pytest.mark.parametrize("rf", [1, 4, 32])
def test_default_model_verifies_bit_exact(trained, tmp_path: Path, rf: int) -> None:
    res, run = _run_at(trained, tmp_path, rf)
    hls = res["hls"]
    assert hls["csim_vs_qkeras"]["exact_rows"] == hls["csim_vs_qkeras"]["rows"] == 360
    design = read_json(run / "rtl" / "design.json")
    assert design["ii"] == rf
    dense = [layer for layer in design["layers"] if layer["kind"] == "dense"]
    for layer in dense:
        assert layer["ii"] == (rf if layer["nonzero_weights"] else 1)
        if rf > 1 and layer["architecture"] == "folded":  # multiplier lanes: ceil(nonzeros / R) of them
            assert layer["multipliers"] == -(-layer["nonzero_weights"] // rf)
    sim = res["sim"]
    assert sim["passed"], sim["failures"]
    assert sim["mismatches"] == 0
    assert sim["vectors_checked"] == 360 + VECTORS
    assert sim["latency_min"] == sim["latency_max"] == design["latency"]
    assert sim["ii"] == design["ii"]
    assert sim["accuracy"] >= 0.96
    assert sim["qkeras_agreement"] == 1.0


@pytest.mark.slow
@pytest.mark.train
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_corrupted_weight_is_caught_and_layer_named(trained, tmp_path: Path) -> None:
    res, run = _run_at(trained, tmp_path, 4)
    assert res["sim"]["passed"]
    g = json.loads((run / "hls" / "graph.json").read_text())
    layer = next(layer for layer in g["layers"] if layer["name"] == "dense_1")
    w = np.array(layer["weights"])
    i, j = np.argwhere(w != 0)[0]
    w[i, j] = -w[i, j]  # one weight flips sign in the RTL only; the C-sim reference is unchanged
    layer["weights"] = w.tolist()
    write_json(tmp_path / "bad_graph.json", g)
    bad_rtl = tmp_path / "bad_rtl"
    pipeline.generate(hwgraph.load(tmp_path / "bad_graph.json"), bad_rtl)
    out = verify_design(bad_rtl, run / "sim" / "vectors.npz", tmp_path / "bad_sim", waves_on_failure=True)
    assert not out["passed"]
    assert out["mismatches"] > 0
    assert out["first_mismatch"]["layer"] == "dense_1"
    assert (tmp_path / "bad_sim" / out["files"]["waves"]).is_file()


@pytest.mark.slow
@pytest.mark.train
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_flow_is_cached_and_cli_summarises(trained, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    res, run = _run_at(trained, tmp_path, 32)
    cfg = Config().replace(**{"hls.reuse_factor": 32, "verify.random_vectors": VECTORS, "output_dir": str(run)})
    again = run_flow(cfg, run, stages="train,convert,rtl,verify")
    assert again["ran"] == [], "unchanged stages must not be redone"
    (run / "cfg.yaml").write_text(
        f"output_dir: {run}\nhls: {{reuse_factor: 32}}\nverify: {{random_vectors: {VECTORS}}}\n")
    code = cli_main(["flow", str(run / "cfg.yaml"), "--stages", "train,convert,rtl,verify"])
    out = capsys.readouterr().out
    assert code == 0
    assert "up to date" in out and "verify:  PASS" in out and "0 mismatches" in out


def test_stage_code_is_the_import_closure() -> None:
    """A stage's cache key covers every codesign module it imports, at any depth (golden.py for rtl,
    csim.py and simtools.py for verify were once missing from a hand-kept list)."""
    from codesign.flow import COMMANDS, REPO

    def code(command: str) -> set[str]:
        return {str(p.relative_to(REPO)) for p in COMMANDS[command].code}

    assert {"codesign/arch/adder_graph.py", "codesign/layers/dense.py", "codesign/primitives"} <= code("rtl")
    assert {"codesign/ipcore.py", "codesign/testbenches/bus.py", "codesign/templates/ip"} <= code("package")
    assert "codesign/ipcore.py" not in code("rtl")
    assert {"codesign/csim.py", "codesign/simtools.py", "codesign/vectors.py", "codesign/golden.py",
            "codesign/testbenches"} <= code("verify")
    assert "codesign/rtlgen.py" not in code("synth")


def test_no_import_cycles() -> None:
    """No two codesign modules import each other, directly or through others (imports inside
    functions included: a lazy import hides a cycle, it does not remove it)."""
    from codesign.flow import REPO, direct_imports

    names = [".".join(f.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
             for f in (REPO / "codesign").rglob("*.py")]
    graph: dict[str, set[str]] = {name: direct_imports(name) for name in names}
    for name in graph:  # a package importing its own submodules is not a cycle
        graph[name] = {d for d in graph[name] if d in graph and d != name and not d.startswith(name + ".")
                       and not name.startswith(d + ".")}

    def reaches(start: str) -> set[str]:
        seen, todo = set(), list(graph[start])
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo += graph[n]
        return seen

    cycles = sorted(n for n in graph if n in reaches(n))
    assert not cycles, f"modules in an import cycle: {cycles}"


def test_convert_headline_is_exact_rows_for_qkeras_and_argmax_for_float_models() -> None:
    from codesign.cli import _csim_headline

    a = {"rows": 1000, "exact_rows": 0, "argmax_agree": 997, "max_abs_err": 0.0123}
    float_model = {"layers": [{"kind": "Dense"}, {"kind": "Activation"}]}
    assert _csim_headline(a, float_model) == ("C-sim (fixed point) vs the float model: argmax agreement 997/1000, "
                                              "max |error| 0.0123")
    qkeras = {"layers": [{"kind": "QDense"}]}
    assert _csim_headline({**a, "exact_rows": 1000}, qkeras) == "C-sim vs QKeras exact rows 1000/1000"
    assert _csim_headline(a, qkeras) == "C-sim vs QKeras exact rows 0/1000, argmax agreement 997/1000"


def test_model_fingerprint_follows_the_teacher_file(tmp_path: Path) -> None:
    """A distillation teacher .h5 is an input of the model stage: retraining the teacher in place
    (same path, new bytes) must make the student stale; the config alone would not show it."""
    from codesign.flow import COMMANDS, stage_fingerprint

    teacher = tmp_path / "teacher.h5"
    teacher.write_bytes(b"first teacher")
    cfg = Config().replace(**{"training.distill.teacher": str(teacher)})
    train = COMMANDS["train"]
    before = stage_fingerprint(train, cfg, tmp_path)
    assert stage_fingerprint(train, cfg, tmp_path) == before
    teacher.write_bytes(b"retrained teacher")
    assert stage_fingerprint(train, cfg, tmp_path) != before
    # a "float" teacher is trained from the config itself: no file to follow
    float_cfg = Config().replace(**{"training.distill.teacher": "float"})
    assert stage_fingerprint(train, float_cfg, tmp_path) == stage_fingerprint(train, float_cfg, tmp_path)
