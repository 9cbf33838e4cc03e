"""design.json: the contract between the RTL backend and everything that reads a generated core.

One writer (:func:`write`, called by :func:`codesign.pipeline.generate` and the rtl stage; the ip
stage copies the file unchanged) and one reader (:func:`read`), which checks the schema; it fills in nothing (a design.json without a clock
says so, and a testbench then runs at :data:`DEFAULT_CLOCK_NS`).

Schema (format 1), as :func:`codesign.rtlgen.generate` builds it:
  top, files               the top module and the Verilog files, in compile order
  input / output           {n, type, port, bits}: element count, element type (FixedType JSON)
  latency, ii              clock edges from input to output; cycles between accepted vectors
  clock_period_ns          the clock the registers were placed for (hls.clock_period_ns)
  softmax_stripped         a final Softmax was removed (outputs are the logits)
  multipliers, nonzero_weights, levels_per_stage, adder_graph   (multipliers: general, variable x
                           variable ones; a constant weight's product is shift-add terms, in each
                           layer's adders: :func:`total_adders`)
  layers                   one entry per layer: name, kind, module, types, reuse factor, cost, probe;
                           io_parallel with rtl.fuse_activations: a layer whose output register holds
                           the next layer's activation says fused_activation: <name> (and has no probe:
                           its own values are on no wire), that activation fused_into: <layer>,
                           latency 0, module the layer's, modules [] and the layer's output wires as probe
  io_stream cores add      io_type "io_stream", input.beats (pixels per image), latency_after_last_pixel,
                           per layer beats_in / beats_out / busy_cycles_per_image, and stream:
                           {bottleneck, bottleneck_cycles_per_image, fifos: [{module, before, layer,
                           depth, width_bits, bits}]} (the FIFOs the cycle model sized)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from codesign.errors import StageError
from codesign.rundir import write_json

FORMAT = 1
FILE = "design.json"
#: Fields every reader needs.
REQUIRED = ("top", "files", "input", "output", "latency", "ii")
#: hls4ml's default clock (5 ns, 200 MHz): the generator's default, and the testbenches' clock for a
#: design.json that states none.
DEFAULT_CLOCK_NS = 5.0


def write(rtl_dir: Path, design: dict[str, Any]) -> Path:
    """Write ``rtl_dir/design.json`` (deterministic bytes)."""
    path = Path(rtl_dir) / FILE
    write_json(path, design)
    return path


def total_adders(design: dict[str, Any]) -> int:
    """The adders of every layer (a layer without the field has none)."""
    return sum(int(lay.get("adders") or 0) for lay in design.get("layers", []))


def read(rtl_dir: Path, needed_by: str = "this stage", hint: str = "run `codesign rtl` first",
         required: tuple[str, ...] = REQUIRED, check_files: bool = True) -> dict[str, Any]:
    """Read and check ``rtl_dir/design.json`` (the ``required`` fields, the ports' fields, and with
    ``check_files`` that every listed file exists); raise StageError naming the file and the field."""
    path = Path(rtl_dir) / FILE
    if not path.is_file():
        raise StageError(f"{needed_by} needs {path}, which does not exist", hint=hint)
    try:
        design = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise StageError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(design, dict):
        raise StageError(f"{path} is not a JSON object")
    missing = [k for k in required if k not in design]
    if missing:
        raise StageError(f"{path} has no {missing[0]!r} field (needed: {', '.join(required)})")
    if design.get("format", FORMAT) != FORMAT:
        raise StageError(f"{path}: format {design['format']!r} is not supported (expected {FORMAT})")
    for side in ("input", "output") if "input" in required else ():
        for key in ("n", "type"):
            if key not in design[side]:
                raise StageError(f"{path}: {side!r} has no {key!r} field")
    for f in design.get("files", ()) if check_files else ():
        if not (Path(rtl_dir) / f).is_file():
            raise StageError(f"{path} lists {f!r}, but {Path(rtl_dir) / f} does not exist")
    return design
