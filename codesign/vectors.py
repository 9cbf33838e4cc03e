"""Test vectors for verification: inputs as integer codes, hls4ml C-sim outputs as the reference.

The first vectors are the test set (quantized onto the input type's grid, with labels and the
QKeras model's predictions), followed by N random codes spread over the whole input type. Every
expected output comes from hls4ml's compiled C-sim; the golden model's per-layer outputs are kept
too, so a mismatch can be localised to a layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from codesign import golden
from codesign import graph as hwgraph
from codesign.config import Config
from codesign.csim import CSim
from codesign.rundir import require


def random_codes(graph: hwgraph.Graph, n: int, seed: int) -> np.ndarray:
    t = graph.input_type
    rng = np.random.default_rng(seed)
    return rng.integers(t.min_code, t.max_code + 1, size=(n, graph.n_in), dtype=np.int64)


def build(graph: hwgraph.Graph, csim: CSim, inputs: np.ndarray, labels: np.ndarray | None = None,
          qkeras_pred: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Arrays of a vectors.npz: inputs, expected (C-sim), golden_<layer>, labels, qkeras_pred."""
    arrays: dict[str, np.ndarray] = {"inputs": inputs, "expected": csim.predict_codes(inputs)}
    for name, codes in golden.layer_outputs(graph, inputs).items():
        arrays[f"golden_{name}"] = codes
    if labels is not None:
        arrays["labels"] = np.asarray(labels, dtype=np.int64)
    if qkeras_pred is not None:
        arrays["qkeras_pred"] = np.asarray(qkeras_pred, dtype=np.int64)
    return arrays


def golden_agreement(graph: hwgraph.Graph, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """How many output integers of the golden model differ from the C-sim (must be 0)."""
    last = arrays[f"golden_{graph.layers[-1].name}"]
    diff = last != arrays["expected"]
    return {"vectors": int(len(last)), "mismatched_outputs": int(diff.sum()),
            "mismatched_vectors": int(diff.any(axis=1).sum())}


def make_vectors(cfg: Config, run_dir: Path, out_path: Path) -> Path:
    """Write ``out_path`` (vectors.npz) for the run: test set first, then random on-grid vectors."""
    from codesign.convert import on_grid_inputs

    run_dir = Path(run_dir)
    model_res = require(run_dir, "model", "verify")
    require(run_dir, "hls", "verify")
    graph = hwgraph.load(run_dir / "hls" / "graph.json")
    csim = CSim.for_graph(run_dir / "hls", graph)
    parts, labels, qpred = [], None, None
    data_file = run_dir / "model" / "data.npz"
    if model_res.get("has_data") and data_file.is_file():
        data = np.load(data_file)
        test_codes = on_grid_inputs(graph, data["X_test"])
        parts.append(test_codes)
        labels = data["y_test"]
        qpred = _qkeras_predictions(run_dir, model_res, graph.input_type.to_real(test_codes))
    parts.append(random_codes(graph, cfg.verify.random_vectors, cfg.verify.seed))
    inputs = np.concatenate(parts).astype(np.int64)
    arrays = build(graph, csim, inputs, labels, qpred)
    np.savez_compressed(out_path, **arrays)
    return Path(out_path)


def _qkeras_predictions(run_dir: Path, model_res: dict[str, Any], x: np.ndarray) -> np.ndarray:
    from codesign.model_io import load_model, model_input

    model = load_model(run_dir / "model" / model_res.get("model_file", "model.h5"))
    return np.asarray(model.predict(model_input(model, x), verbose=0, batch_size=1024)).reshape(len(x), -1).argmax(1)
