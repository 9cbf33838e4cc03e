"""The adder graph of a constant matrix and its construction: digits, shared subexpressions, trees.

``y_j = sum_i w_ij * x_i`` for a constant matrix W is a constant matrix-vector multiplication
(CMVM). Instead of one shift-add tree per neuron (:func:`codesign.arch.dense.parallel`), the
whole matrix becomes one adder graph whose intermediate sums are shared between neurons
(:func:`build`):

1. **Digits.** Every weight is written in canonical signed digits (non-adjacent form), so column j
   is a list of terms ``±(x_i << k)``.
2. **Common subexpressions** (Hartley's method, as in da4ml, arXiv:2507.04535). A *pattern* is a
   pair of terms in the same column up to a common shift and sign: ``s1 ± (s2 << d)``. The most
   frequent pattern over all columns (``select="count"``; ``"cost"``: the one saving the most
   adder bits, count weighted by the bits its two terms overlap; ties: the shallowest, then the
   lowest key) becomes a new signal, every non-overlapping occurrence is replaced by one term of it, the pair counts are
   updated incrementally, and this repeats while some pattern occurs at least twice. New signals
   take part in later patterns, so sums of sums are shared as well. ``max_depth`` optionally caps
   the adder depth of a shared signal.
3. **Per-output trees.** The terms left in a column are summed in a tree that always combines
   the two earliest-arriving terms (delay-optimal for given arrival times; Huffman-style; arrival
   times from :mod:`codesign.arch.adder_timing`).

Every adder's width comes from the *exact* value range of its result: each signal is a linear form
``sum c_i x_i`` of independent inputs, so its range is ``sum min/max(c_i*lo_i, c_i*hi_i)``. The
``d`` low bits of ``a + (b << d)`` are a's bits and bypass the adder, which only spans the upper
bits.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from codesign.arch.adder_timing import adder_delay
from codesign.arch.csd import csd
from codesign.arch.netlist import signed_width


@dataclass(frozen=True)
class Term:
    """``±(signal << shift)``: one summand of an output."""

    sig: int
    shift: int
    neg: bool


@dataclass(frozen=True)
class AddNode:
    """``a + (b << shift)`` (or ``a - (b << shift)`` when ``sub``); a, b are signal ids."""

    a: int
    b: int
    shift: int
    sub: bool
    lo: int  #: exact minimum of the node's value over the input box
    hi: int  #: exact maximum

    @property
    def width(self) -> int:
        return signed_width(self.lo, self.hi)

    @property
    def carry_bits(self) -> int:
        """Bits the carry chain spans: the ``shift`` low bits are a's bits and bypass it."""
        return max(self.width - self.shift, 1)


