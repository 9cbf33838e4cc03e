"""Cycle-accurate cocotb testbench for a generated accelerator described by ``rtl/design.json``.

The testbench is configured through environment variables (set by ``codesign.verify`` through
``simtools.run_cocotb(extra_env=...)``):

- ``CODESIGN_TB_DESIGN``: path of design.json (ports, element types, latency, II, layer probes).
- ``CODESIGN_TB_VECTORS``: path of vectors.npz (``inputs``, ``expected``, optional ``labels``,
  ``qkeras_pred``, ``golden_<layer>``).
- ``CODESIGN_TB_RESULT``: where to write the result JSON.
- ``CODESIGN_TB_SEED``, ``CODESIGN_TB_GAP_PROB``, ``CODESIGN_TB_BP_PROB``: seed, probability of an
  idle input cycle before a vector (geometric gaps), probability of out_ready low on a cycle.
- ``CODESIGN_TB_MEASURE`` (optional, default 8): vectors in the latency/II measurement phase.
- ``CODESIGN_TB_LIMIT`` (optional): stream only the first LIMIT vectors (benchmarks).

Phases: (a) latency/II measurement at full rate, sink always ready; (b) all vectors with random
input gaps and output back-pressure, AXI4-Stream protocol checks and an integer comparison of every
output with ``expected``; (c) only after a mismatch: the first failing vector alone, with every
layer probe sampled on its own output handshake and compared with ``golden_<layer>``.

An io_stream design (design.json ``input.beats`` > 1) takes each vector as that many input
transfers of ``input.n`` elements (one pixel, all channels, in row-major order), each after its own
random gap; its latency counts from the vector's first transfer and its II is the distance between
the first transfers of consecutive vectors.

Cycle conventions (shared with design.json): edges are numbered by rising clock edges. A transfer
happens on an edge where valid and ready are both 1. The latency of a vector is (edge of its output
transfer) - (edge of its input transfer); with an idle pipeline and an always-ready sink this is the
number of edges from the input handshake to the first edge at which out_valid is sampled high. II is
the distance between consecutive input transfer edges at full rate.

Structure: the driver (:class:`Source`), back-pressure (:class:`Sink`), monitor (:class:`Monitor`,
protocol rules and transfer times), model (:class:`Model`, the expected words) and checker
(:class:`Checker`) are plain objects called from ONE coroutine per clock cycle
(:func:`stream`), which awaits one falling edge and one ReadOnly per cycle. Values that decide a
transfer on the next rising edge are read in ReadOnly after the testbench's own writes, so a
combinational path from out_ready to in_ready is sampled correctly. Cycle numbers come from
simulation time.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, ReadOnly
from cocotb.utils import get_sim_steps

# The bus packing rule (element i at bits [i*W +: W], two's complement). ``bus.py`` sits beside this
# file, here and in every IP core folder; it is imported as a sibling because the folder is on
# sys.path (codesign.verify's entry module, the core's run_tb.py) and codesign may not be installed.
from bus import pack_rows, unpack_word, unpack_words

ENV_PREFIX = "CODESIGN_TB_"


# --- Configuration -------------------------------------------------------------------------
@dataclass(frozen=True)
class Port:
    n: int
    width: int
    signed: bool
    port: str

    @classmethod
    def from_json(cls, d: dict[str, Any], default_port: str) -> Port:
        t = d["type"]
        return cls(int(d["n"]), int(t["width"]), bool(t["signed"]), str(d.get("port", default_port)))


@dataclass(frozen=True)
class Layer:
    name: str
    n_out: int
    width: int
    signed: bool
    data: str
    valid: str
    ready: str | None
    #: an activation applied inside the previous layer's module (rtl.fuse_activations): that layer
    fused_into: str | None = None


@dataclass(frozen=True)
class Design:
    path: str
    top: str
    inp: Port
    out: Port
    latency: int
    ii: int
    period_ns: float
    layers: tuple[Layer, ...]
    #: input transfers per vector: 1, or an io_stream design's pixels per image (``input.beats``)
    beats: int = 1

    @classmethod
    def load(cls, path: str) -> Design:
        d = json.loads(Path(path).read_text())
        layers = [Layer(str(lay["name"]), int(lay["n_out"]), int(lay["out_type"]["width"]),
                        bool(lay["out_type"]["signed"]), lay["probe"]["data"], lay["probe"]["valid"],
                        lay["probe"].get("ready"), lay.get("fused_into")) for lay in d.get("layers", [])
                  if lay.get("probe")]
        return cls(path, d["top"], Port.from_json(d["input"], "in_data"), Port.from_json(d["output"], "out_data"),
                   int(d["latency"]), int(d["ii"]), float(d.get("clock_period_ns", 5.0)), tuple(layers),
                   int(d["input"].get("beats", 1)))


@dataclass
class Settings:
    design: Design
    vectors: dict[str, np.ndarray]
    result_path: Path
    seed: int
    gap_prob: float
    bp_prob: float
    measure: int
    limit: int | None

    @classmethod
    def from_env(cls) -> Settings:
        def get(name: str, default: str | None = None) -> str:
            v = os.environ.get(ENV_PREFIX + name, default)
            if v is None:
                raise RuntimeError(f"environment variable {ENV_PREFIX + name} is not set (run via codesign.verify)")
            return v

        design = Design.load(get("DESIGN"))
        with np.load(get("VECTORS")) as z:
            vectors = {k: np.asarray(z[k]) for k in z.files}
        limit = os.environ.get(ENV_PREFIX + "LIMIT")
        return cls(design, vectors, Path(get("RESULT")), int(get("SEED", "1")), float(get("GAP_PROB", "0.2")),
                   float(get("BP_PROB", "0.2")), int(get("MEASURE", "8")), int(limit) if limit else None)


# --- Driver, sink, monitor, model, checker -------------------------------------------------
class Source:
    """Input driver: vectors in order, each preceded by a geometric number of idle cycles."""

    def __init__(self, words: list[int], order: list[int], gap_prob: float, rng: random.Random, bits: int):
        self.words, self.order, self.gap_prob, self.rng, self.bits = words, order, gap_prob, rng, bits
        self.sent = 0
        self.gap = self._draw_gap()

    def _draw_gap(self) -> int:
        g = 0
        if self.gap_prob > 0:
            while self.rng.random() < self.gap_prob:
                g += 1
        return g

    def next_word(self) -> int | None:
        """Called once per cycle while in_valid is low: the word to present now, or None (idle)."""
        if self.sent >= len(self.order):  # all sent
            return None
        if self.gap > 0:
            self.gap -= 1
            return None
        return self.words[self.order[self.sent]]

    def junk(self) -> int:
        """Random data presented while in_valid is low (a DUT must ignore it)."""
        return self.rng.getrandbits(self.bits)

    def accepted(self) -> None:
        self.sent += 1
        self.gap = self._draw_gap()


class Sink:
    """Output back-pressure: out_ready low on a cycle with probability bp_prob."""

    def __init__(self, bp_prob: float, rng: random.Random):
        self.bp_prob, self.rng = bp_prob, rng

    def ready(self) -> int:
        return 0 if (self.bp_prob > 0 and self.rng.random() < self.bp_prob) else 1


@dataclass
class Monitor:
    """Transfer edges and AXI4-Stream rule checks on the output (valid held, data stable)."""

    accept_edges: list[int] = field(default_factory=list)
    output_edges: list[int] = field(default_factory=list)
    words: list[int] = field(default_factory=list)
    violations: int = 0
    first_violation: str | None = None
    _stalled: bool = False
    _stalled_word: int = 0

    def violation(self, msg: str) -> None:
        self.violations += 1
        if self.first_violation is None:
            self.first_violation = msg

    def output_cycle(self, edge: int, valid: bool, ready: int, word: int | None) -> bool:
        """Check the rules for the sample before ``edge``; return True when a transfer happens."""
        if self._stalled:
            if not valid:
                self.violation(f"out_valid dropped at edge {edge} before the handshake of output "
                               f"{len(self.words)} (it was high with out_ready low)")
            elif word != self._stalled_word:
                self.violation(f"out_data changed at edge {edge} while out_valid was high and out_ready "
                               f"low (output {len(self.words)})")
        if not valid:
            self._stalled = False
            return False
        if ready:
            self._stalled = False
            self.output_edges.append(edge)
            self.words.append(word if word is not None else 0)
            return True
        self._stalled = True
        self._stalled_word = word if word is not None else 0
        return False


class Model:
    """The reference: hls4ml C-sim outputs (``expected``), packed as the DUT packs out_data."""

    def __init__(self, expected: np.ndarray, out: Port):
        self.expected = np.asarray(expected, dtype=np.int64)
        self.words = pack_rows(self.expected, out.width)


class Checker:
    """Compares every output word with the model's; keeps the first mismatch."""

    def __init__(self, model: Model, out: Port):
        self.model, self.out = model, out
        self.mismatched_vectors = self.mismatched_elements = self.checked = 0
        self.first: dict[str, Any] | None = None

    def check(self, vector: int, word: int) -> None:
        self.checked += 1
        if word == self.model.words[vector]:
            return
        got = unpack_word(word, self.out.n, self.out.width, self.out.signed)
        exp = self.model.expected[vector]
        diff = np.flatnonzero(got != exp)
        self.mismatched_vectors += 1
        self.mismatched_elements += int(diff.size)
        if self.first is None:
            k = int(diff[0])
            self.first = {"vector": vector, "output": k, "got": int(got[k]), "expected": int(exp[k]),
                          "got_vector": got.tolist(), "expected_vector": exp.tolist()}


