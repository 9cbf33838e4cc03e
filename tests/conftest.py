"""Shared test helpers: a tiny QKeras MLP converted by hls4ml (cached per session)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path  # noqa: E402

#: ../shared/reference-models beside the repository (CI clones main with shared/ beside it).
REFERENCE_MODELS = Path(__file__).resolve().parents[2] / "shared" / "reference-models"
