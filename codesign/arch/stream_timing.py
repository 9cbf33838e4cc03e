"""Cycle model of a streaming (io_stream) network: its latency and II per image, computed.

Every module of the streaming top has a small valid/ready state machine (its template says which).
This model steps exactly those state machines, cycle by cycle, for images sent back to back into
an always-ready sink, so the latency and II that design.json states are computed from the
architecture rather than typed in or measured; the testbench then measures them on the RTL and
any difference is a bug in one of the two.

The top paces images: an image's first pixel is accepted no sooner than II cycles after the
previous image's first pixel. :func:`schedule` picks the smallest II at which every image sees the
same latency (so one latency figure is true of all of them), starting from the rate the network
reaches unpaced.

Handshakes (``Stage.handshake``):

- ``("comb",)``: combinational (element-wise activations): valid and ready pass through.
- ``("pipeline", n)``: ``dense_parallel.v.j2``'s elastic pipeline of n registered stages.
- ``("engine", R, active, depth)``: the folded engines (``dense_folded.v.j2``, ``dense_serial.v.j2``):
  one vector every R cycles, ``active`` issue cycles, ``depth`` pipeline stages, accumulator, output.
- ``("window", params)``: ``stream_window.v.j2``, the line-buffer window generator.
- ``("gather", beats)``: ``stream_gather.v.j2``, beats collected into one vector.
- ``("upsample", w, rw, rh)``: ``stream_upsample.v.j2``, rows of w pixels repeated rw x across, rh x down.
- ``("fifo", depth)``: ``stream_fifo.v.j2``, between two layers (``depth`` None: unbounded, to
  measure the occupancy a depth must hold).

The modules are elastic (one register slot each), so a linear chain cannot deadlock; but a layer
that emits in bursts (a pooling layer's outputs come on every other row) throttles the layers
upstream of a slower one unless a FIFO absorbs the burst. :func:`size_fifos` finds the depths at
which the network reaches the rate it would have with unbounded FIFOs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codesign.errors import RtlGenError


class _Comb:
    def __init__(self) -> None:
        pass

    def out_valid(self, in_valid: bool) -> bool:
        return in_valid

    def in_ready(self, out_ready: bool) -> bool:
        return out_ready

    def tick(self, in_valid: bool, out_ready: bool) -> None:
        pass


class _Pipeline:
    def __init__(self, n: int):
        self.v = [False] * n

    def out_valid(self, in_valid: bool) -> bool:
        return self.v[-1]

    def _en(self, out_ready: bool) -> list[bool]:
        en = [False] * (len(self.v) + 1)
        en[-1] = out_ready
        for k in range(len(self.v) - 1, -1, -1):
            en[k] = (not self.v[k]) or en[k + 1]
        return en

    def in_ready(self, out_ready: bool) -> bool:
        return self._en(out_ready)[0]

    def tick(self, in_valid: bool, out_ready: bool) -> None:
        en = self._en(out_ready)
        for k in range(len(self.v) - 1, 0, -1):
            if en[k]:
                self.v[k] = self.v[k - 1]
        if en[0]:
            self.v[0] = in_valid


class _Engine:
    def __init__(self, r: int, active: int, depth: int):
        self.r, self.active = r, active
        self.x_valid, self.t, self.acc_done, self.out_v = False, 0, False, False
        self.delay = [False] * depth  # the issue-cycle "last" flag through the pipeline stages

    def out_valid(self, in_valid: bool) -> bool:
        return self.out_v

    def _en(self) -> bool:
        # the template's engine enable reads only its own registers (no combinational ready chain)
        return not (self.acc_done and self.out_v)

    def in_ready(self, out_ready: bool) -> bool:
        return self._en() and (not self.x_valid or self.t == self.r - 1)

    def tick(self, in_valid: bool, out_ready: bool) -> None:
        if not self._en():
            if out_ready:  # the output register drains while the engine waits
                self.out_v = False
            return
        accept = in_valid and self.in_ready(out_ready)
        last = self.x_valid and self.t < self.active and self.t == self.active - 1
        a_last = self.delay[-1] if self.delay else last
        if self.delay:
            self.delay = [last] + self.delay[:-1]
        issue_last = self.t == self.r - 1
        if accept:
            self.x_valid, self.t = True, 0
        elif self.x_valid:
            self.t = 0 if issue_last else self.t + 1
            if issue_last:
                self.x_valid = False
        if self.acc_done:
            self.out_v = True
        elif out_ready:
            self.out_v = False
        self.acc_done = a_last


class _Window:
    def __init__(self, p: dict[str, Any]):
        self.p = p
        self.r = self.c = self.rph = self.cph = 0
        self.out_v = self.started = False

    def _interior(self) -> bool:
        p = self.p
        return p["pt"] <= self.r < p["pt"] + p["h"] and p["pl"] <= self.c < p["pl"] + p["w"]

    def out_valid(self, in_valid: bool) -> bool:
        return self.out_v

    def in_ready(self, out_ready: bool) -> bool:
        return (not self.out_v or out_ready) and self._interior()

    def _waits(self) -> bool:
        """After reset, a raster that begins in padding waits for the first pixel (see the template)."""
        return (self.p["pt"] > 0 or self.p["pl"] > 0) and not self.started

    def tick(self, in_valid: bool, out_ready: bool) -> None:
        p = self.p
        free = not self.out_v or out_ready
        step = free and ((not self._interior() and not self._waits()) or in_valid)
        if not step:
            if out_ready:
                self.out_v = False
            return
        self.started = True
        self.out_v = self.r >= p["kh"] - 1 and self.c >= p["kw"] - 1 and self.rph == 0 and self.cph == 0
        if self.c == p["wp"] - 1:
            self.c, self.cph = 0, 0
            if self.r == p["hp"] - 1:
                self.r, self.rph = 0, 0
            else:
                self.rph = 0 if self.r < p["kh"] - 1 else (0 if self.rph == p["sh"] - 1 else self.rph + 1)
                self.r += 1
        else:
            self.cph = 0 if self.c < p["kw"] - 1 else (0 if self.cph == p["sw"] - 1 else self.cph + 1)
            self.c += 1


class _Gather:
    def __init__(self, beats: int):
        self.beats, self.n, self.full = beats, 0, False

    def out_valid(self, in_valid: bool) -> bool:
        return self.full

    def in_ready(self, out_ready: bool) -> bool:
        return not self.full or out_ready

    def tick(self, in_valid: bool, out_ready: bool) -> None:
        if in_valid and self.in_ready(out_ready):
            self.full = self.n == self.beats - 1
            self.n = 0 if self.full else self.n + 1
        elif out_ready:
            self.full = False


class _Fifo:
    def __init__(self, depth: int | None):
        self.depth, self.count, self.peak = depth, 0, 0

    def out_valid(self, in_valid: bool) -> bool:
        return self.count > 0

    def in_ready(self, out_ready: bool) -> bool:
        return self.depth is None or self.count < self.depth or out_ready

    def tick(self, in_valid: bool, out_ready: bool) -> None:
        push = in_valid and self.in_ready(out_ready)
        pop = self.count > 0 and out_ready
        self.count += int(push) - int(pop)
        self.peak = max(self.peak, self.count)


class _Upsample:
    def __init__(self, w: int, rw: int, rh: int):
        self.w, self.rw, self.rh = w, rw, rh
        self.l = self.j = self.ph = 0
        self.out_v = False

    def _fresh(self) -> bool:
        return self.ph == 0 and self.j == 0

    def out_valid(self, in_valid: bool) -> bool:
        return self.out_v

    def in_ready(self, out_ready: bool) -> bool:
        return (not self.out_v or out_ready) and self._fresh()

    def tick(self, in_valid: bool, out_ready: bool) -> None:
        free = not self.out_v or out_ready
        if free and (not self._fresh() or in_valid):
            self.out_v = True
            self.j = (self.j + 1) % self.rw
            if self.j == 0:
                self.l = (self.l + 1) % self.w
                if self.l == 0:
                    self.ph = (self.ph + 1) % self.rh
        elif out_ready:
            self.out_v = False


def _model(handshake: tuple[Any, ...]) -> Any:
    kind = handshake[0]
    if kind == "comb":
        return _Comb()
    if kind == "pipeline":
        return _Pipeline(handshake[1])
    if kind == "engine":
        return _Engine(*handshake[1:])
    if kind == "window":
        return _Window(handshake[1])
    if kind == "gather":
        return _Gather(handshake[1])
    if kind == "fifo":
        return _Fifo(handshake[1])
    if kind == "upsample":
        return _Upsample(*handshake[1:])
    raise ValueError(f"unknown handshake {handshake!r}")


@dataclass(frozen=True)
class Timing:
    latency: int  #: edges from an image's first pixel transfer to its output transfer
    ii: int  #: edges between the first pixels of consecutive images at full rate
    latency_after_last_pixel: int  #: edges from an image's last pixel transfer to its output


def simulate(handshakes: list[tuple[Any, ...]], beats: int, images: int, ii: int,
             max_cycles: int = 50_000_000, peaks: list[int] | None = None) -> tuple[list[int], list[int], list[int]]:
    """Edges of each image's first and last pixel transfers and of its output transfer, images sent
    back to back (paced at ``ii``) into an always-ready sink. ``peaks``, when given, receives each
    FIFO's largest occupancy, in chain order."""
    stages = [_model(h) for h in handshakes]
    n = len(stages)
    firsts: list[int] = []
    lasts: list[int] = []
    outs: list[int] = []
    beat, gap, sent = 0, 0, 0
    edge = 0
    while len(outs) < images:
        edge += 1
        if edge > max_cycles:
            raise RtlGenError(f"stream timing model: no output after {max_cycles} cycles (a deadlock)")
        ready = [True] * (n + 1)
        for i in range(n - 1, -1, -1):
            ready[i] = stages[i].in_ready(ready[i + 1])
        src_valid = sent < images and (beat != 0 or gap == 0)
        valid = [src_valid] + [False] * n
        for i in range(n):
            valid[i + 1] = stages[i].out_valid(valid[i])
        if valid[n]:
            outs.append(edge)
        accept = valid[0] and ready[0]
        for i in range(n):
            stages[i].tick(valid[i], ready[i + 1])
        if accept and beat == 0:
            firsts.append(edge)
        if accept and beat == beats - 1:
            lasts.append(edge)
            sent += 1
        if accept and beat == 0:
            gap = ii - 1
        elif gap:
            gap -= 1
        if accept:
            beat = 0 if beat == beats - 1 else beat + 1
    if peaks is not None:
        peaks.extend(s.peak for s in stages if isinstance(s, _Fifo))
    return firsts, lasts, outs


