"""Exceptions of the flow. Every message names the culprit (layer, parameter, file, tool log).

Only ``codesign.cli`` turns these into an exit code and one line of text.
"""

from __future__ import annotations

from pathlib import Path


class CodesignError(Exception):
    """Base class: a problem the user can fix, explained in one message."""

    hint: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class ConfigError(CodesignError):
    """A configuration field is missing, unknown, mistyped or out of range."""


class DataError(CodesignError):
    """A data set file is missing or has the wrong arrays or shapes."""


class ModelImportError(CodesignError):
    """A model file cannot be read, or uses a layer the flow does not support."""


class ConversionError(CodesignError):
    """hls4ml conversion failed or would silently change what the user asked for."""


class RtlGenError(CodesignError):
    """The RTL backend cannot reproduce a layer or type exactly, so it refuses."""


class SimulationError(CodesignError):
    """The testbench could not be built or run (a mismatch is a result, not this error)."""


class StageError(CodesignError):
    """An earlier stage's output is missing or stale."""


class ToolError(CodesignError):
    """An external tool (Verilator, Yosys, g++) failed; the message points at its log."""

    def __init__(self, tool: str, returncode: int, log_path: Path | str, tail: str = "") -> None:
        self.tool = tool
        self.returncode = returncode
        self.log_path = Path(log_path)
        msg = f"{tool} failed with exit code {returncode}; see {self.log_path}"
        if tail:
            msg += "\n" + tail
        super().__init__(msg)


class RunLockedError(CodesignError):
    """The run directory is owned by another running flow (its pid is in the message)."""