@dataclass
class AdderGraph:
    """Signals ``0 .. n_in-1`` are the inputs, signal ``n_in + k`` is ``nodes[k]``."""

    n_in: int
    in_lo: tuple[int, ...]
    in_hi: tuple[int, ...]
    nodes: list[AddNode]
    outputs: list[Term | None]  #: one per output; None: the output is 0 (all weights zero)
    shared: int = 0  #: how many nodes are shared subexpressions (the rest are tree adders)

    def range_of(self, sig: int) -> tuple[int, int]:
        if sig < self.n_in:
            return self.in_lo[sig], self.in_hi[sig]
        node = self.nodes[sig - self.n_in]
        return node.lo, node.hi

    def width_of(self, sig: int) -> int:
        return signed_width(*self.range_of(sig))

    @property
    def adders(self) -> int:
        return len(self.nodes)

    @property
    def adder_bits(self) -> int:
        """Sum of carry-chain widths: about the LUTs the adders cost."""
        return sum(n.carry_bits for n in self.nodes)

    def depth(self) -> int:
        """Adder levels on the longest input -> output path."""
        d = [0] * self.n_in
        for n in self.nodes:
            d.append(max(d[n.a], d[n.b]) + 1)
        return max((d[t.sig] for t in self.outputs if t is not None), default=0)

    def signal_values(self, x: np.ndarray) -> list[np.ndarray]:
        """Every signal's value (inputs, then nodes) for input codes ``x`` (N x n_in)."""
        x = np.asarray(x, dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"expected N x {self.n_in} inputs, got shape {x.shape}")
        vals = [x[:, i] for i in range(self.n_in)]
        for n in self.nodes:
            b = vals[n.b] << n.shift
            vals.append(vals[n.a] - b if n.sub else vals[n.a] + b)
        return vals

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Outputs (N x n_out, int64) for input codes ``x`` (N x n_in), exactly as the hardware adds."""
        vals = self.signal_values(x)
        out = np.zeros((len(vals[0]) if vals else 0, len(self.outputs)), dtype=np.int64)
        for j, t in enumerate(self.outputs):
            if t is not None:
                v = vals[t.sig] << t.shift
                out[:, j] = -v if t.neg else v
        return out


# ----------------------------------------------------------------------------- construction

#: Keys below this are computed in numpy (int64); larger ones (a giant layer) in Python ints.
_VEC_KEY_LIMIT = 1 << 62

_Key = tuple[int, int, int, int]  # (s1, s2, d, g): s1 + g * (s2 << d), or (s1 << -d) + g * s2


class _Builder:
    """Mutable state of the CSE search: signals with exact linear forms, columns of terms."""

    def __init__(self, weights: np.ndarray, in_lo: Sequence[int], in_hi: Sequence[int]) -> None:
        self.n_in, self.n_out = weights.shape
        self.in_lo, self.in_hi = tuple(int(v) for v in in_lo), tuple(int(v) for v in in_hi)
        if len(self.in_lo) != self.n_in or len(self.in_hi) != self.n_in:
            raise ValueError(f"{self.n_in} inputs but {len(self.in_lo)} / {len(self.in_hi)} input bounds")
        self.coef: list[dict[int, int]] = [{i: 1} for i in range(self.n_in)]  # sparse linear forms
        self.lo: list[int] = list(self.in_lo)
        self.hi: list[int] = list(self.in_hi)
        self.depth: list[int] = [0] * self.n_in
        self.time: list[float] = [0.0] * self.n_in
        self.nodes: list[AddNode] = []
        # column j: signal -> {shift: sign}
        self.cols: list[dict[int, dict[int, int]]] = [{} for _ in range(self.n_out)]
        self.sig_cols: dict[int, set[int]] = {}
        for j in range(self.n_out):
            for i in range(self.n_in):
                for shift, sign in csd(int(weights[i, j])):
                    self._add_term(j, i, shift, sign)

    # -- signals
    def new_node(self, a: int, b: int, shift: int, sub: bool) -> int:
        g = -1 if sub else 1
        coef = dict(self.coef[a])
        for i, c in self.coef[b].items():
            coef[i] = coef.get(i, 0) + g * (c << shift)
        coef = {i: c for i, c in coef.items() if c}
        lo = sum(min(c * self.in_lo[i], c * self.in_hi[i]) for i, c in coef.items())
        hi = sum(max(c * self.in_lo[i], c * self.in_hi[i]) for i, c in coef.items())
        if max(abs(lo), abs(hi)) >= 1 << 62:
            raise ValueError("adder graph values exceed 62 bits")
        node = AddNode(a, b, shift, sub, lo, hi)
        sig = self.n_in + len(self.nodes)
        self.nodes.append(node)
        self.coef.append(coef)
        self.lo.append(lo)
        self.hi.append(hi)
        self.depth.append(max(self.depth[a], self.depth[b]) + 1)
        self.time.append(max(self.time[a], self.time[b]) + adder_delay(node.carry_bits))
        return sig

    # -- columns
    def _add_term(self, j: int, sig: int, shift: int, sign: int) -> None:
        col = self.cols[j].setdefault(sig, {})
        assert shift not in col, "duplicate term"
        col[shift] = sign
        self.sig_cols.setdefault(sig, set()).add(j)

    def _remove_term(self, j: int, sig: int, shift: int) -> None:
        col = self.cols[j][sig]
        del col[shift]
        if not col:
            del self.cols[j][sig]
            self.sig_cols[sig].discard(j)

    def terms(self, j: int) -> list[tuple[int, int, int]]:
        return [(s, k, g) for s, ks in sorted(self.cols[j].items()) for k, g in sorted(ks.items())]


def _key(t1: tuple[int, int, int], t2: tuple[int, int, int]) -> tuple[_Key, int] | None:
    """The pattern of two terms and the sign of its occurrence (``sign * (pattern << min shift)``)."""
    (s1, k1, g1), (s2, k2, g2) = t1, t2
    if (s1, k1) > (s2, k2):
        (s1, k1, g1), (s2, k2, g2) = (s2, k2, g2), (s1, k1, g1)
    if s1 == s2 and k1 == k2:
        return None
    return (s1, s2, k2 - k1, g1 * g2), g1


def _pattern_node(b: _Builder, key: _Key) -> tuple[int, int]:
    """Create the signal of a pattern; return (signal, sign) so that pattern = sign * signal."""
    s1, s2, d, g = key
    if d >= 0:
        return b.new_node(s1, s2, d, g < 0), 1
    if g > 0:  # (s1 << e) + s2 = s2 + (s1 << e)
        return b.new_node(s2, s1, -d, False), 1
    # (s1 << e) - s2 = -(s2 - (s1 << e)): keep the unshifted operand positive
    return b.new_node(s2, s1, -d, True), -1


def _overlap(b: _Builder, key: _Key) -> int:
    """Bits where the two terms of a pattern overlap: about the LUTs of its adder."""
    s1, s2, d, _ = key
    w1, w2 = (max(abs(b.lo[s]), abs(b.hi[s])).bit_length() for s in (s1, s2))
    lo1, lo2 = (0, d) if d >= 0 else (-d, 0)
    return max(0, min(lo1 + w1, lo2 + w2) - max(lo1, lo2))


#: Pattern scores of the cost-aware selections: (count, overlap bits, shift difference) -> score.
_SCORES = {
    "cost": lambda c, ov, d: (c - 1) * ov - c,  # bits saved: one adder instead of c, each a bit wider
    "cost-overlap": lambda c, ov, d: (c - 1) * ov,
    "cost-count": lambda c, ov, d: c * ov,
    "cost-shift": lambda c, ov, d: 4 * (c - 1) * ov - c * abs(d),  # prefer close digits
}


def _cse(b: _Builder, max_depth: int | None, select: str = "count") -> int:
    """Hartley-style common-subexpression elimination over all columns; returns nodes created.

    ``select``: "count" takes the most frequent pattern; "cost" the one that saves the most adder
    bits, ``(count - 1) * overlap - count`` (one adder of the pattern's overlap instead of
    ``count`` tree adders of about that overlap each, the pattern's terms being a bit wider); the
    other ``_SCORES`` are variants of it.

    Each step takes the pattern with the highest score, then the lowest ``prio`` (the deeper of
    its two signals), then the lowest key ``(s1, s2, d, g)``. The pair counts are exact and
    updated locally (a replaced pair's terms against the rest of its column); the priority queue
    holds at most one live entry per pattern, whose score is never below the pattern's current
    one (a score only rises with the count: a queued score above the current one is re-queued
    when it surfaces). Keys and queue entries are packed into integers so the inner loops hash
    and compare ints instead of tuples: same selections, same graph as the straightforward form
    of the search (tests/test_adder_build_fast.py keeps that form as the reference).
    """
    if select != "count" and select not in _SCORES:
        raise ValueError(f"select must be 'count' or one of {sorted(_SCORES)}, got {select!r}")
    fn = None if select == "count" else _SCORES[select]
    n_terms = sum(len(ks) for col in b.cols for ks in col.values())
    if n_terms < 2:
        return 0
    ms = max(k for col in b.cols for ks in col.values() for k in ks)  # new terms' shifts never exceed it
    nd = 2 * ms + 1  # d = k2 - k1 in [-ms, ms]
    ns = len(b.lo) + n_terms  # every node created here replaces >= 2 terms by 1: fewer than n_terms nodes
    # key = ((s1 * ns + s2) * nd + d + ms) * 2 + (g > 0) = s1 * S1 + s2 * S2 + (d + ms) * 2 + (g > 0):
    # ordered as the tuple (s1, s2, d, g)
    S2 = nd * 2
    S1 = ns * S2
    kbits = (ns * S1).bit_length()
    kmask = (1 << kbits) - 1
    pbits = ns.bit_length()  # prio (an adder depth) < ns
    pmask = (1 << pbits) - 1
    sbits = kbits + pbits
    depth = b.depth
    no_cap = max_depth is None
    cap = 0 if max_depth is None else max_depth
    counts: dict[int, int] = {}
    cget = counts.get
    live: dict[int, int] = {}  # key -> score of its one live queue entry
    lget = live.get
    ovd: dict[int, tuple[int, int]] = {}  # key -> (overlap bits, d) for the cost scores
    wb: list[int] = []  # signal -> bits of its largest magnitude (signals' ranges never change)
    heap: list[int] = []  # entries ((-score << pbits) + prio << kbits) + key: ordered as (-score, prio, key)
    push = heapq.heappush

    def unpack(key: int) -> tuple[int, int, int, int]:
        r, gb = key >> 1, key & 1
        r, dd = divmod(r, nd)
        s1, s2 = divmod(r, ns)
        return s1, s2, dd - ms, 1 if gb else -1

    def score(key: int, c: int) -> int:
        """The pattern's score at count c (the cost selections: from its overlap, cached)."""
        if fn is None:
            return c
        od = ovd.get(key)
        if od is None:  # _overlap, with the signals' magnitude bits cached
            s1, s2, d, _ = unpack(key)
            while len(wb) <= max(s1, s2):
                wb.append(max(abs(b.lo[len(wb)]), abs(b.hi[len(wb)])).bit_length())
            w1, w2 = wb[s1], wb[s2]
            o = min(w1, d + w2) - d if d >= 0 else min(w1 - d, w2) + d
            od = ovd[key] = (o if o > 0 else 0, d)
        return int(fn(c, od[0], od[1]))

    def queue(key: int, c: int, p: int) -> None:
        """The count of ``key`` rose to c >= 2: queue it unless its live entry's score covers it."""
        if no_cap or p < cap:
            sc = c if fn is None else score(key, c)
            if sc > 0 and sc > lget(key, 0):
                live[key] = sc
                push(heap, (((-sc) << pbits) + p << kbits) + key)

    # every column's live terms also as arrays (swap-removal; a column never grows): the pairs of a
    # replaced occurrence's terms with the rest of its column are keyed in numpy when keys fit int64
    vec = ns * S1 < _VEC_KEY_LIMIT
    colv: list[tuple[np.ndarray, np.ndarray, np.ndarray, dict[tuple[int, int], int], list[int]]] = []
    depth_v = np.zeros(ns, dtype=np.int64)
    # initial pair counts, every column's terms sorted by (signal, shift)
    for j in range(b.n_out):
        ts = b.terms(j)
        if vec:
            arr = np.array(ts, dtype=np.int64).reshape(-1, 3)
            colv.append((arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy(),
                         {(t[0], t[1]): x for x, t in enumerate(ts)}, [len(ts)]))
        for x, (sx, kx, gx) in enumerate(ts):
            base = sx * S1 - kx * 2 + ms * 2
            for sy, ky, gy in ts[x + 1:]:
                kk = base + sy * S2 + ky * 2 + (gx == gy)
                counts[kk] = cget(kk, 0) + 1
    for kk, c in counts.items():
        if c >= 2:
            s1, s2, _, _ = unpack(kk)
            p = max(depth[s1], depth[s2])
            if no_cap or p < cap:
                sc = c if fn is None else score(kk, c)
                if sc > 0:
                    live[kk] = sc
                    heap.append((((-sc) << pbits) + p << kbits) + kk)
    heapq.heapify(heap)

    def rel(sa: int, ka: int, us: int) -> tuple[int, int] | None:
        """(base, m) with key(term (sa, ka, g), term (us, uk, ug)) = base + m * uk + (g == ug)
        for every shift uk of signal us (None: it depends on uk: us is sa)."""
        if us > sa:
            return sa * S1 + us * S2 + (ms - ka) * 2, 2
        if us < sa:
            return us * S1 + sa * S2 + (ms + ka) * 2, -2
        return None

    def key_of(sa: int, ka: int, ga: int, us: int, uk: int, ug: int) -> int:
        if (sa, ka) < (us, uk):
            return sa * S1 + us * S2 + (uk - ka + ms) * 2 + (ga == ug)
        return us * S1 + sa * S2 + (ka - uk + ms) * 2 + (ga == ug)

    created = 0
    while heap:
        e = heapq.heappop(heap)
        key = e & kmask
        pushed = -(e >> sbits)
        if lget(key) != pushed:  # superseded by an entry of a higher score
            continue
        c = cget(key, 0)
        sc = c if fn is None else score(key, c)
        if c < 2 or sc <= 0:
            del live[key]
            continue
        if sc != pushed:  # stale (counts dropped since): re-queue with the current score
            live[key] = sc
            push(heap, (((-sc) << pbits) + ((e >> kbits) & pmask) << kbits) + key)
            continue
        del live[key]
        s1, s2, d, g = unpack(key)
        sig: int | None = None
        sig_sign = 1
        for j in sorted(b.sig_cols.get(s1, ())):
            if s2 not in b.cols[j]:
                continue
            for k1 in sorted(b.cols[j].get(s1, {})):
                col = b.cols[j]
                k2 = k1 + d
                if s1 not in col or k1 not in col[s1] or s2 not in col or k2 not in col[s2]:
                    continue
                if (s1, k1) == (s2, k2) or col[s1][k1] * col[s2][k2] != g:
                    continue
                g1, g2 = col[s1][k1], col[s2][k2]
                if sig is None:
                    sig, sig_sign = _pattern_node(b, (s1, s2, d, g))
                    if vec:
                        depth_v[sig] = depth[sig]
                    created += 1
                b._remove_term(j, s1, k1)
                b._remove_term(j, s2, k2)
                counts[key] -= 1
                nk, ng = min(k1, k2), g1 * sig_sign
                dsig = depth[sig]
                if vec:
                    _replace_vec(colv[j], (s1, k1, g1), (s2, k2, g2), (sig, nk, ng), counts, queue, depth_v, dsig,
                                 S1, S2, ms)
                    b._add_term(j, sig, nk, ng)
                    continue
                # the removed terms' pairs with the rest of the column go, the new term's come
                for us, ks in col.items():
                    ra, rb, rn = rel(s1, k1, us), rel(s2, k2, us), rel(sig, nk, us)
                    p = dsig if dsig >= depth[us] else depth[us]
                    if ra is None or rb is None or rn is None:  # us is one of the pattern's signals
                        for uk, ug in ks.items():
                            counts[key_of(s1, k1, g1, us, uk, ug)] -= 1
                            counts[key_of(s2, k2, g2, us, uk, ug)] -= 1
                            if us == sig and uk == nk:
                                continue
                            kk = key_of(sig, nk, ng, us, uk, ug)
                            c = cget(kk, 0) + 1
                            counts[kk] = c
                            if c >= 2:
                                queue(kk, c, p)
                        continue
                    ba, ma = ra
                    bb, mb = rb
                    bn, mn = rn
                    for uk, ug in ks.items():
                        kk = ba + ma * uk + (ug == g1)
                        counts[kk] -= 1
                        kk = bb + mb * uk + (ug == g2)
                        counts[kk] -= 1
                        kk = bn + mn * uk + (ug == ng)
                        c = cget(kk, 0) + 1
                        counts[kk] = c
                        if c >= 2:
                            queue(kk, c, p)
                b._add_term(j, sig, nk, ng)
    return created


def _replace_vec(cv: tuple[np.ndarray, np.ndarray, np.ndarray, dict[tuple[int, int], int], list[int]],
                 ta: tuple[int, int, int], tb: tuple[int, int, int], tn: tuple[int, int, int],
                 counts: dict[int, int], queue: Callable[[int, int, int], None], depth_v: np.ndarray, dsig: int,
                 S1: int, S2: int, ms: int) -> None:
    """One occurrence replaced in a column (arrays ``cv``): terms ``ta``, ``tb`` leave, ``tn`` comes;
    the pair counts of ``ta``/``tb`` with the rest drop, those of ``tn`` with the rest rise (keys as
    in :func:`_cse`, computed for the whole column at once)."""
    S, K, G, pos, size = cv
    for s_, k_, _ in (ta, tb):  # swap-remove
        i = pos.pop((s_, k_))
        last = size[0] - 1
        if i != last:
            S[i], K[i], G[i] = S[last], K[last], G[last]
            pos[(int(S[i]), int(K[i]))] = i
        size[0] = last
    n = size[0]
    Sv, Kv, Gv = S[:n], K[:n], G[:n]
    s1v, s2v, k2v = Sv * S1, Sv * S2, Kv * 2

    def keys(t: tuple[int, int, int]) -> np.ndarray:
        sa, ka, ga = t
        after = (Sv > sa) | ((Sv == sa) & (Kv > ka))  # the column's term sorts after t
        return np.where(after, s2v + k2v + (sa * S1 + (ms - ka) * 2), s1v - k2v + (sa * S2 + (ms + ka) * 2)) + (Gv == ga)

    for kk in np.concatenate((keys(ta), keys(tb))).tolist():
        counts[kk] -= 1
    cget = counts.get
    for kk, p in zip(keys(tn).tolist(), np.maximum(depth_v[Sv], dsig).tolist()):
        c = cget(kk, 0) + 1
        counts[kk] = c
        if c >= 2:
            queue(kk, c, p)
    S[n], K[n], G[n] = tn
    pos[(tn[0], tn[1])] = n
    size[0] = n + 1


def _merge(b: _Builder, t1: tuple[int, int, int], t2: tuple[int, int, int]) -> tuple[int, int, int]:
    """One adder summing two terms (signal, shift, sign); returns the sum as a term."""
    (s1, k1, g1), (s2, k2, g2) = t1, t2
    if (k1, s1) > (k2, s2):
        k1, s1, g1, k2, s2, g2 = k2, s2, g2, k1, s1, g1
    if k1 == k2 and g1 < 0 < g2:  # keep the unshifted operand positive
        s1, g1, s2, g2 = s2, g2, s1, g1
    # g1*(s1 << k1) + g2*(s2 << k2) = g1 * ((s1 + g1*g2*(s2 << (k2-k1))) << k1)
    return b.new_node(s1, s2, k2 - k1, g1 * g2 < 0), k1, g1


def _tree(b: _Builder, terms: list[tuple[int, int, int]], order: str = "time") -> Term | None:
    """Sum the terms of one column, always adding the two earliest-arriving ones."""
    if not terms:
        return None

    def prio(s: int, k: int) -> float:
        if order == "time":
            return b.time[s]
        return float((max(abs(b.lo[s]), abs(b.hi[s])) << k).bit_length())

    heap = [(prio(s, k), k, s, n, g) for n, (s, k, g) in enumerate(terms)]
    heapq.heapify(heap)
    tie = len(terms)
    while len(heap) > 1:
        _, k1, s1, _, g1 = heapq.heappop(heap)
        _, k2, s2, _, g2 = heapq.heappop(heap)
        sig, k1, g1 = _merge(b, (s1, k1, g1), (s2, k2, g2))
        heapq.heappush(heap, (prio(sig, k1), k1, sig, tie, g1))
        tie += 1
    _, k, s, _, g = heap[0]
    return Term(s, k, g < 0)


def build(weights: np.ndarray, in_lo: Sequence[int], in_hi: Sequence[int], *, cse: bool = True,
          max_depth: int | None = None, tree: str = "time", select: str = "count") -> AdderGraph:
    """The adder graph of ``y = W^T x`` for integer ``weights`` (n_in x n_out) and input bounds.

    Args:
        weights: integer weight codes, n_in x n_out.
        in_lo, in_hi: bounds of every input code (inclusive).
        cse: share subexpressions across outputs (False: plain CSD trees, for comparison).
        max_depth: shared subexpressions are at most this many adders deep (None: no limit).
    """
    weights = np.asarray(weights)
    if weights.ndim != 2:
        raise ValueError(f"weights must be n_in x n_out, got shape {weights.shape}")
    b = _Builder(weights.astype(np.int64), in_lo, in_hi)
    shared = _cse(b, max_depth, select) if cse else 0
    outputs = [_tree(b, b.terms(j), tree) for j in range(b.n_out)]
    return AdderGraph(b.n_in, b.in_lo, b.in_hi, b.nodes, outputs, shared)

