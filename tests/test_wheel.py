"""The installable package: the sdist and the wheel carry every file the flow reads at run time, the
flow runs from the unpacked wheel alone (outside the repository), and ``codesign --version`` names
the versions it finds.

The slow test builds the sdist from a copy of the working tree with the build backend pyproject.toml
names (installed by pip into a temporary folder: the venv's own setuptools may be older), builds the
wheel from that sdist (so a file the sdist misses is missing from the wheel too), unzips the wheel
and runs ``python -S -m codesign.cli`` with PYTHONPATH = the unpacked wheel + the venv's
site-packages. ``-S`` skips site-packages' .pth files, so the editable install's finder (which maps
``codesign`` to the checkout) is never installed; a probe checks every codesign module comes from
the unpacked wheel.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

from codesign import __version__, toolinfo
from codesign.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "codesign"
#: the folders of run-time data the flow reads (codesign/resources.py)
DATA_DIRS = ("templates", "primitives", "testbenches")
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


def _package_files() -> tuple[set[str], set[str]]:
    """(every run-time data file, every Python module) of the package in the working tree, as
    archive names ``codesign/...``."""
    data, modules = set(), set()
    for f in PACKAGE.rglob("*"):
        if not f.is_file() or "__pycache__" in f.parts or f.suffix in (".pyc", ".pyo"):
            continue
        name = f.relative_to(REPO).as_posix()
        if f.relative_to(PACKAGE).parts[0] in DATA_DIRS:
            data.add(name)
        elif f.suffix == ".py":
            modules.add(name)
    return data, modules


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _isolated_env(pythonpath: list[Path]) -> dict[str, str]:
    """This environment without pytest's variables, PYTHONPATH exactly ``pythonpath``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PYTHON"))}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def _build_backend(backend: Path, call: str, src: Path, out: Path) -> Path:
    """Call the PEP 517 hook ``call`` (build_sdist / build_wheel) of setuptools in ``src``."""
    out.mkdir(exist_ok=True)
    code = f"from setuptools import build_meta; print(build_meta.{call}({str(out)!r}))"
    proc = _run([sys.executable, "-S", "-c", code], cwd=src, env=_isolated_env([backend]))
    return out / proc.stdout.strip().splitlines()[-1]


# ---------------------------------------------------------------------------------------------
# codesign --version (in this process: quick)


