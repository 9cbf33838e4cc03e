"""The io_stream building blocks between the layers' datapaths: the line-buffer window generator
(convolutions and pooling), the gather in front of a Dense that reads a whole image, nearest-neighbour
upsampling, and the FIFO between two layers (its depth from :func:`codesign.arch.stream_timing.size_fifos`).

Each returns its Verilog and the handshake the streaming top's cycle model
(:mod:`codesign.arch.stream_timing`) steps.
"""

from __future__ import annotations

from typing import Any

import jinja2

from codesign.errors import RtlGenError
from codesign.graph import Geometry


def _bits(n: int) -> int:
    """Width of a counter holding 0 .. n."""
    return max(1, n.bit_length())


def window_params(g: Geometry) -> dict[str, Any]:
    """The padded raster the generator walks and its window; checks it yields the layer's outputs."""
    hp, wp = g.in_h + g.pad_top + g.pad_bottom, g.in_w + g.pad_left + g.pad_right
    p = {"hp": hp, "wp": wp, "pt": g.pad_top, "pl": g.pad_left, "h": g.in_h, "w": g.in_w, "kh": g.k_h,
         "kw": g.k_w, "sh": g.stride_h, "sw": g.stride_w}
    if (hp - g.k_h) // g.stride_h + 1 != g.out_h or (wp - g.k_w) // g.stride_w + 1 != g.out_w:
        raise RtlGenError(f"window {g.k_h}x{g.k_w} stride {g.stride_h}x{g.stride_w} over the padded "
                          f"{hp}x{wp} image does not give the layer's {g.out_h}x{g.out_w} outputs")
    return p


def _and(terms: list[str]) -> str:
    return " & ".join(f"({t})" for t in terms) if terms else "1'b1"


def window(env: jinja2.Environment, module: str, g: Geometry, elem_bits: int,
           comment: str) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """The window generator of a conv / pooling layer over ``g`` (its own padding shifted in as 0):
    Verilog, handshake, design.json fields. Latency 1, one position per cycle."""
    p = window_params(g)
    hp, wp, kh, kw, sh, sw = p["hp"], p["wp"], p["kh"], p["kw"], p["sh"], p["sw"]
    pw = g.n_chan * elem_bits
    rw, cw, shw, sww = _bits(hp - 1), _bits(wp - 1), _bits(sh - 1), _bits(sw - 1)
    inside: list[str] = []
    if hp > 1 and p["pt"] > 0:
        inside.append(f"r >= {rw}'d{p['pt']}")
    if hp > 1 and p["pt"] + p["h"] < hp:
        inside.append(f"r < {rw}'d{p['pt'] + p['h']}")
    if p["pl"] > 0:
        inside.append(f"c >= {cw}'d{p['pl']}")
    if p["pl"] + p["w"] < wp:
        inside.append(f"c < {cw}'d{p['pl'] + p['w']}")
    emit: list[str] = []
    if hp > 1 and kh > 1:
        emit.append(f"r >= {rw}'d{kh - 1}")
    if kw > 1:
        emit.append(f"c >= {cw}'d{kw - 1}")
    if sh > 1:
        emit.append(f"rph == {shw}'d0")
    if sw > 1:
        emit.append(f"cph == {sww}'d0")

    def phase_next(ph: str, pos: str, width: int, posw: int, k: int, s: int) -> str:
        wrap = f"(({ph} == {width}'d{s - 1}) ? {width}'d0 : {ph} + {width}'d1)"
        return f"({pos} < {posw}'d{k - 1}) ? {width}'d0 : {wrap}" if k > 1 else wrap

    start = p["pt"] > 0 or p["pl"] > 0  # the raster starts in padding: wait for the first pixel after reset
    reset = ["out_v <= 1'b0;", f"c <= {cw}'d0;"] + (["started <= 1'b0;"] if start else [])
    if hp > 1:
        reset.append(f"r <= {rw}'d0;")
    if sh > 1:
        reset.append(f"rph <= {shw}'d0;")
    if sw > 1:
        reset.append(f"cph <= {sww}'d0;")
    length = (kh - 1) * wp + kw
    taps = []
    for a in range(kh):
        for b in range(kw):
            t, idx = a * kw + b, (kh - 1 - a) * wp + (kw - 1 - b)
            taps.append({"out_lo": t * pw, "out_hi": (t + 1) * pw - 1, "sr_lo": idx * pw, "sr_hi": (idx + 1) * pw - 1})
    text = env.get_template("stream_window.v.j2").render(
        name=module, comment=comment, pw=pw, c=g.n_chan, out_bits=kh * kw * pw, length=length, rw=rw, cw=cw,
        shw=shw, sww=sww, interior=_and(inside), emit=_and(emit), reset=" ".join(reset),
        rph_next=phase_next("rph", "r", shw, rw, kh, sh), cph_next=phase_next("cph", "c", sww, cw, kw, sw),
        shift="pix" if length == 1 else f"{{sr[{(length - 1) * pw - 1}:0], pix}}", taps=taps, start=start, **p)
    extra = {"line_buffer_pixels": length, "line_buffer_bits": length * pw, "padded_image": [hp, wp]}
    return text, ("window", p), extra


def gather(env: jinja2.Environment, module: str, beats: int, pw: int, comment: str) -> tuple[str, tuple[Any, ...]]:
    """``beats`` stream beats of ``pw`` bits into one vector (the first beat in the low bits):
    Verilog and handshake. Latency 1 after the last beat."""
    text = env.get_template("stream_gather.v.j2").render(name=module, comment=comment, beats=beats, pw=pw,
                                                          out_bits=beats * pw, nw=_bits(beats - 1))
    return text, ("gather", beats)


def fifo(env: jinja2.Environment, module: str, depth: int, width: int, comment: str) -> tuple[str, tuple[Any, ...]]:
    """A FIFO of ``depth`` words of ``width`` bits between two layers: Verilog and handshake.
    Latency 1 (a word is presented the cycle after it is written)."""
    if depth < 1:
        raise RtlGenError(f"{module}: a FIFO needs a depth of at least 1, not {depth}")
    text = env.get_template("stream_fifo.v.j2").render(name=module, comment=comment, depth=depth, width=width,
                                                        aw=_bits(depth - 1), cw=_bits(depth))
    return text, ("fifo", depth)


def upsample(env: jinja2.Environment, module: str, w: int, rw: int, rh: int, pw: int,
             comment: str) -> tuple[str, tuple[Any, ...]]:
    """Nearest-neighbour upsampling of rows of ``w`` pixels (``pw`` bits) by ``rw`` across and ``rh``
    down, hls4ml's ``resize_nearest`` order: Verilog and handshake. Latency 1, one pixel per cycle."""
    lw, jw, hw = _bits(w - 1), _bits(rw - 1), _bits(rh - 1)
    fresh = ([f"ph == {hw}'d0"] if rh > 1 else []) + ([f"j == {jw}'d0"] if rw > 1 else [])
    fresh_expr = _and(fresh)
    source = "in_data" if rh == 1 else f"(ph == {hw}'d0) ? in_data : row[l]"
    text = env.get_template("stream_upsample.v.j2").render(
        name=module, comment=comment, w=w, rw=rw, rh=rh, pw=pw, lw=lw, jw=jw, hw=hw, fresh=fresh_expr, source=source)
    return text, ("upsample", w, rw, rh)
