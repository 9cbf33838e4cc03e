"""codesign.verilator_build: Verilator's runtime compiled once per machine, one translation unit for a
small design. A build with the runtime from the cache must give the same simulation as one that
compiled it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from codesign import simtools, verilator_build
from codesign.errors import SimulationError

CLASSES_MK = """\
# Global classes, need linked once per executable, fast-path, compile with highest optimization
VM_GLOBAL_FAST += \\
  verilated \\
  verilated_vpi \\
  verilated_threads \\

# Global classes, need linked once per executable, non-fast-path, compile with low/medium optimization
VM_GLOBAL_SLOW += \\
  verilated_cov \\

VM_SUPPORT_SLOW += \\
  Vtop__Syms__Slow \\
"""

#: a counter that prints a few values, then stops: enough C++ to compile and a result to compare
COUNTER_V = """\
module counter;
  reg clk = 0;
  reg [15:0] acc = 16'd7;
  integer i;
  initial begin
    for (i = 0; i < 20; i = i + 1) begin
      #1 clk = ~clk;
      if (clk) acc = acc * 16'd3 + 16'd1;
    end
    $display("acc=%0d", acc);
    $finish;
  end
endmodule
"""


def test_runtime_objects_are_the_global_classes(tmp_path: Path) -> None:
    (tmp_path / "Vtop_classes.mk").write_text(CLASSES_MK)
    assert verilator_build.runtime_objects(tmp_path) == ["verilated.o", "verilated_vpi.o", "verilated_threads.o",
                                                         "verilated_cov.o"]


def test_a_folder_without_one_classes_mk_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SimulationError, match=r"expected one Verilator \*_classes.mk .* found 0"):
        verilator_build.runtime_objects(tmp_path)


def test_small_designs_compile_as_one_unit(tmp_path: Path) -> None:
    (tmp_path / "Vtop__0.cpp").write_bytes(b"x" * 1000)
    assert verilator_build.make_args(tmp_path) == ["VM_PARALLEL_BUILDS=0"]
    (tmp_path / "Vtop__1.cpp").write_bytes(b"x" * verilator_build.ONE_UNIT_MAX_BYTES)
    assert verilator_build.make_args(tmp_path) == []


def test_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(verilator_build.CACHE_ENV, str(tmp_path / "c"))
    assert verilator_build.cache_root() == tmp_path / "c"
    monkeypatch.delenv(verilator_build.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert verilator_build.cache_root() == tmp_path / "xdg" / "codesign"
    monkeypatch.delenv("XDG_CACHE_HOME")

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert verilator_build.cache_root().name.startswith("codesign-cache-")


def _build(tmp: Path, name: str, env: dict[str, str]) -> tuple[dict[str, object], str, str]:
    """Verilate the counter into tmp/name and compile it with verilator_build.make; (runtime account,
    make's output, the simulation's output)."""
    src = tmp / "counter.v"
    src.write_text(COUNTER_V)
    obj = tmp / name
    subprocess.run([str(simtools.verilator_root() / "bin" / "verilator"), "--cc", "--exe", "--main", "--timing",
                    "--top-module", "counter", "--Mdir", str(obj), "-o", "Vcounter", str(src)],
                   check=True, env=env, capture_output=True)
    log = tmp / f"{name}.log"
    runtime = verilator_build.make(obj, env, log)
    run = subprocess.run([str(obj / "Vcounter")], check=True, capture_output=True, text=True)
    return runtime, log.read_text(), run.stdout


@pytest.mark.verilator
def test_the_runtime_is_compiled_once_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(verilator_build.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("OBJCACHE", "")  # ccache would hide which objects were compiled
    env = simtools.VERILATOR.env()
    first, first_log, first_out = _build(tmp_path, "a", env)
    assert first["cached"] is False and "verilated.o" in first["objects"] and "verilated.cpp" in first_log
    stored = tmp_path / "cache" / "verilator-runtime" / str(first["key"])
    assert sorted(p.name for p in stored.glob("*.o")) == sorted(first["objects"])
    second, second_log, second_out = _build(tmp_path, "b", env)
    assert second["cached"] is True and second["key"] == first["key"]
    # the second make compiled the design only: no runtime source, one translation unit
    assert "verilated.cpp" not in second_log and "Vcounter__ALL.cpp" in second_log
    # 7 -> x*3+1 ten times (16-bit): the simulation is the same whichever way it was built
    expected = 7
    for _ in range(10):
        expected = (expected * 3 + 1) % 65536
    assert first_out.splitlines()[0] == second_out.splitlines()[0] == f"acc={expected}"


@pytest.mark.verilator
def test_a_cache_that_cannot_be_written_costs_time_not_the_build(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv(verilator_build.CACHE_ENV, str(blocked))
    monkeypatch.setenv("OBJCACHE", "")
    runtime, log, out = _build(tmp_path, "a", simtools.VERILATOR.env())
    assert runtime["cached"] is False and "verilated.cpp" in log
    assert out.startswith("acc=") and blocked.read_text().startswith("a file")
