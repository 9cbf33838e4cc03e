"""BatchNormalization: hls4ml's ``normalize`` (``nnet_batchnorm.h``), ``(res_T)(x*scale + bias)``
with the sum exact. Extracted as a diagonal ``dense`` layer whose accumulator is wide enough to be
exact, so only the final cast rounds; the Dense kind computes and builds it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from codesign.errors import RtlGenError
from codesign.fixedpoint import FixedType
from codesign.graph import Layer
from codesign.layers import extract
from codesign.layers.base import LayerKind, Upstream


class BatchNorm(LayerKind):
    hls4ml_classes = ("BatchNormalization",)
    keras_classes = ("BatchNormalization",)
    supported = "BatchNormalization"
    streams = True  # io_stream: beat by beat (codesign.layers.dense.channel_wise)

    def extract(self, hl: Any, up: Upstream) -> Layer:
        in_t, n_in = up.in_type, up.n_in
        s = extract.csim_values(hl.weights["scale"], f"layer {hl.name} scale").ravel()
        b = extract.csim_values(hl.weights["bias"], f"layer {hl.name} bias").ravel()
        n_filt = int(hl.get_attr("n_filt") or -1)
        idx = np.arange(n_in) % n_filt if n_filt > 0 else np.arange(n_in)
        if up.n_out != n_in or idx.max() >= len(s) or len(s) != len(b):
            raise RtlGenError(f"layer {hl.name}: {len(s)} scales / {len(b)} biases for {n_in} inputs")
        sc, sf = extract.grid_codes(s[idx], f"layer {hl.name} scale")
        bc, bf = extract.grid_codes(b[idx], f"layer {hl.name} bias")
        frac = max(in_t.frac + sf, bf)
        prod = np.stack([sc * in_t.min_code, sc * in_t.max_code])
        lo = (prod.min(axis=0) << (frac - in_t.frac - sf)) + (bc << (frac - bf))
        hi = (prod.max(axis=0) << (frac - in_t.frac - sf)) + (bc << (frac - bf))
        width = max(int(v).bit_length() for v in (*lo.tolist(), *hi.tolist(), 1)) + 2
        acc_t = FixedType(width, width - frac, True, "TRN", "WRAP")
        return Layer(name=hl.name, kind="dense", n_in=n_in, n_out=up.n_out, in_type=in_t, out_type=up.out_type,
                     source=up.source, accum_type=acc_t, weights=np.diag(sc), weight_frac=sf, bias=bc,
                     bias_frac=bf, reuse_factor=1, strategy="latency")


KIND = BatchNorm()
