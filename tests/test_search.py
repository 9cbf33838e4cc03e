"""codesign.search (search_space, estimate): spec errors, constraints, the ask/tell loop on a fake flow,
resume, unsatisfiable constraints, Ray cluster addresses (search and sweep), and one real 2-trial search.

The fake point runner writes real stage files whose numbers follow from the config (bigger and
wider models: more accurate, more LUTs; a higher reuse factor: fewer LUTs, longer II) and logs every
call to a file, so a test can count what ran across reruns and Ray workers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from codesign import estimate, search, search_space, sweep
from codesign.errors import CodesignError, ConfigError

SPACE = {"model.hidden": [[8], [16], [16, 16]], "model.bits": [3, 4, 6], "hls.reuse_factor": [1, 2, 4]}


def make_fake(calls: Path, mismatch_bits: int | None = None) -> Any:
    """A point_fn; self-contained (no module globals) so Ray pickles it by value."""

    def fake(cfg: Any, run_dir: Any, stages: Any) -> None:
        import json as _json
        from pathlib import Path as _Path

        run_dir = _Path(run_dir)
        hidden, bits, rf = list(cfg.model.hidden), cfg.model.bits, cfg.hls.reuse_factor
        with open(calls, "a") as f:
            f.write(_json.dumps({"dir": str(run_dir), "stages": list(stages)}) + "\n")

        def put(stage: str, name: str, data: dict) -> None:
            (run_dir / stage).mkdir(parents=True, exist_ok=True)
            (run_dir / stage / name).write_text(_json.dumps(data))

        size = sum(hidden) + 10
        acc = round(0.5 + 0.02 * bits + 0.004 * size, 4)
        if "model" in stages:
            put("model", "result.json", {"test_accuracy": acc, "weight_sparsity": 0.5})
        assert (run_dir / "model" / "result.json").is_file(), "no model"
        put("hls", "result.json", {"csim_accuracy": acc})
        adders = size * bits * 8 // rf
        layers = [{"kind": "dense", "n_out": size, "adders": adders, "pipeline_stages": 1,
                   "out_type": {"width": bits + 4}, "accum_type": {"width": bits + 8}, "multipliers": 0}]
        put("rtl", "result.json", {})
        put("rtl", "design.json", {"latency": 2 + rf, "ii": rf, "layers": layers})
        if "sim" in stages:
            mism = 3 if bits == mismatch_bits else 0
            put("sim", "result.json", {"accuracy": acc, "mismatches": mism, "latency_max": 2 + rf, "ii": rf})
        if "synth" in stages:
            raw = estimate.raw({"layers": layers})
            put("synth", "result.json", {"LUT": int(raw["LUT"] * 0.5) + 7 * bits, "FF": int(raw["FF"] * 0.8),
                                         "DSP": 0})

    return fake


def _calls(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _spec(tmp_path: Path, **over: Any) -> search_space.SearchSpec:
    data = {"base": {"training": {"epochs": 2}}, "space": SPACE, "objectives": ["accuracy", "LUT", "ii"],
            "trials": 6, "calibration_trials": 2, "seed": 3, "out": str(tmp_path / "se")}
    data.update(over)
    return search_space.spec_from_dict(data)


# ----------------------------------------------------------------------------- spec and constraints

def test_spec_errors_name_the_culprit() -> None:
    ok = {"space": {"model.bits": [4, 6]}}
    with pytest.raises(ConfigError, match="hls.reuse_factr"):
        search_space.spec_from_dict({"space": {"hls.reuse_factr": [1]}})
    with pytest.raises(ConfigError, match=r"space.model.bits = 99"):
        search_space.spec_from_dict({"space": {"model.bits": [4, 99]}})
    with pytest.raises(ConfigError, match="non-empty list"):
        search_space.spec_from_dict({"space": {"model.bits": []}})
    with pytest.raises(ConfigError, match=r"low \(0.9\) must be below high"):
        search_space.spec_from_dict({"space": {"pruning.target_sparsity": {"low": 0.9, "high": 0.1}}})
    with pytest.raises(ConfigError, match="a range is"):
        search_space.spec_from_dict({"space": {"pruning.target_sparsity": {"lo": 0.1, "high": 0.5}}})
    with pytest.raises(ConfigError, match="space: expected a mapping"):
        search_space.spec_from_dict({"space": {}})
    with pytest.raises(ConfigError, match="unknown search key; valid keys"):
        search_space.spec_from_dict({**ok, "spcae": {}})
    with pytest.raises(ConfigError, match="unknown metric 'LUTS'; valid: accuracy, LUT, FF, DSP, latency, ii"):
        search_space.spec_from_dict({**ok, "objectives": ["accuracy", "LUTS"]})
    with pytest.raises(ConfigError, match="at least two"):
        search_space.spec_from_dict({**ok, "objectives": ["accuracy"]})
    with pytest.raises(ConfigError, match="sampler: 'grid' is not supported; valid: nsga2, tpe"):
        search_space.spec_from_dict({**ok, "sampler": "grid"})
    with pytest.raises(ConfigError, match="trials: expected an integer >= 1"):
        search_space.spec_from_dict({**ok, "trials": 0})


def test_search_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="search file .*missing.yaml does not exist"):
        search_space.load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("space: {model.bits: [4, 6]}\nconstraints: 'LUT <= 2000, luts < 3'\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: constraint 'luts < 3': unknown metric 'luts'"):
        search_space.load_spec(bad)
    example = search_space.load_spec(Path(__file__).parent.parent / "docs" / "search_example.yaml", trials=3,
                                     out=tmp_path / "o")
    assert example.trials == 3 and example.out == tmp_path / "o" and len(example.space) == 6
    assert [c.text() for c in example.constraints] == ["LUT <= 20000", "ii <= 16"]


def test_constraints_parse_and_errors() -> None:
    cs = search_space.parse_constraints("LUT <= 20000, II < 4")
    assert [(c.metric, c.op, c.bound) for c in cs] == [("LUT", "<=", 20000.0), ("ii", "<", 4.0)]
    assert cs[0].violation(20000) <= 0 < cs[0].violation(20001)
    assert cs[1].violation(3) <= 0 < cs[1].violation(4)  # strict: 4 is not < 4
    ge = search_space.parse_constraints(["accuracy >= 0.9"])[0]
    assert ge.violation(0.95) <= 0 < ge.violation(0.85)
    with pytest.raises(ConfigError, match="unknown metric 'area'; valid: accuracy, LUT"):
        search_space.parse_constraints("area <= 3")
    with pytest.raises(ConfigError, match="unknown operator '=='; valid: <=, >=, <, >"):
        search_space.parse_constraints("LUT == 3")
    with pytest.raises(ConfigError, match="cannot read 'LUT is small'"):
        search_space.parse_constraints("LUT is small")


def test_pareto_and_estimate_calibration() -> None:
    pts = [[0.9, 100, 4], [0.95, 200, 4], [0.9, 150, 4], [0.8, 100, 1], [0.95, 200, 4]]
    front = search_space.pareto_indices(pts, ["max", "min", "min"])
    assert front == [0, 1, 3, 4]  # [0.9, 150, 4] is dominated by [0.9, 100, 4]; equal points both stay
    assert estimate.fit([(1.0, 2.0), (2.0, 4.0)]) == 2.0
    pts2 = [{"trial": i, "raw": {"LUT": x, "FF": x, "DSP": 0}, "yosys": {"LUT": 2 * x, "FF": 3 * x, "DSP": 0}}
            for i, x in enumerate([10.0, 20.0, 40.0])]
    assert estimate.calibrate(pts2) == {"LUT": [2.0], "FF": [3.0], "DSP": None}
    err = estimate.errors(pts2)
    assert err["LUT"]["n"] == 3 and err["LUT"]["median"] == 0.0 and err["LUT"]["max"] == 0.0
    pts2[0]["yosys"]["LUT"] = 30.0  # 10 raw -> 30 Yosys: off the others' scale of 2 by a third
    err = estimate.errors(pts2)
    assert err["LUT"]["points"][0]["estimate"] == 20.0
    assert abs(err["LUT"]["points"][0]["rel_error"] - 1 / 3) < 1e-12
    # with enough points the LUT fit weighs each feature:
    # Yosys = 2 x folded cost model + 0.5 x parallel adders + 1.5 x element-wise bits
    feats = [[10.0 * i, 3.0 * (i % 3), 5.0 * (i % 4)] for i in range(1, 10)]
    pts3 = [{"trial": i, "raw": {"LUT": sum(f), "FF": 1.0, "DSP": 0, "features": f},
             "yosys": {"LUT": 2 * f[0] + 0.5 * f[1] + 1.5 * f[2], "FF": 1, "DSP": 0}} for i, f in enumerate(feats)]
    w = estimate.calibrate(pts3)["LUT"]
    assert w is not None and [round(x, 9) for x in w] == [2.0, 0.5, 1.5]
    assert estimate.errors(pts3)["LUT"]["max"] < 1e-9


# ----------------------------------------------------------------------------- the search loop (fake flow)

def test_search_runs_verifies_the_front_and_resumes(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    spec = _spec(tmp_path)
    lines: list[str] = []
    s = search.run_search(spec, point_fn=make_fake(calls), executor="local", progress=lines.append)
    assert s["finished"] == len(list((spec.out / "trials").glob("*/trial.json")))
    assert 2 <= s["finished"] <= 6 and s["front"] and s["front_verified"]
    rows = {r["trial"]: r for r in s["rows"]}
    for t in s["front"]:  # every front point verified bit-exact and synthesized: Yosys figures, 0 mismatches
        r = rows[t]
        assert r["verified"] and r["mismatches"] == 0 and r["source"] == "yosys" and r["LUT"] == r["yosys_LUT"]
        assert (Path(r["dir"]) / "sim" / "result.json").is_file() and (Path(r["dir"]) / "synth" / "result.json").is_file()
    # no front point is dominated by any trial; every other trial is dominated by a front point
    objs = [(r["accuracy"], r["LUT"], r["ii"]) for r in s["rows"]]
    dirs = ["max", "min", "min"]
    for r in s["rows"]:
        me = (r["accuracy"], r["LUT"], r["ii"])
        dominated = any(search_space.dominates(o, me, dirs) for o in objs)
        assert dominated != r["on_front"]
    # calibration: the fake's Yosys LUT is 0.5 * raw + 7 * bits; scale near 0.5, leave-one-out error measured
    cal = s["calibration"]
    assert cal["scales"]["LUT"] is not None and cal["scales"]["FF"] is not None
    loo = cal["leave_one_out"]["LUT"]
    assert loo["n"] >= 2 and 0 < loo["median"] <= loo["max"] < 0.25
    html = (spec.out / "report.html").read_text()
    assert "The front: chosen configurations" in html and "data:image/png;base64" in html
    assert (spec.out / "results.csv").read_text().count("\n") == s["finished"] + 1
    n_calls = len(_calls(calls))
    assert sum("model" in c["stages"] for c in _calls(calls)) == len({c["dir"] for c in _calls(calls)
                                                                        if "model" in c["stages"]})
    # a rerun with the same budget replays every trial and runs nothing
    s2 = search.run_search(spec, point_fn=make_fake(calls), executor="local", progress=lines.append)
    assert len(_calls(calls)) == n_calls
    assert s2["front"] == s["front"] and s2["finished"] == s["finished"]
    assert any("replayed" in line for line in lines)


def test_killed_search_resumes_without_redoing_trials(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    spec = _spec(tmp_path, trials=4)
    fake = make_fake(calls)
    n = {"points": 0}

    def dies_on_third(cfg: Any, run_dir: Any, stages: Any) -> None:
        n["points"] += 1
        if n["points"] == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the third trial
        fake(cfg, run_dir, stages)

    with pytest.raises(KeyboardInterrupt):
        search.run_search(spec, point_fn=dies_on_third, executor="local")
    done = {p.parent for p in (spec.out / "trials").glob("*/trial.json")}
    assert len(done) == 2
    before = _calls(calls)
    s = search.run_search(spec, point_fn=make_fake(calls), executor="local")
    after = _calls(calls)[len(before):]
    assert not any(Path(c["dir"]) in done and "hls" in c["stages"] and "sim" not in c["stages"] for c in after), \
        "a finished trial re-ran"
    assert not any(Path(c["dir"]) in done and "model" in c["stages"] for c in after), "a finished trial re-trained"
    assert s["finished"] >= 3 and s["front_verified"]


def test_records_of_an_older_config_schema_still_resume(tmp_path: Path) -> None:
    """A record whose run's config.yaml lacks a field codesign added since (so its fingerprint and
    directory name differ) is still this search's trial; one whose config differs in a value is not."""
    import yaml

    calls = tmp_path / "calls.jsonl"
    spec = _spec(tmp_path, trials=2, calibration_trials=0)
    search.run_search(spec, point_fn=make_fake(calls), executor="local")
    recs = sorted((spec.out / "trials").glob("*/trial.json"))
    assert len(recs) == 2
    for i, path in enumerate(recs):
        cfg = yaml.safe_load((path.parent / "config.yaml").read_text())
        if i == 0:
            del cfg["verify"]["seed"]  # "added since": not in the old run's config
        else:
            cfg["training"]["epochs"] = 99  # a different trial
        (path.parent / "config.yaml").write_text(yaml.safe_dump(cfg))
        rec = json.loads(path.read_text())
        rec["fingerprint"] = "0" * 16  # what an older schema hashed to
        path.write_text(json.dumps(rec))
        path.parent.rename(path.parent.with_name(path.parent.name[:-8] + "00000000"))
    loaded = search.load_records(spec)
    assert [Path(r["dir"]).name.endswith("00000000") for r in loaded.values()] == [True]
    assert len(loaded) == 1


