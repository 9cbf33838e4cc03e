"""Call a compiled hls4ml C simulation library directly (no hls4ml import, no re-conversion).

The convert stage builds ``firmware/<project>-csim.so`` (hls4ml's ``build_lib.sh``, the weights
directory relative to the project: the child runs in it); its bridge exports
``<project>_double(double *in, double *out)``. Inputs that lie on the input type's grid pass through
``convert_data<double, input_t>`` unchanged, and every output type the flow accepts (<= 53 bits) is
exact in a double, so integer codes go in and come out bit-exactly.

The library runs in a child process: hls4ml compiles it without -DNDEBUG, and a type conversion
ap_fixed cannot do (e.g. reading a bit beyond the source's MSB) fails an assertion and aborts. A
crash of the reference must become a clear error, not take the flow (or a fuzz campaign) with it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from codesign.errors import ConversionError, StageError
from codesign.fixedpoint import FixedType
from codesign.proc import run as proc_run


def find_library(hls_dir: Path, project: str = "myproject") -> Path:
    """The convert stage's library (see convert.build_csim_library), else one hls4ml's compile() built."""
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


#: Runs in the child process: load the library, feed rows, save the outputs.
_CHILD = r"""
import ctypes, sys
import numpy as np
lib = ctypes.cdll.LoadLibrary(sys.argv[1])
fn = getattr(lib, sys.argv[2] + "_double")
fn.restype = None
fn.argtypes = [np.ctypeslib.ndpointer(ctypes.c_double, flags="C_CONTIGUOUS")] * 2
x = np.load(sys.argv[3])
out = np.zeros((len(x), int(sys.argv[5])), dtype=np.float64)
row = np.zeros(out.shape[1], dtype=np.float64)
for i in range(len(x)):
    fn(np.ascontiguousarray(x[i]), row)
    out[i] = row
np.save(sys.argv[4], out)
"""


class CSim:
    """The C-sim of one converted model, called on integer codes (in a child process)."""

    def __init__(self, hls_dir: Path, n_in: int, n_out: int, in_type: FixedType, out_type: FixedType,
                 project: str = "myproject") -> None:
        self.lib_path = find_library(hls_dir, project).resolve()  # the child runs in the project
        self.project = project
        self.n_in, self.n_out = n_in, n_out
        self.in_type, self.out_type = in_type, out_type

    @classmethod
    def for_graph(cls, hls_dir: Path, graph: Any) -> CSim:
        """The C-sim in ``hls_dir`` with the ports of ``graph`` (a :class:`codesign.graph.Graph`)."""
        return cls(hls_dir, graph.n_in, graph.n_out, graph.input_type, graph.output_type)

    def predict_codes(self, in_codes: np.ndarray) -> np.ndarray:
        """Run every row of ``in_codes`` (N x n_in codes of the input type); return output codes.

        Raises:
            ConversionError: the C-sim process died (an ap_fixed assertion aborts it).
        """
        in_codes = np.asarray(in_codes, dtype=np.int64)
        if in_codes.ndim != 2 or in_codes.shape[1] != self.n_in:
            raise ValueError(f"expected N x {self.n_in} input codes, got shape {in_codes.shape}")
        with tempfile.TemporaryDirectory(prefix="codesign-csim-") as tmp:
            x_path, y_path = Path(tmp) / "x.npy", Path(tmp) / "y.npy"
            np.save(x_path, self.in_type.to_real(in_codes))
            proc = proc_run([sys.executable, "-c", _CHILD, str(self.lib_path), self.project, str(x_path),
                                   str(y_path), str(self.n_out)], capture_output=True, text=True,
                             cwd=self.lib_path.parent.parent)
            if proc.returncode != 0 or not y_path.is_file():
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-4:])
                how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
                raise ConversionError(
                    f"hls4ml's C simulation {self.lib_path.name} died ({how}) on {len(in_codes)} input rows: {tail}",
                    hint="an ap_fixed assertion means a type conversion in the model (accum/result precisions) "
                         "that ap_fixed itself cannot perform; change that layer's precision")
            out = np.load(y_path)
        return self.out_type.to_codes(out)
