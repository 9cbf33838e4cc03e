"""The non-Python files the flow reads at run time. They live inside the package (setuptools package
data, see pyproject.toml), so an installed wheel finds them exactly as a checkout does."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
#: Jinja2 templates: ``rtl/`` (layers, top), ``ip/`` (AXI4-Stream top, core file, datasheet), report pages
TEMPLATES = PACKAGE / "templates"
#: hand-written Verilog primitives copied into every design: fxp_cast, fxp_relu, skid_buffer
PRIMITIVES = PACKAGE / "primitives"
#: the cocotb network testbench and the compiled stream testbench
TESTBENCHES = PACKAGE / "testbenches"
