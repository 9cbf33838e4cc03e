"""The fast common-subexpression search (codesign.arch.adder_build._cse) builds the same graphs as
its straightforward form, kept here as the reference: the form the RTL lock was written with.

The fast one packs pattern keys into integers, keeps one live queue entry per pattern and updates the
pair counts of a replaced occurrence in numpy; none of that may change a selection, a tie-break or a
node. Compared node for node on random matrices (wide weights, pruning, repeated columns), every
pattern score and depth cap, and on the Python-int path taken when keys do not fit int64.
"""

from __future__ import annotations

import heapq

import numpy as np
import pytest

from codesign.arch import adder_build
from conftest import random_weight_matrix
from codesign.arch.adder_build import _Key


def _key(t1: tuple[int, int, int], t2: tuple[int, int, int]) -> tuple[_Key, int] | None:
    """The pattern of two terms and the sign of its occurrence (``sign * (pattern << min shift)``)."""
    (s1, k1, g1), (s2, k2, g2) = t1, t2
    if (s1, k1) > (s2, k2):
        (s1, k1, g1), (s2, k2, g2) = (s2, k2, g2), (s1, k1, g1)
    if s1 == s2 and k1 == k2:
        return None
    return (s1, s2, k2 - k1, g1 * g2), g1


def _cse_reference(b: adder_build._Builder, max_depth: int | None, select: str = "count") -> int:
    """Hartley-style common-subexpression elimination over all columns; returns nodes created.

    ``select``: "count" takes the most frequent pattern; "cost" the one that saves the most adder
    bits, ``(count - 1) * overlap - count`` (one adder of the pattern's overlap instead of
    ``count`` tree adders of about that overlap each, the pattern's terms being a bit wider); the
    other ``adder_build._SCORES`` are variants of it.
    """
    if select != "count" and select not in adder_build._SCORES:
        raise ValueError(f"select must be 'count' or one of {sorted(adder_build._SCORES)}, got {select!r}")
    counts: dict[_Key, int] = {}
    heap: list[tuple[int, int, _Key]] = []
    ov: dict[_Key, int] = {}

    def prio(key: _Key) -> int:
        return max(b.depth[key[0]], b.depth[key[1]])

    def score(key: _Key, c: int) -> int:
        if select == "count":
            return c
        if key not in ov:
            ov[key] = adder_build._overlap(b, key)
        return int(adder_build._SCORES[select](c, ov[key], key[2]))

    def bump(key: _Key, by: int) -> None:
        c = counts.get(key, 0) + by
        counts[key] = c
        if by > 0 and c >= 2 and (max_depth is None or prio(key) < max_depth) and score(key, c) > 0:
            heapq.heappush(heap, (-score(key, c), prio(key), key))

    for j in range(b.n_out):
        ts = b.terms(j)
        for x in range(len(ts)):
            for y in range(x + 1, len(ts)):
                kk = _key(ts[x], ts[y])
                if kk is not None:
                    bump(kk[0], 1)
    created = 0
    while heap:
        negc, _, key = heapq.heappop(heap)
        c = counts.get(key, 0)
        if c < 2 or score(key, c) <= 0:
            continue
        if score(key, c) != -negc:  # stale (counts only drop between pushes): re-queue with the current score
            heapq.heappush(heap, (-score(key, c), prio(key), key))
            continue
        s1, s2, d, g = key
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
                g1 = col[s1][k1]
                if sig is None:
                    sig, sig_sign = adder_build._pattern_node(b, key)
                    created += 1
                a_t, b_t = (s1, k1, g1), (s2, k2, col[s2][k2])
                b._remove_term(j, s1, k1)
                b._remove_term(j, s2, k2)
                rest = b.terms(j)
                bump(key, -1)
                for u in rest:
                    for t in (a_t, b_t):
                        kk = _key(t, u)
                        if kk is not None:
                            bump(kk[0], -1)
                new_t = (sig, min(k1, k2), g1 * sig_sign)
                b._add_term(j, *new_t)
                for u in rest:
                    kk = _key(new_t, u)
                    if kk is not None:
                        bump(kk[0], 1)
    return created


def _case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return random_weight_matrix(seed, dim_below=24, bits_below=13)


def _flat(g: adder_build.AdderGraph) -> tuple[list[adder_build.AddNode], list[adder_build.Term | None], int]:
    return list(g.nodes), list(g.outputs), g.shared


def _both(monkeypatch: pytest.MonkeyPatch, w: np.ndarray, lo: np.ndarray, hi: np.ndarray, **kw: object) -> None:
    fast = adder_build.build(w, lo, hi, **kw)
    with monkeypatch.context() as m:
        m.setattr(adder_build, "_cse", _cse_reference)
        ref = adder_build.build(w, lo, hi, **kw)
    assert fast.nodes, "a case without shared or tree adders tests nothing"
    assert _flat(fast) == _flat(ref)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("select", ["count", "cost", "cost-overlap", "cost-count", "cost-shift"])
def test_same_graph_as_the_reference(monkeypatch: pytest.MonkeyPatch, seed: int, select: str) -> None:
    w, lo, hi = _case(seed)
    if not np.any(w):
        w[0, 0] = 5
    for max_depth in (None, 2):
        _both(monkeypatch, w, lo, hi, select=select, max_depth=max_depth)


@pytest.mark.parametrize("select", ["count", "cost"])
def test_python_int_keys_give_the_same_graph(monkeypatch: pytest.MonkeyPatch, select: str) -> None:
    """Keys too large for int64 take the pure-Python path: same graph too."""
    monkeypatch.setattr(adder_build, "_VEC_KEY_LIMIT", 0)
    for seed in range(2):
        w, lo, hi = _case(100 + seed)
        if not np.any(w):
            w[0, 0] = 5
        _both(monkeypatch, w, lo, hi, select=select)


def test_wide_float_like_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 16-bit layer (float weights at hls4ml's default fixed<16,6>): long columns, many patterns."""
    rng = np.random.default_rng(15)
    w = np.round(rng.normal(0, 0.3, size=(16, 8)) * 1024).astype(np.int64)
    for select in ("count", "cost"):
        _both(monkeypatch, w, [-(1 << 15)] * 16, [(1 << 15) - 1] * 16, select=select)