def schedule(handshakes: list[tuple[Any, ...]], beats: int, images: int = 4) -> Timing:
    """The network's latency and II per image: the smallest pacing II at which ``images``
    back-to-back images all have the same latency and are II apart.

    From the unpaced rate up, a coarse walk finds a pacing that works (stepping by the latency
    spread it sees); a bisection below it then finds the smallest one that does."""
    firsts, _, _ = simulate(handshakes, beats, images, 1)
    lo = ii = max(b - a for a, b in zip(firsts, firsts[1:])) if images > 1 else beats
    for _ in range(64):
        firsts, lasts, outs = simulate(handshakes, beats, images, ii)
        lats = [o - f for f, o in zip(firsts, outs)]
        gaps = {b - a for a, b in zip(firsts, firsts[1:])}
        if len(set(lats)) == 1 and gaps <= {ii}:
            break
        ii = max(ii + 1, max(gaps) if gaps else ii, ii + (max(lats) - min(lats)))
    else:
        raise RtlGenError("stream timing model: no pacing gives every image the same latency")
    while lo < ii:  # the smallest steady pacing in [lo, ii]
        mid = (lo + ii) // 2
        if _steady(handshakes, beats, images, mid):
            ii = mid
        else:
            lo = mid + 1
    firsts, lasts, outs = simulate(handshakes, beats, images, ii)
    return Timing(outs[0] - firsts[0], ii, outs[0] - lasts[0])


