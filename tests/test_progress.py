"""codesign.progress: live progress only on a terminal, and only when the CLI asked for it."""

from __future__ import annotations

import io
import time

import pytest

from codesign import progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_nothing_without_a_terminal_or_without_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    progress.enable(True)
    try:
        assert not progress.active() and progress.keras_epochs(5) == []
        progress.StageTicker("sim").close()
        assert out.getvalue() == ""
        monkeypatch.setattr("sys.stdout", _Tty())
        progress.enable(False)
        assert not progress.active()
    finally:
        progress.enable(False)


def test_stage_ticker_shows_the_elapsed_time_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _Tty()
    monkeypatch.setattr("sys.stdout", out)
    progress.enable(True)
    try:
        ticker = progress.StageTicker("synth")
        time.sleep(1.2)
        ticker.close()
    finally:
        progress.enable(False)
    text = out.getvalue()
    assert "[ synth] running 00:01" in text  # refreshed while the stage ran
