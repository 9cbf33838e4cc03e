"""How codesign compiles a Verilated model quickly (issue 17): between ``verilator`` and ``make``.

A Verilator simulation build compiles two kinds of C++:

* **Verilator's runtime** (``verilated.cpp``, ``verilated_vpi.cpp``, ``verilated_threads.cpp``, ...),
  the same for every design. It is most of a small design's compile: on the digits demo 10 of the
  ~17 CPU seconds (docs/TOOLCHAIN.md). :func:`install_runtime` compiles those objects once per
  machine (per Verilator version, compiler and flags) into a cache folder and copies them into every
  later build folder, so make finds them up to date. This is a library built once, like any other:
  it holds nothing of a design.
* **The design's C++**. Verilator splits it into files and, for a split design, compiles each with a
  precompiled header (built twice: fast and slow, the same flags at -O0). Below
  :data:`ONE_UNIT_MAX_BYTES` of generated C++ one translation unit (``VM_PARALLEL_BUILDS=0``)
  compiles sooner: the header costs more than it saves (measured on the demo, 1.8 MB, and the float
  jet-tagging MLP, 5 MB); larger designs keep the parallel build.

Both are plain make variables and files in the build folder: the result is the executable
Verilator's own make would build, from the same sources and flags.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from codesign.errors import SimulationError
from codesign.proc import run as proc_run

log = logging.getLogger(__name__)

#: Generated C++ (bytes, all .cpp files of the build) up to which the design compiles as one
#: translation unit. Measured on 2 cores (-O0, runtime already compiled): the demo's 1.8 MB and the
#: float jet MLP's 5.0 MB compile sooner as one unit; the 28x28 streaming CNN's C++ (tens of MB)
#: compiles sooner split over both cores.
ONE_UNIT_MAX_BYTES = 8_000_000
#: Where the compiled runtime objects are kept (one folder per key); default ~/.cache/codesign.
CACHE_ENV = "CODESIGN_CACHE_DIR"


def cache_root() -> Path:
    """The machine-wide cache folder of codesign (``$CODESIGN_CACHE_DIR``, else the XDG cache; without
    a home directory, a folder in the temporary directory)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "codesign"
    try:
        return Path.home() / ".cache" / "codesign"
    except (RuntimeError, KeyError):  # no HOME and no passwd entry (some containers)
        return Path(tempfile.gettempdir()) / f"codesign-cache-{os.getuid()}"


def _classes_mk(build_dir: Path) -> Path:
    found = sorted(build_dir.glob("*_classes.mk"))
    if len(found) != 1:
        raise SimulationError(f"expected one Verilator *_classes.mk in {build_dir}, found {len(found)}")
    return found[0]


def runtime_objects(build_dir: Path) -> list[str]:
    """The runtime object files this build links (VM_GLOBAL_FAST / VM_GLOBAL_SLOW of its classes.mk)."""
    text = _classes_mk(build_dir).read_text()
    names: list[str] = []
    for var in ("VM_GLOBAL_FAST", "VM_GLOBAL_SLOW"):
        for m in re.finditer(rf"^{var} \+= \\\n((?:  \S+ \\\n)*)", text, re.M):
            names += [line.strip().rstrip("\\").strip() for line in m.group(1).splitlines()]
    return [f"{n}.o" for n in names if n]


def _prefix_mk(build_dir: Path) -> str:
    return _classes_mk(build_dir).name[: -len("_classes.mk")] + ".mk"