def test_unsatisfiable_constraints_end_with_a_clear_error_and_keep_trials(tmp_path: Path) -> None:
    spec = _spec(tmp_path, trials=3, constraints="LUT <= 1, ii <= 4")
    with pytest.raises(CodesignError, match=r"no trial satisfies the constraints LUT <= 1, ii <= 4: 3 trial\(s\) "
                                            r"finished; the closest, trial \d+ \(.*\), has LUT [0-9.]+, ii \d"):
        search.run_search(spec, point_fn=make_fake(tmp_path / "c.jsonl"), executor="local")
    assert len(list((spec.out / "trials").glob("*/trial.json"))) == 3
    assert json.loads((spec.out / "search.json").read_text())["front"] == []


def test_front_point_with_mismatches_is_refuted(tmp_path: Path) -> None:
    spec = _spec(tmp_path, space={"model.bits": [3, 6]}, trials=2, calibration_trials=0)
    s = search.run_search(spec, point_fn=make_fake(tmp_path / "c.jsonl", mismatch_bits=6), executor="local")
    rows = {r["trial"]: r for r in s["rows"]}
    assert s["refuted"] and all(rows[t]["mismatches"] == 3 and not rows[t]["on_front"] for t in s["refuted"])
    assert s["front_verified"] and all(rows[t]["mismatches"] == 0 for t in s["front"])


