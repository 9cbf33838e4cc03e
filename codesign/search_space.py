"""The search file of ``codesign search``: space, objectives, constraints; trial configs and their names.

A search file::

    base: {training: {epochs: 30}}            # a config (same schema as codesign/config.py)
    space:                                     # dotted config paths -> choices or a range
      model.hidden: [[16], [32], [32, 32]]     #   a list: one of these values
      model.layer_bits.dense_0: [4, 6, 8]      #   per-layer bits (model.layer_bits takes new keys)
      pruning.target_sparsity: {low: 0.0, high: 0.9, step: 0.1}   # a range (int when all ints)
      pruning.structured: [false, true]
      hls.reuse_factor: [1, 2, 4, 8]
    objectives: [accuracy, LUT, latency]       # accuracy is maximised, the others minimised
    constraints: "LUT <= 20000, ii <= 4"       # or a list of such strings
    trials: 40                                 # the budget (--trials overrides)
    calibration_trials: 4                      # the first trials are verified and synthesized in full
    seed: 0                                    # the sampler's seed
    sampler: nsga2                             # nsga2 | tpe
    out: runs/search

Every space path and value is checked against the config like a sweep's grid
(:func:`codesign.sweep_grid.spec_from_dict`). A trial's config is the base with one value per
space path; its fingerprint (the whole config without output_dir) names its run directory
``<out>/trials/<slug>-<fp>`` and is what a resumed search matches finished trials by.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from codesign import config as cfgmod
from codesign import rundir
from codesign.config import Config
from codesign.errors import ConfigError
from codesign.sweep_grid import TRAINING_SECTIONS, cfg_data, slug

#: Metrics a trial reports, the direction each is optimised in, and what they are.
METRICS: dict[str, str] = {"accuracy": "max", "LUT": "min", "FF": "min", "DSP": "min", "latency": "min",
                           "ii": "min"}
#: Constraint operators.
OPERATORS = ("<=", ">=", "<", ">")
SAMPLERS = ("nsga2", "tpe")
KEYS = ("base", "space", "objectives", "constraints", "trials", "calibration_trials", "seed", "sampler", "out")


@dataclass(frozen=True)
class Constraint:
    """``metric op bound``, e.g. LUT <= 20000."""

    metric: str
    op: str
    bound: float

    def violation(self, value: float) -> float:
        """<= 0 when satisfied (Optuna's convention), else how far off."""
        if self.op in ("<=", "<"):
            v = value - self.bound
            return v if self.op == "<=" else (v if v < 0 else v + 1e-9)
        v = self.bound - value
        return v if self.op == ">=" else (v if v < 0 else v + 1e-9)

    def text(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


@dataclass(frozen=True)
class Dim:
    """One searched config path: categorical ``choices`` or a ``low``..``high`` range."""

    path: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    integer: bool = False


@dataclass(frozen=True)
class SearchSpec:
    """A parsed search file."""

    base: dict[str, Any]
    space: tuple[Dim, ...]
    objectives: tuple[str, ...]
    constraints: tuple[Constraint, ...]
    trials: int
    calibration_trials: int
    seed: int
    sampler: str
    out: Path


@dataclass(frozen=True)
class TrialPoint:
    """One proposed configuration."""

    params: dict[str, Any]  #: space path -> chosen value
    cfg: Config
    slug: str
    fingerprint: str
    train_key: str
    dir: Path


def metric_name(text: str, where: str) -> str:
    """The canonical metric for ``text`` (case-insensitive), or a ConfigError listing the valid ones."""
    for m in METRICS:
        if m.lower() == text.strip().lower():
            return m
    raise ConfigError(f"{where}: unknown metric {text.strip()!r}; valid: {', '.join(METRICS)}")


def parse_constraints(data: Any) -> tuple[Constraint, ...]:
    """``"LUT <= 20000, ii <= 4"`` or a list of such strings -> constraints."""
    if data is None:
        return ()
    items: list[str] = []
    if isinstance(data, str):
        items = [s for s in data.split(",") if s.strip()]
    elif isinstance(data, list) and all(isinstance(s, str) for s in data):
        for s in data:
            items += [x for x in s.split(",") if x.strip()]
    else:
        raise ConfigError(f"constraints: expected a string like 'LUT <= 20000, ii <= 4' or a list of them, got {data!r}")
    out = []
    for item in items:
        m = re.fullmatch(r"\s*([A-Za-z_]+)\s*(<=|>=|==|=<|=>|!=|<|>|=)\s*([-+0-9.eE]+)\s*", item)
        if not m:
            raise ConfigError(f"constraints: cannot read {item.strip()!r}; expected 'METRIC OP NUMBER' with OP one of "
                              f"{', '.join(OPERATORS)}, e.g. 'LUT <= 20000'")
        metric = metric_name(m.group(1), f"constraint {item.strip()!r}")
        if m.group(2) not in OPERATORS:
            raise ConfigError(f"constraint {item.strip()!r}: unknown operator {m.group(2)!r}; valid: {', '.join(OPERATORS)}")
        try:
            bound = float(m.group(3))
        except ValueError as e:
            raise ConfigError(f"constraint {item.strip()!r}: {m.group(3)!r} is not a number") from e
        out.append(Constraint(metric, m.group(2), bound))
    return tuple(out)


def _dim(path: str, spec: Any, base_cfg: Config) -> Dim:
    where = f"space.{path}"
    if path == "output_dir":
        raise ConfigError(f"{where}: the search sets each trial's output directory itself")

    def check(v: Any) -> None:
        try:
            base_cfg.replace(**{path: v})
        except ConfigError as e:
            raise ConfigError(f"{where} = {v!r}: {e}") from e

    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where}: expected a non-empty list of values or {{low, high, step}}")
        labels = [_label(v) for v in spec]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{where}: repeated value in {spec!r}")
        for v in spec:
            check(v)
        return Dim(path, choices=tuple(spec))
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"low", "high", "step"})
        if unknown or "low" not in spec or "high" not in spec:
            raise ConfigError(f"{where}: a range is {{low: L, high: H}} with an optional step; got {dict(spec)!r}")
        lo, hi, step = spec["low"], spec["high"], spec.get("step")
        for name, v in (("low", lo), ("high", hi), ("step", step)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ConfigError(f"{where}.{name}: expected a number, got {v!r}")
        if not lo < hi:
            raise ConfigError(f"{where}: low ({lo}) must be below high ({hi})")
        if step is not None and step <= 0:
            raise ConfigError(f"{where}.step: must be positive, got {step}")
        integer = all(isinstance(v, int) for v in (lo, hi) + ((step,) if step is not None else ()))
        check(lo)
        check(hi)
        return Dim(path, low=lo, high=hi, step=step, integer=integer)
    raise ConfigError(f"{where}: expected a list of values or {{low, high, step}}, got {spec!r}")


def _label(v: Any) -> Any:
    """A categorical value as Optuna stores it (None/bool/int/float/str): lists become '16x16'."""
    if isinstance(v, (list, tuple)):
        return "x".join(str(_label(x)) for x in v) or "[]"
    if isinstance(v, Mapping):
        return yaml.safe_dump(dict(v), default_flow_style=True, sort_keys=True).strip()
    return v


def load_spec(path: str | Path, out: str | Path | None = None, trials: int | None = None) -> SearchSpec:
    """Read and check a search YAML file; ``out`` and ``trials`` override the file's."""
    return cfgmod.load_yaml_file(path, "search", lambda data: spec_from_dict(data or {}, out, trials))


def spec_from_dict(data: Mapping[str, Any], out: str | Path | None = None, trials: int | None = None) -> SearchSpec:
    """Build a SearchSpec from plain data; every error names the key or value at fault."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a search file is a mapping with {', '.join(KEYS)}; got {type(data).__name__}")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown search key; valid keys: {', '.join(KEYS)}")
    base = dict(data.get("base") or {})
    base_cfg = cfgmod.from_dict(base)
    space = data.get("space")
    if not isinstance(space, Mapping) or not space:
        raise ConfigError("space: expected a mapping of dotted config paths to value lists or ranges, e.g. "
                          "{hls.reuse_factor: [1, 4], pruning.target_sparsity: {low: 0.0, high: 0.9}}")
    dims = tuple(_dim(str(k), v, base_cfg) for k, v in space.items())
    objectives = data.get("objectives", ["accuracy", "LUT", "latency"])
    if isinstance(objectives, str):
        objectives = [s for s in objectives.split(",") if s.strip()]
    if not isinstance(objectives, list) or not objectives:
        raise ConfigError(f"objectives: expected a list of metrics ({', '.join(METRICS)}), got {objectives!r}")
    objs = tuple(metric_name(str(o), "objectives") for o in objectives)
    if len(set(objs)) != len(objs):
        raise ConfigError(f"objectives: {list(objs)} names a metric twice")
    if len(objs) < 2:
        raise ConfigError(f"objectives: a multi-objective search needs at least two metrics, got {list(objs)}")

    def count(key: str, default: int, low: int) -> int:
        v = data.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"{key}: expected an integer >= {low}, got {v!r}")
        return v

    n = count("trials", 40, 1) if trials is None else trials
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"--trials: expected an integer >= 1, got {n!r}")
    sampler = data.get("sampler", "nsga2")
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler: {sampler!r} is not supported; valid: {', '.join(SAMPLERS)}")
    return SearchSpec(base, dims, objs, parse_constraints(data.get("constraints")), n,
                      count("calibration_trials", 4, 0), count("seed", 0, 0), str(sampler),
                      Path(out if out is not None else data.get("out") or "runs/search"))


# ----------------------------------------------------------------------------- Optuna glue

def distributions(spec: SearchSpec) -> dict[str, Any]:
    """One Optuna distribution per space path (categoricals over labels, see :func:`_label`)."""
    import optuna.distributions as od

    out: dict[str, Any] = {}
    for d in spec.space:
        if d.choices is not None:
            out[d.path] = od.CategoricalDistribution([_label(v) for v in d.choices])
        elif d.integer:
            out[d.path] = od.IntDistribution(int(d.low), int(d.high), step=int(d.step or 1))  # type: ignore[arg-type]
        else:
            out[d.path] = od.FloatDistribution(float(d.low), float(d.high), step=d.step)  # type: ignore[arg-type]
    return out


def value_of(spec: SearchSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna's params (labels) -> config values, in space order."""
    values: dict[str, Any] = {}
    for d in spec.space:
        p = params[d.path]
        if d.choices is not None:
            values[d.path] = next(v for v in d.choices if _label(v) == p)
        elif d.integer:
            values[d.path] = int(p)
        else:
            # a stepped float range: round off the binary noise so equal choices hash equal
            x = float(p) if d.step is None else d.low + round((float(p) - d.low) / d.step) * d.step  # type: ignore[operator]
            values[d.path] = round(x, 10)
    return values


def labels_of(spec: SearchSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """Config values -> Optuna params (for replaying a recorded trial)."""
    return {d.path: _label(values[d.path]) if d.choices is not None else values[d.path] for d in spec.space}


def trial_point(spec: SearchSpec, values: Mapping[str, Any]) -> TrialPoint:
    """The config, name, fingerprint and run directory of one choice of values (any key order:
    records store them sorted; the slug follows the space's order)."""
    values = {d.path: values[d.path] for d in spec.space}
    cfg = cfgmod.from_dict(spec.base).replace(**dict(values))
    data = cfg_data(cfg)
    fp = rundir.fingerprint(data)
    tkey = rundir.fingerprint({s: data[s] for s in TRAINING_SECTIONS})
    s = slug(values)
    d = spec.out / "trials" / f"{s}-{fp[:8]}"
    return TrialPoint(dict(values), dataclasses.replace(cfg, output_dir=str(d)), s, fp, tkey, d)


# ----------------------------------------------------------------------------- Pareto

def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """a is at least as good as b in every objective and better in one."""
    better = False
    for x, y, d in zip(a, b, directions):
        if d == "max":
            x, y = -x, -y
        if x > y:
            return False
        if x < y:
            better = True
    return better


def pareto_indices(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points (equal points all stay)."""
    ok = [i for i, p in enumerate(points) if all(isinstance(v, (int, float)) and math.isfinite(v) for v in p)]
    return [i for i in ok if not any(dominates(points[j], points[i], directions) for j in ok if j != i)]
