"""Shared test helpers: a tiny QKeras MLP converted by hls4ml (cached per session)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