# --- The cycle loop ------------------------------------------------------------------------
class Hang(Exception):
    """No transfer for the watchdog's number of cycles."""


class Bench:
    def __init__(self, dut: Any, s: Settings):
        self.dut, self.s, self.d = dut, s, s.design
        self.clk = dut.clk
        self.in_valid, self.in_ready = dut.in_valid, dut.in_ready
        self.in_data = getattr(dut, self.d.inp.port)
        self.out_valid, self.out_ready = dut.out_valid, dut.out_ready
        self.out_data = getattr(dut, self.d.out.port)
        self.period = get_sim_steps(self.d.period_ns, "ns")
        self.fall, self.ro = FallingEdge(self.clk), ReadOnly()
        self.t_ref = 0  # simulation time of the falling edge that ends reset: edge numbers count from it

    def edge(self) -> int:
        """Number of the next rising edge, counted from the reference falling edge (call at a fall)."""
        return (get_sim_time() - self.t_ref) // self.period + 1

    async def reset(self, cycles: int = 3) -> None:
        await self.fall  # leave a possible ReadOnly phase before writing
        self.in_valid.value = 0
        self.out_ready.value = 0
        self.dut.rst.value = 1
        for _ in range(cycles):
            await self.fall
        self.dut.rst.value = 0
        self.t_ref = get_sim_time()

    async def stream(self, order: list[int], words: list[int], gap_prob: float, bp_prob: float,
                     rng: random.Random, checker: Checker | None, timeout: int) -> Monitor:
        """Send vector ``order[k]`` in order (its ``beats`` input words ``words[order[k] * beats + b]``,
        each after a random gap) and collect one output per vector; returns the monitor, whose
        ``accept_edges`` holds every input transfer."""
        beats = self.d.beats
        src = Source(words, [v * beats + b for v in order for b in range(beats)], gap_prob, rng,
                     self.d.inp.n * self.d.inp.width)
        sink = Sink(bp_prob, rng)
        mon = Monitor()
        n = len(order)
        in_valid_h, in_ready_h, in_data_h = self.in_valid, self.in_ready, self.in_data
        out_valid_h, out_ready_h, out_data_h = self.out_valid, self.out_ready, self.out_data
        fall, ro = self.fall, self.ro
        driving, cur_ready, cur_valid, edge = False, -1, -1, 0
        last_progress: int | None = None
        # until every output arrived and every input word was taken: a streaming core can finish an
        # image before its last pixels arrive (pixels no output window reaches), and they still belong to it
        while len(mon.words) < n or src.sent < len(src.order) or driving:
            await fall
            edge = self.edge()
            if last_progress is None:
                last_progress = edge
            # --- driver: present a vector or stay idle
            if not driving:
                w = src.next_word()
                if w is not None:
                    in_data_h.value = w
                    in_valid_h.value = 1
                    cur_valid = 1
                    driving = True
                elif cur_valid != 0:
                    in_valid_h.value = 0
                    in_data_h.value = src.junk()
                    cur_valid = 0
            r = sink.ready()
            if r != cur_ready:
                out_ready_h.value = r
                cur_ready = r
            await ro
            # --- monitor: everything below decides the transfers on rising edge `edge`
            ov = out_valid_h.value == 1
            word = out_data_h.value.to_unsigned() if ov else None
            if mon.output_cycle(edge, ov, cur_ready, word):
                k = len(mon.words) - 1
                if checker is not None and k < n:
                    checker.check(order[k], mon.words[k])
                last_progress = edge
            ir = driving and in_ready_h.value == 1
            if ir:
                mon.accept_edges.append(edge)
                src.accepted()
                driving = False
                last_progress = edge
            if edge - last_progress > timeout:
                raise Hang(f"no transfer for {timeout} cycles at edge {edge}: {len(mon.accept_edges)} of {n} "
                           f"inputs accepted, {len(mon.words)} outputs received "
                           f"(in_valid={int(driving)}, in_ready={int(ir)}, out_valid={int(ov)})")
        return mon

    async def probe_layers(self, word: int, timeout: int) -> dict[str, int | None]:
        """Send one word into an idle DUT, sink always ready; each layer's first probe transfer."""
        probes = [(lay, getattr(self.dut, lay.valid), getattr(self.dut, lay.data),
                   getattr(self.dut, lay.ready) if lay.ready else None) for lay in self.d.layers]
        seen: dict[str, int | None] = {lay.name: None for lay in self.d.layers}
        self.out_ready.value = 1
        self.in_data.value = word
        self.in_valid.value = 1
        driving = True
        for _ in range(timeout):
            await self.fall
            if not driving:
                self.in_valid.value = 0
            await self.ro
            if driving and self.in_ready.value == 1:
                driving = False
            for lay, v, dat, rdy in probes:
                if seen[lay.name] is None and v.value == 1 and (rdy is None or rdy.value == 1):
                    seen[lay.name] = dat.value.to_unsigned()
            if all(x is not None for x in seen.values()) and self.out_valid.value == 1:
                break
        return seen