def _make(build_dir: Path, env: Mapping[str, str], args: list[str], what: str) -> str:
    proc = proc_run(["make", "-C", str(build_dir), "-f", _prefix_mk(build_dir), *args], env=dict(env),
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise SimulationError(f"{what} failed in {build_dir} (make exit {proc.returncode}):\n{proc.stdout[-2000:]}")
    return proc.stdout


def runtime_key(build_dir: Path, env: Mapping[str, str], objects: list[str]) -> str:
    """A hash of what decides the runtime objects' bytes: the compile commands make would run for
    them (flags, defines, source paths; the compiler cache prefix left out), the compiler's version
    and the Verilator runtime sources' sizes and times."""
    dry = _make(build_dir, env, ["-n", "-B", *objects], "make -n of the Verilator runtime")
    cache_cmd = env.get("OBJCACHE", "")
    lines = [ln.replace(cache_cmd + " ", "", 1) if cache_cmd else ln
             for ln in dry.splitlines() if not ln.startswith("make")]
    cxx = env.get("CXX", "c++")
    version = proc_run([cxx, "--version"], capture_output=True, text=True, env=dict(env)).stdout
    sources = sorted(set(re.findall(r"(\S+\.cpp)\b", "\n".join(lines))))
    stamps = [f"{s} {Path(s).stat().st_size} {Path(s).stat().st_mtime_ns}" for s in sources if Path(s).is_file()]
    h = hashlib.sha256("\n".join([*lines, version, *stamps]).encode())
    return h.hexdigest()[:20]


def install_runtime(build_dir: Path, env: Mapping[str, str]) -> dict[str, object]:
    """Put this build's Verilator runtime objects into ``build_dir`` from the cache, compiling them
    there first (once per key) when the cache does not have them. Call after ``verilator`` wrote the
    build folder and before its ``make``. Returns what happened (key, objects, cached, seconds, and
    the output of the runtime's compile when it ran)."""
    t0 = time.monotonic()
    build_dir = Path(build_dir)
    objects = runtime_objects(build_dir)
    key = runtime_key(build_dir, env, objects)
    cached = cache_root() / "verilator-runtime" / key
    hit = all((cached / o).is_file() for o in objects)
    output = ""
    if hit:
        now = time.time()
        for f in _object_files(objects, cached):
            shutil.copyfile(cached / f, build_dir / f)
            # newer than the .mk Verilator just wrote: make takes it as built
            os.utime(build_dir / f, (now, now))
    else:  # compiled here, where the build needs them, then kept for the next build
        output = _make(build_dir, env, objects, "compiling the Verilator runtime")
        try:
            _store(build_dir, objects, cached)
        except OSError as e:  # a cache that cannot be written costs time, never the build
            log.warning("Verilator runtime not cached (%s): %s", cached, e)
    res = {"key": key, "objects": objects, "cached": hit, "seconds": round(time.monotonic() - t0, 3)}
    log.info("Verilator runtime %s: %s", "from the cache" if hit else "compiled", res)
    return dict(res, output=output)


def _object_files(objects: list[str], folder: Path) -> list[str]:
    """The objects and their make dependency files (``.d``) that ``folder`` holds."""
    return [f for o in objects for f in (o, o[:-2] + ".d") if (folder / f).is_file()]


def _store(build_dir: Path, objects: list[str], cached: Path) -> None:
    """Copy freshly compiled runtime objects into the cache atomically (a concurrent build that
    stored the same key first wins; both hold the same bytes)."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cached.name}.", dir=cached.parent))
    try:
        for f in _object_files(objects, build_dir):
            shutil.copyfile(build_dir / f, tmp / f)
        try:
            tmp.rename(cached)
        except OSError:  # another build stored it meanwhile
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cpp_bytes(build_dir: Path) -> int:
    """Bytes of generated C++ in a Verilator build folder."""
    return sum(p.stat().st_size for p in Path(build_dir).glob("*.cpp"))


def make_args(build_dir: Path) -> list[str]:
    """Extra make variables for this build: one translation unit for a small design."""
    return ["VM_PARALLEL_BUILDS=0"] if cpp_bytes(build_dir) <= ONE_UNIT_MAX_BYTES else []


def make(build_dir: Path, env: Mapping[str, str], log_path: Path, jobs: int = 2) -> dict[str, object]:
    """Compile a Verilator build folder (after ``verilator --cc --exe``) as codesign does: the
    runtime from the cache, one translation unit for a small design, ``jobs`` compilers at once.
    The output goes to ``log_path`` (appended). Returns :func:`install_runtime`'s account."""
    runtime = install_runtime(build_dir, env)
    out = _make(build_dir, env, ["-j", str(jobs), *make_args(build_dir)], f"make of {build_dir}")
    with open(log_path, "a") as f:
        f.write(str(runtime["output"]) + out)
    return runtime
