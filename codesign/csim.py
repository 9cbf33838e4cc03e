"""Call a compiled hls4ml C simulation library directly (no hls4ml import, no re-conversion).

hls4ml's ``compile()`` builds ``firmware/<project>-<stamp>.so`` whose bridge exports
``<project>_double(double *in, double *out)``. Inputs that lie on the input type's grid pass through
``convert_data<double, input_t>`` unchanged, and every output type the flow accepts (<= 53 bits) is
exact in a double, so integer codes go in and come out bit-exactly.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from codesign.errors import StageError
from codesign.fixedpoint import FixedType


def find_library(hls_dir: Path, project: str = "myproject") -> Path:
    """The convert stage's portable library (see convert.build_portable_csim), else hls4ml's own."""
    portable = Path(hls_dir) / "firmware" / f"{project}-csim.so"
    if portable.is_file():
        return portable
    libs = sorted((Path(hls_dir) / "firmware").glob(f"{project}-*.so"))
    if not libs:
        raise StageError(
            f"no compiled C-sim library {project}-*.so in {Path(hls_dir) / 'firmware'}",
            hint="re-run `codesign convert`",
        )
    return libs[-1]


class CSim:
    """The C-sim of one converted model, called on integer codes."""

    def __init__(self, hls_dir: Path, n_in: int, n_out: int, in_type: FixedType, out_type: FixedType,
                 project: str = "myproject") -> None:
        self.lib_path = find_library(hls_dir, project)
        self._lib = ctypes.cdll.LoadLibrary(str(self.lib_path))
        self._fn = getattr(self._lib, f"{project}_double")
        self._fn.restype = None
        self._fn.argtypes = [np.ctypeslib.ndpointer(ctypes.c_double, flags="C_CONTIGUOUS")] * 2
        self.n_in, self.n_out = n_in, n_out
        self.in_type, self.out_type = in_type, out_type

    def predict_codes(self, in_codes: np.ndarray) -> np.ndarray:
        """Run every row of ``in_codes`` (N x n_in codes of the input type); return output codes."""
        in_codes = np.asarray(in_codes, dtype=np.int64)
        if in_codes.ndim != 2 or in_codes.shape[1] != self.n_in:
            raise ValueError(f"expected N x {self.n_in} input codes, got shape {in_codes.shape}")
        x = self.in_type.to_real(in_codes)
        out = np.zeros((len(x), self.n_out), dtype=np.float64)
        row_out = np.zeros(self.n_out, dtype=np.float64)
        for i, row in enumerate(x):
            self._fn(np.ascontiguousarray(row), row_out)
            out[i] = row_out
        return self.out_type.to_codes(out)