def test_version_names_codesign_packages_and_tools(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["--version"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    version = importlib.metadata.version("codesign")
    assert version == __version__
    assert lines[0].startswith(f"codesign {version} (")
    for name, dist in toolinfo.PACKAGES:
        row = next(ln for ln in lines if ln.split()[:1] == [name])
        assert row.split()[1] == importlib.metadata.version(dist), row
    verilator = next(ln for ln in lines if ln.split()[:1] == ["Verilator"])
    assert verilator.split()[1] == importlib.metadata.version("verilator")
    assert any(ln.split()[:1] == ["Yosys"] for ln in lines)
    tools = toolinfo.gather()
    assert exc.value.code == (toolinfo.EXIT_MISSING if toolinfo.missing(tools) else 0)
    if exc.value.code == 0:
        assert "MISSING:" not in out and "missing required" not in out


def test_version_names_what_is_missing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda exe, *a, **k: None if "yosys" in exe else which(exe, *a, **k))
    real = toolinfo.package_version
    monkeypatch.setattr(toolinfo, "package_version", lambda dist: None if dist == "qkeras" else real(dist))
    with pytest.raises(SystemExit) as exc:
        cli_main(["--version"])
    out = capsys.readouterr().out
    assert exc.value.code == toolinfo.EXIT_MISSING == 3
    assert next(ln for ln in out.splitlines() if ln.split()[:1] == ["Yosys"]).split()[1] == "MISSING:"
    assert next(ln for ln in out.splitlines() if ln.split()[:1] == ["QKeras"]).split()[1] == "MISSING:"
    missing_line = out.strip().splitlines()[-1]
    assert missing_line.startswith("missing required: ")
    assert set(missing_line.split(": ", 1)[1].split(", ")) >= {"QKeras", "Yosys"}


# ---------------------------------------------------------------------------------------------
# The wheel, built and run outside the repository


@pytest.mark.slow
@pytest.mark.hls4ml
@pytest.mark.verilator
def test_wheel_carries_its_data_and_runs_the_flow(tmp_path: Path) -> None:
    t0 = time.monotonic()
    # the working tree's package and metadata, copied: building writes build/ and *.egg-info
    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src / "codesign", ignore=_IGNORE)
    for name in ("pyproject.toml", "README.md", "MANIFEST.in", "requirements.lock"):
        shutil.copy2(REPO / name, src / name)
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    backend = tmp_path / "backend"
    _run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", str(backend),
          *requires], cwd=tmp_path)

    data, modules = _package_files()
    assert {n.split("/")[1] for n in data} == set(DATA_DIRS), data
    assert "codesign/testbenches/tb_network.py" in data and "codesign/primitives/fxp_cast.v" in data

    sdist = _build_backend(backend, "build_sdist", src, tmp_path / "dist")
    with tarfile.open(sdist) as tar:
        root = sdist.name.removesuffix(".tar.gz")
        in_sdist = {m.name.removeprefix(root + "/") for m in tar.getmembers() if m.isfile()}
        tar.extractall(tmp_path / "sdist", filter="data")
    assert not (data | modules) - in_sdist, f"missing from the sdist: {sorted((data | modules) - in_sdist)}"
    assert not [n for n in in_sdist if "__pycache__" in n or n.endswith(".pyc")]

    wheel = _build_backend(backend, "build_wheel", tmp_path / "sdist" / root, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as z:
        in_wheel = set(z.namelist())
        site = tmp_path / "site"
        z.extractall(site)
    assert not (data | modules) - in_wheel, f"missing from the wheel: {sorted((data | modules) - in_wheel)}"
    assert not [n for n in in_wheel if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in in_wheel if n.startswith("tests/")]
    built = time.monotonic() - t0

    # Outside the repository, the unpacked wheel first, no .pth files (the editable finder)
    work = tmp_path / "work"
    work.mkdir()
    env = _isolated_env([site, SITE_PACKAGES])
    python = [sys.executable, "-S"]
    probe = """
import json, sys
import codesign, codesign.cli, codesign.flow, codesign.rtlgen, codesign.verify, codesign.resources
mods = {n: getattr(m, '__file__', None) for n, m in sys.modules.items() if n.split('.')[0] == 'codesign'}
print(json.dumps({'file': codesign.__file__, 'modules': mods, 'data': str(codesign.resources.PACKAGE),
                  'finders': [repr(f) for f in sys.meta_path]}))
"""
    seen = json.loads(_run([*python, "-c", probe], cwd=work, env=env).stdout.strip().splitlines()[-1])
    assert Path(seen["file"]).resolve() == site / "codesign" / "__init__.py"
    assert Path(seen["data"]) == site / "codesign"
    outside = {n: f for n, f in seen["modules"].items() if f and not Path(f).resolve().is_relative_to(site)}
    assert not outside, f"codesign modules imported from outside the wheel: {outside}"
    assert not [f for f in seen["finders"] if "editable" in f.lower()], seen["finders"]

    version = _run([*python, "-m", "codesign.cli", "--version"], cwd=work, env=env).stdout
    assert version.splitlines()[0] == f"codesign {importlib.metadata.version('codesign')} ({site / 'codesign'})"

    # a small QKeras MLP (12 -> 7 -> 5) imported, converted, generated and verified
    from conftest import small_qkeras_mlp

    small_qkeras_mlp(seed=3).save(work / "net.h5")
    t1 = time.monotonic()
    flow = _run([*python, "-m", "codesign.cli", "flow", "--from-model", "net.h5", "--out", "run",
                 "--stages", "train,convert,rtl,verify,package", "--vectors", "200"], cwd=work, env=env)
    ran = time.monotonic() - t1
    assert "verify:  PASS" in flow.stdout, flow.stdout
    run = work / "run"
    verify = json.loads((run / "sim" / "verify.json").read_text())
    result = json.loads((run / "sim" / "result.json").read_text())
    assert verify["passed"] and result["passed"]
    assert verify["mismatches"] == result["mismatches"] == 0
    assert result["vectors_checked"] == 200
    design = json.loads((run / "rtl" / "design.json").read_text())
    assert result["latency_min"] == result["latency_max"] == design["latency"]
    # the design's primitives and testbench are the wheel's files, and nothing names the checkout
    for f in ("fxp_cast.v", "skid_buffer.v"):
        if (run / "rtl" / f).is_file():
            assert (run / "rtl" / f).read_bytes() == (site / "codesign" / "primitives" / f).read_bytes()
    for f in ("tb_network.py", "bus.py"):  # the IP core's testbench (the package stage)
        assert (run / "ip" / f).read_bytes() == (site / "codesign" / "testbenches" / f).read_bytes()
    for f in run.rglob("*"):
        if f.is_file() and ".cache" not in f.relative_to(run).parts and f.suffix in (".json", ".py", ".f", ".yaml"):
            assert str(PACKAGE) not in f.read_text(errors="replace"), f"{f} names the repository's package"
    print(f"wheel + sdist built in {built:.1f} s; flow from the wheel in {ran:.1f} s")