# ----------------------------------------------------------------------------- a real Ray cluster address

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``ray start --head`` on the loopback with 2 CPUs; stopped in the finalizer.

    ``ray stop`` would end every Ray instance of this user on the machine (other sessions' too),
    so the head runs with ``--block`` in its own session and the finalizer ends that session's
    processes by their ids.
    """
    # Ray 2.60 turns token authentication on when a token file exists; this private loopback cluster
    # runs without it (head, workers and this driver alike), so no credential is read or needed.
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray_bin = Path(sys.executable).with_name("ray")
    port = _free_port()
    temp = Path(f"/tmp/rt{os.getpid()}")  # short: Ray's socket paths must fit 107 bytes
    log = tmp_path_factory.mktemp("ray") / "head.log"
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
                             "--temp-dir", str(temp), "--disable-usage-stats"],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if head.poll() is not None:
                pytest.fail(f"ray start --head exited with {head.returncode}: {log.read_text()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not listen on {address} in 60 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield address
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        os.killpg(head.pid, 15)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, 9)
            head.wait()
        _kill_session_leftovers(head.pid, temp)
        shutil.rmtree(temp, ignore_errors=True)
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


def _kill_session_leftovers(sid: int, temp: Path) -> None:
    """Kill processes of the head's session (by pid) that outlived it: Ray's raylet, GCS, workers."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if os.getsid(int(d.name)) == sid or str(temp) in (d / "cmdline").read_bytes().decode(errors="replace"):
                os.kill(int(d.name), 9)
        except (OSError, ValueError):
            continue


@pytest.mark.slow
@pytest.mark.train
@pytest.mark.hls4ml
@pytest.mark.verilator
@pytest.mark.yosys
def test_real_search_and_sweep_through_a_ray_cluster_address(tmp_path: Path, ray_cluster: str,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    """A 2-trial search of the real flow (tiny MLP, 2 epochs, 20 random vectors) on a cluster that
    ``ray start --head`` started, then ``codesign sweep FILE --address A`` on the same cluster, its
    points a fake flow (the command line's address path is what is tested)."""
    spec = search_space.spec_from_dict({
        "base": {"model": {"hidden": [4], "bits": 4}, "training": {"epochs": 2}, "pruning": {"target_sparsity": 0.0},
                 "verify": {"random_vectors": 20}, "synth": {"per_layer": False, "asic": False}},
        "space": {"hls.reuse_factor": [1, 2, 4]}, "objectives": ["accuracy", "LUT", "latency"], "trials": 2,
        "calibration_trials": 1, "seed": 0, "out": str(tmp_path / "se")})
    s = search.run_search(spec, address=ray_cluster, worker_output=False)
    import ray

    assert not ray.is_initialized()  # the search disconnected from the cluster it did not start
    assert s["finished"] == 2 and not s["failed"] and s["front"] and s["front_verified"]
    rows = {r["trial"]: r for r in s["rows"]}
    for t in s["front"]:
        d = Path(rows[t]["dir"])
        verify = json.loads((d / "sim" / "verify.json").read_text())
        res = json.loads((d / "synth" / "resources.json").read_text())
        assert verify["mismatches"] == 0 and rows[t]["mismatches"] == 0
        assert rows[t]["LUT"] == res["LUT"] > 0 and rows[t]["accuracy"] == rows[t]["acc_rtl"]
    # the two trials differ only in reuse factor: one trained model, shared
    assert len(list((spec.out / "models").glob("*/model/result.json"))) == 1

    calls = tmp_path / "calls.jsonl"
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(json.dumps({"base": {"training": {"epochs": 2}},
                                      "grid": {"hls.reuse_factor": [1, 4], "model.bits": [4]},
                                      "out": str(tmp_path / "sw")}))  # JSON is YAML
    real_run_sweep, seen = sweep.run_sweep, {}

    def run_sweep_with_fake_points(spec: Any, **kw: Any) -> Any:
        seen.update(kw)
        seen["rows"] = real_run_sweep(spec, point_fn=make_fake(calls), **kw)
        return seen["rows"]

    monkeypatch.setattr(sweep, "run_sweep", run_sweep_with_fake_points)
    from codesign.cli import main as cli_main

    assert cli_main(["sweep", str(sweep_file), "--address", ray_cluster, "--workers", "2"]) == 0
    assert seen["address"] == ray_cluster and seen["executor"] == "ray"
    assert "sweep: 2 points ok, 0 failed" in capsys.readouterr().out
    assert not ray.is_initialized()  # the sweep, too, disconnected from the cluster it did not start
    swept = seen["rows"]
    assert [r["status"] for r in swept] == ["ok", "ok"]
    assert [r["ii"] for r in swept] == [1, 4] and all(r["LUT"] is not None for r in swept)
    assert len({c["dir"] for c in _calls(calls)}) == 3  # one training, two points
