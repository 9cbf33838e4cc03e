"""The flow: a named list of stages, each ``run(cfg, run_dir) -> dict``, with input fingerprints.

A stage is skipped when its fingerprint (the config fields it reads, the fingerprints of the stages
it reads, the source of every codesign module its entry modules import, directly or not, and the
data folders it reads) equals the one stored with its finished output. Each stage writes
atomically (codesign.rundir.stage_dir), so a crash never leaves a stage that looks finished.
"""

from __future__ import annotations

import ast
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codesign import config as cfgmod
from codesign import resources, rundir
from codesign.config import Config
from codesign.errors import ConfigError, StageError
from codesign.rundir import fingerprint, read_json

log = logging.getLogger(__name__)
REPO = resources.PACKAGE.parent  #: holds the codesign package (a checkout or site-packages)


def _model_stage(cfg: Config, run_dir: Path) -> dict[str, Any]:
    if cfg.model.import_path:
        from codesign.model_io import import_model

        return import_model(cfg, run_dir)
    from codesign.train import run

    return run(cfg, run_dir)


def _lazy(module: str) -> Callable[[Config, Path], dict[str, Any]]:
    def call(cfg: Config, run_dir: Path) -> dict[str, Any]:
        import importlib

        return importlib.import_module(module).run(cfg, run_dir)

    call.__name__ = f"{module}.run"
    return call


@dataclass(frozen=True)
class Stage:
    name: str  #: run-directory subfolder
    command: str  #: CLI subcommand
    fn: Callable[[Config, Path], dict[str, Any]]
    reads_config: tuple[str, ...]  #: config sections that change its output
    reads_stages: tuple[str, ...]  #: earlier stages it reads
    modules: tuple[str, ...]  #: entry modules; they and every codesign module they import are its code
    data: tuple[str, ...] = ()  #: package data folders it reads (codesign/...): templates, primitives, testbenches
    help: str = ""  #: the CLI subcommand's help line
    label: str = ""  #: how the report names it

    @property
    def code(self) -> tuple[Path, ...]:
        """Every file whose change invalidates the stage: its import closure and its data folders."""
        return tuple(sorted(set().union(*(import_closure(m) for m in self.modules)))) + \
            tuple(resources.PACKAGE / d for d in self.data)


FLOW: tuple[Stage, ...] = (
    Stage("model", "train", _model_stage, ("data", "model", "pruning", "training"), (),
          ("codesign.train", "codesign.model_io", "codesign.data"),
          help="train the QKeras model (or import one: model.import_path)", label="train"),
    Stage("hls", "convert", _lazy("codesign.convert"), ("hls",), ("model",), ("codesign.convert",),
          help="hls4ml conversion, HLS project and C-sim", label="convert (hls4ml C-sim)"),
    Stage("rtl", "rtl", _lazy("codesign.rtlgen"), ("rtl",), ("hls",), ("codesign.rtlgen",),
          ("templates/rtl", "primitives"),
          help="generate the Verilog accelerator", label="rtl"),
    Stage("sim", "verify", _lazy("codesign.verify"), ("verify",), ("hls", "rtl"), ("codesign.verify",),
          ("testbenches", "primitives"),
          help="cycle-accurate cocotb/Verilator verification against the C-sim", label="verify (RTL sim)"),
    Stage("synth", "synth", _lazy("codesign.synth"), ("synth",), ("rtl",), ("codesign.synth",),
          help="Yosys resource estimate", label="synth (Yosys)"),
    Stage("ip", "package", _lazy("codesign.ipcore"), (), ("rtl", "sim", "synth", "model"), ("codesign.ipcore",),
          ("templates/ip", "testbenches"),
          help="the IP core: RTL, AXI4-Stream top, FuseSoC core, testbenches, datasheet with measured figures",
          label="IP core"),
    Stage("report", "report", _lazy("codesign.report"), (), ("model", "hls", "rtl", "sim", "synth"),
          ("codesign.report",), ("templates",), help="HTML/Markdown/JSON report", label="report"),
)


