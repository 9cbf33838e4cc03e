"""The sweep file and its grid: parsing and checking, expansion into points, point names.

A sweep file (format: :mod:`codesign.sweep`) holds a base config, a grid of dotted config paths
to value lists and an output directory (:func:`load_spec`, :func:`spec_from_dict`: every grid
path and value is checked against the config). :func:`expand` turns the grid's cartesian product
into points (:class:`Point`), each with its resolved config, a readable slug (:func:`slug`), the
fingerprint that names its run directory ``<out>/points/<slug>-<fp>`` and the key of the trained
model it shares with the points that train identically (:func:`training_groups`).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from codesign import config as cfgmod
from codesign import rundir
from codesign.config import Config
from codesign.errors import ConfigError

#: Config sections whose fields change the trained model; points equal in these share training.
TRAINING_SECTIONS = ("data", "model", "pruning", "training")
#: Short names used in point slugs.
SLUG_NAMES = {"hls.reuse_factor": "rf", "model.bits": "b", "pruning.target_sparsity": "sp",
              "model.hidden": "h", "hls.strategy": "st", "model.input_bits": "ib", "training.seed": "seed",
              "training.epochs": "ep", "synth.nodsp": "nodsp", "model.integer_bits": "ibits"}


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file."""

    #: Base configuration data (before grid changes).
    base: dict[str, Any]
    #: Dotted config path -> values, in file order.
    grid: dict[str, list[Any]]
    #: Output directory of the sweep.
    out: Path


@dataclass(frozen=True)
class Point:
    """One grid point."""

    index: int
    values: dict[str, Any]
    cfg: Config
    slug: str
    #: Hash of the whole resolved config (output_dir excluded).
    fingerprint: str
    #: Hash of the training-relevant sections: equal keys share one trained model.
    train_key: str
    dir: Path


def load_spec(path: str | Path, out: str | Path | None = None) -> SweepSpec:
    """Read and check a sweep YAML file; ``out`` overrides the file's ``out``.

    Raises:
        ConfigError: naming the file and the bad key or value.
    """
    return cfgmod.load_yaml_file(path, "sweep", lambda data: spec_from_dict(data or {}, out))


def spec_from_dict(data: Mapping[str, Any], out: str | Path | None = None) -> SweepSpec:
    """Build a SweepSpec from plain data, checking every grid path and value against the config."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a sweep file is a mapping with base, grid and out; got {type(data).__name__}")
    unknown = sorted(set(data) - {"base", "grid", "out"})
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown sweep key; valid keys: base, grid, out")
    base = dict(data.get("base") or {})
    base_cfg = cfgmod.from_dict(base)  # validates the base
    grid = data.get("grid") or {}
    if not isinstance(grid, Mapping) or not grid:
        raise ConfigError("grid: expected a mapping of dotted config paths to value lists, e.g. "
                          "{hls.reuse_factor: [1, 4]}")
    clean: dict[str, list[Any]] = {}
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{key}: expected a non-empty list of values, got {values!r}")
        if key == "output_dir":
            raise ConfigError("grid.output_dir: the sweep sets each point's output directory itself")
        for v in values:
            try:
                base_cfg.replace(**{key: v})
            except ConfigError as e:
                raise ConfigError(f"grid.{key} = {v!r}: {e}") from e
        clean[str(key)] = list(values)
    return SweepSpec(base, clean, Path(out if out is not None else data.get("out") or "runs/sweep"))


def slug_value(v: Any) -> str:
    """A grid value as text for slugs and tables: lists joined by ``x``, booleans 1/0, floats ``%g``."""
    if isinstance(v, (list, tuple)):
        return "x".join(slug_value(x) for x in v)
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def slug(values: Mapping[str, Any]) -> str:
    """A readable directory name for grid values: ``rf4_b6_sp0.8``."""
    parts = []
    for key, v in values.items():
        name = SLUG_NAMES.get(key, key.rsplit(".", 1)[-1])
        parts.append(f"{name}{slug_value(v)}")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts))[:80] or "point"


def cfg_data(cfg: Config) -> dict[str, Any]:
    """The config as plain data without ``output_dir``: what the fingerprints hash."""
    d = cfgmod.to_dict(cfg)
    d.pop("output_dir", None)
    return d


def expand(spec: SweepSpec) -> list[Point]:
    """The grid's cartesian product, in file order (the last key varies fastest)."""
    base = cfgmod.from_dict(spec.base)
    keys = list(spec.grid)
    points = []
    for i, combo in enumerate(itertools.product(*(spec.grid[k] for k in keys))):
        values = dict(zip(keys, combo))
        cfg = base.replace(**values)
        data = cfg_data(cfg)
        fp = rundir.fingerprint(data)
        tkey = rundir.fingerprint({s: data[s] for s in TRAINING_SECTIONS})
        s = slug(values)
        d = spec.out / "points" / f"{s}-{fp[:8]}"
        points.append(Point(i, values, dataclasses.replace(cfg, output_dir=str(d)), s, fp, tkey, d))
    return points


def training_groups(points: Sequence[Point]) -> dict[str, list[Point]]:
    """Points keyed by train_key, in first-appearance order."""
    groups: dict[str, list[Point]] = {}
    for p in points:
        groups.setdefault(p.train_key, []).append(p)
    return groups


def read_config_file(path: Path) -> dict[str, Any] | None:
    """A run's config.yaml as data; None when missing or unreadable."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def same_config(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Every field of ``old`` (a run's config.yaml) is in ``new`` with the same value; fields ``new``
    has beyond them (added to codesign since) are not compared. Sections compare field by field,
    a field's value (a mapping like model.layer_bits included) as a whole."""
    for section, fields in old.items():
        if section == "output_dir":
            continue
        if section not in new:
            return False
        if isinstance(fields, dict) and isinstance(new[section], dict):
            if any(k not in new[section] or new[section][k] != v for k, v in fields.items()):
                return False
        elif fields != new[section]:
            return False
    return True