def _steady(handshakes: list[tuple[Any, ...]], beats: int, images: int, ii: int) -> bool:
    """Whether images paced at ``ii`` are all accepted ``ii`` apart with one latency."""
    firsts, _, outs = simulate(handshakes, beats, images, ii)
    return len({o - f for f, o in zip(firsts, outs)}) == 1 and {b - a for a, b in zip(firsts, firsts[1:])} <= {ii}


def _with_fifos(handshakes: list[tuple[Any, ...]], depths: dict[int, int | None]) -> list[tuple[Any, ...]]:
    """The chain with a FIFO of ``depths[k]`` in front of stage k (none where the depth is 0)."""
    out: list[tuple[Any, ...]] = []
    for k, h in enumerate(handshakes):
        if k in depths and depths[k] != 0:
            out.append(("fifo", depths[k]))
        out.append(h)
    return out


def size_fifos(handshakes: list[tuple[Any, ...]], widths: dict[int, int], beats: int,
               images: int = 4, lower_bound: int = 0) -> tuple[dict[int, int], Timing]:
    """FIFO depths for the chain and the network's timing with them. ``widths``: the stages a FIFO
    may go in front of, with the bits of a word there; ``lower_bound``: cycles per image no
    pacing can beat (the busiest layer's), so a chain that reaches it needs no FIFO.

    The target is the II the network reaches with an unbounded FIFO at every position. One FIFO is
    usually enough (a burst to absorb in front of one slow layer): each position alone gets the
    smallest depth that reaches the target, and the one with the fewest bits wins. Where no single
    FIFO does, widest position first, each gets the smallest depth (0: none) at which the target
    holds, the positions not yet decided left unbounded, so the buffering goes to the narrower
    places. A depth search is bounded by the FIFO's largest occupancy when unbounded (at that depth
    it behaves exactly as unbounded). Where the chain reaches the target without FIFOs, there are
    none; "reaches" means images paced at the target flow at one latency (:func:`schedule`)."""
    bare = schedule(handshakes, beats, images)
    if bare.ii <= lower_bound:
        return {}, bare
    target = schedule(_with_fifos(handshakes, {k: None for k in widths}), beats, images).ii
    if not widths or target >= bare.ii:
        return {}, bare

    def smallest(depths: dict[int, int | None], k: int) -> int | None:
        """The smallest depth at k (others as ``depths``) reaching the target; None if none does."""
        peaks: list[int] = []
        trial = {**depths, k: None}
        firsts, _, outs = simulate(_with_fifos(handshakes, trial), beats, images, target, peaks=peaks)
        if len({o - f for f, o in zip(firsts, outs)}) != 1 or {b - a for a, b in zip(firsts, firsts[1:])} - {target}:
            return None
        lo, hi = 0, max(1, peaks[sorted(j for j, d in trial.items() if d != 0).index(k)])
        while lo < hi:
            mid = lo if lo == 0 else (lo + hi) // 2  # try none first
            if _steady(_with_fifos(handshakes, {**depths, k: mid}), beats, images, target):
                hi = mid
            else:
                lo = mid + 1
        return hi

    singles = {k: d for k in widths if (d := smallest({}, k)) is not None}
    if singles:
        best = min(singles, key=lambda k: (singles[k] * widths[k], k))
        sized = {best: singles[best]}
    else:
        depths: dict[int, int | None] = {k: None for k in widths}
        for k in sorted(widths, key=lambda k: (-widths[k], k)):
            depths[k] = smallest({j: d for j, d in depths.items() if j != k}, k)
        sized = {k: d for k, d in depths.items() if d}
    timing = schedule(_with_fifos(handshakes, sized), beats, images)
    if timing.ii != target:
        raise RtlGenError(f"stream timing model: the sized FIFOs give II {timing.ii}, not the target {target}")
    return sized, timing