def _module_file(name: str) -> Path | None:
    base = REPO / Path(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def direct_imports(module: str) -> set[str]:
    """The codesign modules ``module``'s source names in an import statement (inside functions
    too: they run when the code does). ``from codesign.x import y`` yields both ``codesign.x``
    and ``codesign.x.y``; names that are not modules drop out where they are looked up."""
    f = _module_file(module)
    if f is None:
        return set()
    pkg = module if f.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(f.read_text(), str(f))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("codesign"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            if base.startswith("codesign"):
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)  # submodules imported by name
    return found


@functools.cache
def import_closure(module: str) -> frozenset[Path]:
    """The source files of ``module`` and of every codesign module it imports, at any depth
    (imports inside functions included: they run when the stage does)."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        f = _module_file(name)
        if name in seen or f is None:
            continue
        seen[name] = f
        todo += direct_imports(name)
    # parents' __init__ run on import too
    for name in list(seen):
        parts = name.split(".")
        for k in range(1, len(parts)):
            f = _module_file(".".join(parts[:k]))
            if f is not None:
                seen.setdefault(".".join(parts[:k]), f)
    return frozenset(seen.values())


STAGE_NAMES = tuple(s.name for s in FLOW)
COMMANDS = {s.command: s for s in FLOW}


def stage_fingerprint(stage: Stage, cfg: Config, run_dir: Path) -> str:
    data = cfgmod.to_dict(cfg)
    parts: list[Any] = [stage.name, {k: data[k] for k in stage.reads_config}]
    if stage.name == "model" and cfg.model.import_path:
        parts += [Path(cfg.model.import_path)] + ([Path(cfg.model.weights_path)] if cfg.model.weights_path else [])
    teacher = cfg.training.distill.teacher
    if stage.name == "model" and teacher not in (None, "float"):
        # a teacher .h5 is an input like the config: retraining it in place must retrain the student
        parts.append(Path(teacher))
    for up in stage.reads_stages:
        fp = run_dir / up / "fingerprint.txt"
        parts.append(fp.read_text().strip() if fp.is_file() else "missing")
    parts += [str(f.relative_to(REPO)) for f in stage.code] + list(stage.code)  # names and contents
    return fingerprint(*parts)


def is_current(stage: Stage, cfg: Config, run_dir: Path) -> bool:
    fp = run_dir / stage.name / "fingerprint.txt"
    return (run_dir / stage.name / "result.json").is_file() and fp.is_file() and \
        fp.read_text().strip() == stage_fingerprint(stage, cfg, run_dir)


def select(stages: str | list[str] | None) -> list[Stage]:
    """Stages by run-dir or command name ("train,convert" or ["model", "hls"]); None: all."""
    if stages is None:
        return list(FLOW)
    names = [s.strip() for s in (stages.split(",") if isinstance(stages, str) else stages) if s.strip()]
    chosen = []
    for n in names:
        match = [s for s in FLOW if n in (s.name, s.command)]
        if not match:
            valid = ", ".join(s.command for s in FLOW)
            raise ConfigError(f"--stages: unknown stage {n!r}; valid: {valid}")
        chosen.append(match[0])
    return [s for s in FLOW if s in chosen]


def run_stage(stage: Stage, cfg: Config, run_dir: Path, force: bool = False) -> tuple[dict[str, Any], bool]:
    """Run one stage unless it is current; return (its result.json, whether it ran).

    Holds the run directory's lock (codesign.rundir.locked) for the stage; an interrupt
    (KeyboardInterrupt) is tagged with ``.stage`` so the CLI can say what was interrupted.
    """
    run_dir = Path(run_dir)
    with rundir.locked(run_dir):
        try:
            return _run_stage(stage, cfg, run_dir, force)
        except KeyboardInterrupt as e:
            if not hasattr(e, "stage"):
                e.stage = stage.name  # type: ignore[attr-defined]
            raise


def _run_stage(stage: Stage, cfg: Config, run_dir: Path, force: bool) -> tuple[dict[str, Any], bool]:
    if not force and is_current(stage, cfg, run_dir):
        return read_json(run_dir / stage.name / "result.json"), False
    fp = stage_fingerprint(stage, cfg, run_dir)
    t0 = time.time()
    result = stage.fn(cfg, run_dir)
    out = run_dir / stage.name
    if not (out / "result.json").is_file():
        raise StageError(f"stage {stage.name} finished without writing {out / 'result.json'}")
    (out / "fingerprint.txt").write_text(fp + "\n")
    log.info("stage %s done in %.1f s", stage.name, time.time() - t0)
    return result, True


def run_flow(cfg: Config, run_dir: Path | None = None, stages: str | list[str] | None = None,
             force: bool = False, progress: Callable[[str, str, float], None] | None = None) -> dict[str, Any]:
    """Run the selected stages in order; return {stage: result} plus per-stage wall times.

    ``progress(stage, state, seconds)`` is called with state "start", "done", "cached".
    Raises the stage's CodesignError on failure (earlier stages stay finished).
    """
    run_dir = Path(run_dir if run_dir is not None else cfg.output_dir)
    with rundir.locked(run_dir):  # one flow owns the run directory (a second one gets RunLockedError)
        return _run_flow(cfg, run_dir, stages, force, progress)


def _run_flow(cfg: Config, run_dir: Path, stages: str | list[str] | None, force: bool,
              progress: Callable[[str, str, float], None] | None) -> dict[str, Any]:
    cfgmod.dump(cfg, run_dir / "config.yaml")
    results: dict[str, Any] = {"run_dir": str(run_dir), "seconds": {}, "ran": []}
    for stage in select(stages):
        if progress:
            progress(stage.name, "start", 0.0)
        t0 = time.time()
        res, ran = run_stage(stage, cfg, run_dir, force)
        dt = time.time() - t0
        results[stage.name] = res
        results["seconds"][stage.name] = round(dt, 2)
        if ran:
            results["ran"].append(stage.name)
        if progress:
            progress(stage.name, "done" if ran else "cached", dt)
    return results
