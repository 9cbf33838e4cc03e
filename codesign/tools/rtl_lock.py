"""The RTL lock: hashes of the Verilog and design.json the backend writes for a fixed corpus.

A refactor of the RTL backend must not change one byte of what it generates. The corpus is the
hardware IR (graph.json) of hls4ml's reference models (tests/reference_models) at several reuse
factors and of the test suite's fuzz cases; ``tests/test_rtl_lock.py`` regenerates every design
from its graph.json (no hls4ml, no simulation) and compares SHA-256 digests.

``python -m codesign.tools.rtl_lock --write`` converts the corpus again (hls4ml, no C-sim
compilation), rewrites the graph.json files and the digests. Only run it for an intended change
of the generated RTL, and say so in the commit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[2]
LOCK_DIR = REPO / "tests" / "fixtures" / "rtl_lock"
REFERENCE_MODELS = REPO / "tests" / "reference_models"
HASHES = "hashes.json"

#: (reference model, hls section) pairs in the corpus.
REFERENCE_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "qkeras_3layer_rf1": ("qkeras_3layer", {}),
    "qkeras_3layer_rf4": ("qkeras_3layer", {"reuse_factor": 4}),
    "KERAS_3layer_rf1": ("KERAS_3layer", {}),
    "KERAS_3layer_rf8": ("KERAS_3layer", {"reuse_factor": 8}),
    "qkeras_mnist_dense_rf1": ("qkeras_mnist_dense", {}),
}
#: The test suite's fuzz cases (tests/test_fuzz.py): MLP seed 11 (20 cases), CNN seed 3 (6 cases).
MLP_SEED, MLP_CASES = 11, 20
CNN_SEED, CNN_CASES = 3, 6


def design_digests(graph_json: Path, out_dir: Path) -> dict[str, str]:
    """Generate the design of ``graph_json`` into ``out_dir``; SHA-256 of every file it wrote."""
    from codesign import graph as hwgraph
    from codesign import rtlgen
    from codesign.rundir import write_json

    design = rtlgen.generate(hwgraph.load(graph_json), out_dir)
    design.setdefault("clock_period_ns", 5.0)  # as the rtl stage states it (hls4ml's default clock)
    write_json(out_dir / "design.json", design)
    return {f: hashlib.sha256((out_dir / f).read_bytes()).hexdigest()
            for f in sorted(design["files"] + ["design.json", "filelist.f"])}


def _corpus() -> Iterator[tuple[str, Callable[[], tuple[Any, Any]]]]:
    """(case name, () -> (keras model, Config)) for every case of the corpus."""
    from codesign.config import from_dict
    from codesign.model_io import load_model
    from codesign.tools import fuzz

    for case, (model, hls) in REFERENCE_CASES.items():
        yield case, lambda model=model, hls=hls: (
            load_model(REFERENCE_MODELS / f"{model}.json", REFERENCE_MODELS / f"{model}_weights.h5"),
            from_dict({"hls": hls}))
    for i in range(MLP_CASES):
        spec = fuzz.make_case(MLP_SEED, i, max_width=8, max_layers=3, max_reuse=6)
        yield f"fuzz_mlp_{MLP_SEED}_{i}", lambda spec=spec: (spec.build(), spec.config(100))
    for i in range(CNN_CASES):
        spec = fuzz.family_case("cnn", CNN_SEED, i)
        yield f"fuzz_cnn_{CNN_SEED}_{i}", lambda spec=spec: (spec.build(), spec.config(100))


def write_lock(lock_dir: Path = LOCK_DIR) -> dict[str, dict[str, str]]:
    """Convert the corpus, write ``<case>.graph.json`` and the digests of every generated design."""
    import tensorflow as tf

    from codesign import layers as layer_kinds
    from codesign.convert import convert_model
    from codesign.errors import RtlGenError

    lock_dir.mkdir(parents=True, exist_ok=True)
    hashes: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case, make in _corpus():
            tf.keras.backend.clear_session()
            model, cfg = make()
            hls_model, _, stripped = convert_model(cfg, model, Path(tmp) / case / "hls", compile=False)
            graph_json = lock_dir / f"{case}.graph.json"
            layer_kinds.from_hls4ml(hls_model, softmax_stripped=stripped).save(graph_json)
            try:
                hashes[case] = design_digests(graph_json, Path(tmp) / case / "rtl")
            except RtlGenError as e:  # a refusal is locked too: its message must not change
                hashes[case] = {"refused": str(e)}
            print(f"rtl_lock: {case}: {len(hashes[case])} entries", flush=True)
    (lock_dir / HASHES).write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
    return hashes


def rehash(cases: list[str], lock_dir: Path = LOCK_DIR) -> dict[str, dict[str, str]]:
    """Rewrite the digests of ``cases`` from their stored graph.json (no conversion): for an intended
    change of the backend that only some cases show."""
    import tempfile

    from codesign.errors import RtlGenError

    hashes = json.loads((lock_dir / HASHES).read_text())
    unknown = [c for c in cases if c not in hashes]
    if unknown:
        raise SystemExit(f"rtl_lock: no case {unknown[0]!r} in {lock_dir / HASHES}")
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            try:
                hashes[case] = design_digests(lock_dir / f"{case}.graph.json", Path(tmp) / case / "rtl")
            except RtlGenError as e:
                hashes[case] = {"refused": str(e)}
            print(f"rtl_lock: {case}: {len(hashes[case])} entries", flush=True)
    (lock_dir / HASHES).write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
    return hashes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m codesign.tools.rtl_lock", description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="convert the corpus and rewrite the lock")
    ap.add_argument("--rehash", nargs="+", metavar="CASE",
                    help="rewrite these cases' digests from their stored graph.json (no conversion)")
    ap.add_argument("--dir", type=Path, default=LOCK_DIR)
    args = ap.parse_args(argv)
    if args.rehash:
        rehash(args.rehash, args.dir)
        return 0
    if not args.write:
        ap.error("nothing to do: the check is tests/test_rtl_lock.py; --write rewrites the lock, --rehash some cases")
    write_lock(args.dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