def _stats(values: list[int]) -> tuple[int | None, int | None]:
    return (min(values), max(values)) if values else (None, None)


@cocotb.test()
async def test_network(dut: Any) -> None:
    """Latency/II measurement, randomized streaming of all vectors, bit-exact check."""
    t_wall = time.perf_counter()
    s = Settings.from_env()
    d = s.design
    inputs = np.asarray(s.vectors["inputs"], dtype=np.int64)
    expected = np.asarray(s.vectors["expected"], dtype=np.int64)
    if inputs.ndim != 2 or inputs.shape[1] != d.inp.n * d.beats:
        raise AssertionError(f"vectors 'inputs' has shape {inputs.shape}; design.json input n={d.inp.n} "
                             f"x beats={d.beats}")
    if expected.shape != (inputs.shape[0], d.out.n):
        raise AssertionError(f"vectors 'expected' has shape {expected.shape}; need ({inputs.shape[0]}, {d.out.n})")
    n_total = inputs.shape[0] if s.limit is None else min(s.limit, inputs.shape[0])
    # one word per input transfer: vector v's beat b is words[v * beats + b]
    words = pack_rows(inputs.reshape(-1, d.inp.n), d.inp.width)
    model = Model(expected, d.out)
    failures: list[str] = []
    rng = random.Random(s.seed)
    timeout = 64 * (d.latency + d.ii) + 1000

    Clock(dut.clk, d.period_ns, unit="ns").start(start_high=False)
    bench = Bench(dut, s)
    await bench.reset()

    result: dict[str, Any] = {
        "design": d.path, "top": d.top, "seed": s.seed, "input_gap_prob": s.gap_prob,
        "backpressure_prob": s.bp_prob, "vectors": n_total, "latency_expected": d.latency, "ii_expected": d.ii,
    }
    # (a) latency / II at full rate, sink always ready, pipeline idle at the start
    k = min(max(s.measure, 2), n_total)
    meas_checker = Checker(model, d.out)
    try:
        mon = await bench.stream(list(range(k)), words, 0.0, 0.0, rng, meas_checker, timeout)
        firsts = mon.accept_edges[::d.beats]  # each vector's first input transfer
        lats = [o - a for a, o in zip(firsts, mon.output_edges)]
        diffs = [b - a for a, b in zip(firsts, firsts[1:])]
        steady = diffs[len(diffs) // 2:] if len(diffs) > 1 else diffs
        result.update(latency_min=_stats(lats)[0], latency_max=_stats(lats)[1], latency_first=lats[0],
                      ii=max(steady) if steady else None, ii_min=_stats(steady)[0], ii_max=_stats(steady)[1],
                      measure_accept_edges=firsts, measure_output_edges=mon.output_edges)
        if d.beats > 1:
            lasts = mon.accept_edges[d.beats - 1::d.beats]
            result["latency_after_last_beat"] = _stats([o - a for a, o in zip(lasts, mon.output_edges)])[1]
        if lats[0] != d.latency or min(lats) != d.latency or max(lats) != d.latency:
            failures.append(f"measured latency {lats[0]} cycles (min {min(lats)}, max {max(lats)} over {k} "
                            f"vectors at full rate) differs from design.json latency {d.latency} ({d.path})")
        if steady and (min(steady) != d.ii or max(steady) != d.ii):
            failures.append(f"measured II {max(steady)} cycles (steady-state input spacing {steady}) differs "
                            f"from design.json ii {d.ii} ({d.path})")
        if mon.violations:
            failures.append(f"AXI4-Stream rule broken in the measurement phase: {mon.first_violation}")
    except Hang as e:
        failures.append(f"measurement phase: {e}")
        result.update(latency_min=None, latency_max=None, ii=None)

    # (b) all vectors, random gaps and back-pressure
    checker = Checker(model, d.out)
    t0, t_stream = get_sim_time(), time.perf_counter()
    mon = Monitor()
    if not any(f.startswith("measurement phase") for f in failures):
        try:
            mon = await bench.stream(list(range(n_total)), words, s.gap_prob, s.bp_prob, rng, checker, timeout)
        except Hang as e:
            failures.append(f"main phase: {e}")
    stream_wall = time.perf_counter() - t_stream
    lats = [o - a for a, o in zip(mon.accept_edges[::d.beats], mon.output_edges)]
    cycles = (get_sim_time() - t0) // bench.period
    result.update(
        vectors_checked=checker.checked, mismatches=checker.mismatched_vectors,
        mismatched_elements=checker.mismatched_elements, first_mismatch=checker.first,
        protocol_violations=mon.violations, first_protocol_violation=mon.first_violation,
        stream_latency_min=_stats(lats)[0], stream_latency_max=_stats(lats)[1], stream_cycles=int(cycles),
        stream_wall_seconds=round(stream_wall, 3),
        stream_cycles_per_second=round(cycles / stream_wall, 1) if stream_wall > 0 else None,
    )
    if mon.violations:
        failures.append(f"AXI4-Stream rule broken: {mon.first_violation} ({mon.violations} violations)")
    if checker.mismatched_vectors:
        f = checker.first
        assert f is not None
        failures.append(f"{checker.mismatched_vectors} of {checker.checked} vectors differ from expected; first: "
                        f"vector {f['vector']} output {f['output']} got {f['got']} expected {f['expected']}")
    if checker.checked < n_total:
        failures.append(f"only {checker.checked} of {n_total} vectors were checked")

    # accuracy against labels and agreement with QKeras, from the RTL's own outputs
    got = unpack_words(mon.words, d.out.n, d.out.width, d.out.signed)
    pred = np.argmax(got, axis=1) if len(got) else np.zeros(0, dtype=np.int64)
    for key, figure in (("labels", "accuracy"), ("qkeras_pred", "qkeras_agreement")):
        if key in s.vectors and len(pred):
            ref = np.asarray(s.vectors[key]).astype(np.int64)
            m = min(len(ref), len(pred))
            result[figure] = float(np.mean(pred[:m] == ref[:m])) if m else None
            if key == "labels":
                result["labeled"] = m

    # (c) localise the first mismatch to a layer (io_parallel designs: one transfer per layer output)
    if checker.first is not None and d.beats == 1:
        result["first_mismatch"]["layer"] = None
        result["first_mismatch"]["layers"] = await localise(bench, s, words, checker.first["vector"], timeout)
        differing = [x for x in result["first_mismatch"]["layers"] if x["status"] == "differs"]
        # the layer whose module computed the wrong values: for an activation fused into a layer's
        # output register, that layer (its probe is the activation's only trace)
        first = differing[0] if differing else {}
        result["first_mismatch"]["layer"] = first.get("fused_into") or first.get("name")
        if first.get("fused_into"):
            result["first_mismatch"]["probe"] = first["name"]

    sim_cycles = get_sim_time() // bench.period
    wall = time.perf_counter() - t_wall
    result.update(cycles=int(sim_cycles), wall_seconds=round(wall, 3),
                  cycles_per_second=round(sim_cycles / wall, 1) if wall > 0 else None,
                  vectors_per_second=round(checker.checked / wall, 1) if wall > 0 else None,
                  failures=failures, passed=not failures)
    s.result_path.parent.mkdir(parents=True, exist_ok=True)
    s.result_path.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    assert not failures, "; ".join(failures)


async def localise(bench: Bench, s: Settings, words: list[int], vector: int, timeout: int) -> list[dict[str, Any]]:
    """Re-run one vector on a reset DUT; compare each layer's probe with golden_<layer>."""
    d = s.design
    out: list[dict[str, Any]] = []
    try:
        await bench.reset()
        seen = await bench.probe_layers(words[vector], timeout)
    except AttributeError as e:
        return [{"name": lay.name, "status": f"probe not found in {d.top}: {e}"} for lay in d.layers]
    for lay in d.layers:
        key, word = f"golden_{lay.name}", seen.get(lay.name)
        entry: dict[str, Any] = {"name": lay.name}
        if lay.fused_into:
            entry["fused_into"] = lay.fused_into
        out.append(entry)
        if word is None:
            entry["status"] = "no handshake"
            continue
        got = unpack_word(word, lay.n_out, lay.width, lay.signed)
        entry["got"] = got.tolist()
        if key not in s.vectors:
            entry["status"] = f"no {key} in vectors"
            continue
        gold = np.asarray(s.vectors[key][vector], dtype=np.int64)
        entry["golden"] = gold.tolist()
        if gold.shape != got.shape:
            entry["status"] = f"{key} has {gold.size} elements, probe has {got.size}"
            continue
        bad = np.flatnonzero(gold != got)
        entry["status"] = "differs" if bad.size else "match"
        if bad.size:
            entry["first_element"] = int(bad[0])
    return out
