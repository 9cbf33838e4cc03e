"""Dense: hls4ml's ``dense_latency`` / ``dense_resource`` (``nnet_dense_*.h``).

Golden model: every product ``x*w`` is exact (or hls4ml's power-of-two shift), then converted to
accum_t; the accumulator starts at ``(accum_t)bias`` and adds the products in accum_t, input by
input; the result is ``(result_t)acc``.

RTL (``codesign.arch``): RF 1 as a shared constant-coefficient adder graph (or, where products
round or are shifts, parallel trees; a sequential chain where a saturating accumulator makes the
order matter); RF > 1 folded, one vector every RF cycles, by the architecture the cost model of
:mod:`codesign.arch.fold` picks (digit-serial adder graph, input-serial multipliers or multiplier
lanes; ``rtl.fold_architecture`` overrides it).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import jinja2
import numpy as np

from codesign.arch import adder_graph, digit_serial, fold, input_serial
from codesign.arch import stream as stream_arch
from codesign.arch import dense as dense_arch
from codesign.arch.dense import DenseCost
from codesign.arch.netlist import FusedActivation, Module
from codesign.errors import RtlGenError
from codesign.fixedpoint import cast, po2_products
from codesign.graph import Layer
from codesign.layers import extract
from codesign.layers.base import LayerKind, Rendered, RenderOptions, Upstream, module_header


def golden_dense(layer: Layer, x: np.ndarray) -> np.ndarray:
    """hls4ml's dense arithmetic on N x n_in codes (also a conv's, through its Dense equivalent)."""
    assert layer.weights is not None and layer.bias is not None and layer.accum_type is not None
    acc_t = layer.accum_type
    po2 = layer.product == "po2"
    prod_frac = layer.product_type.frac if po2 and layer.product_type else layer.in_type.frac + layer.weight_frac
    acc = np.broadcast_to(cast(layer.bias, layer.bias_frac, acc_t), (len(x), layer.n_out)).copy()
    wrap = acc_t.overflow == "WRAP"
    for i in range(layer.n_in):  # hls4ml's order: input by input, all outputs
        if po2:
            assert layer.product_type is not None
            raw = po2_products(x[:, i : i + 1], layer.in_type, layer.weights[i], layer.weight_frac, layer.product_type)
        else:
            raw = x[:, i : i + 1] * layer.weights[i][None, :]
        acc = acc + cast(raw, prod_frac, acc_t)
        if not wrap:  # saturating accumulators depend on the order: apply after every add
            acc = cast(acc, acc_t.frac, acc_t)
    if wrap:  # modular: one wrap at the end equals a wrap after every add
        acc = cast(acc, acc_t.frac, acc_t)
    return cast(acc, acc_t.frac, layer.out_type)


def check_reuse_factor(layer: Layer, n_in: int, n_out: int, what: str = "n_in*n_out") -> None:
    if layer.reuse_factor < 1 or layer.reuse_factor > n_in * n_out:
        raise RtlGenError(f"layer {layer.name}: reuse factor {layer.reuse_factor} is outside 1..{n_in * n_out} "
                          f"({what})")


def render_products(env: jinja2.Environment, layer: Layer, module: str, opts: RenderOptions,
                    header: dict[str, Any], act: FusedActivation | None = None) -> tuple[Rendered, dict[str, Any]]:
    """The Verilog of a constant-weight product/accumulate layer (a Dense, or a conv's Dense
    equivalent), choosing the architecture; returns it and its design.json fields. ``act``: the
    next layer's activation, applied before the output registers
    (:func:`codesign.arch.dense.register_output`; the adder graph may decline it)."""
    prims: tuple[str, ...] = ("fxp_cast.v",)
    if act is not None and act.out_type.width > layer.out_type.width:
        act = None  # a wider register than the layer's own: fusing would cost flip-flops
    if layer.reuse_factor == 1 and dense_arch.needs_sequential(layer):
        m, cost = dense_arch.sequential(layer, module, act)
        extra = {"architecture": "sequential saturating", "adders": cost.adders, "pipeline_stages": m.n_stages}
    elif layer.reuse_factor == 1 or layer.nonzero_weights == 0:
        # power-of-two products are wire shifts already: nothing for an adder graph to share
        use_graph = opts.adder_graph and layer.product == "exact" and not dense_arch.needs_product_rounding(layer)
        if use_graph:  # registers placed by the delay budget of the target clock
            m, cost = adder_graph.parallel_shared(layer, module, opts.levels_per_stage, clock_ns=opts.clock_ns,
                                                  act=act, registered_inputs=opts.registered_inputs)
        else:
            m, cost = dense_arch.parallel(layer, module, opts.levels_per_stage, act)
        extra = {"architecture": "parallel", "adder_graph": use_graph, "adders": cost.adders,
                 "pipeline_stages": m.n_stages}
    else:
        m, cost, text, extra, handshake, prims = render_folded(env, layer, module, opts, header, act)
        return Rendered(module, text, cost.latency, cost.ii, cost.multipliers, True, prims, extra,
                        handshake), extra
    header, prims = fused_output(m, layer, header, extra, prims)  # the output registers hold its type
    text = env.get_template("dense_parallel.v.j2").render(m=m, n_stages=m.n_stages, **header)
    handshake = ("pipeline", m.n_stages)
    # ii is what the layer promises at full rate; latency counts clock edges input -> output.
    return Rendered(module, text, cost.latency, cost.ii, cost.multipliers, True, prims, extra,
                    handshake), extra


#: design.json's per-layer "architecture" of each folded architecture (codesign.arch.fold)
FOLD_NAMES = {"lanes": "folded", "digit_serial": "digit-serial", "input_serial": "input-serial"}


def fused_output(m: Module, layer: Layer, header: dict[str, Any], extra: dict[str, Any],
                 prims: tuple[str, ...]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Where the module's output registers hold a fused activation's type: the template header
    (output bus width, comment), ``extra["fused_activation"]`` and the primitives it uses."""
    if m.fused is None:
        return header, prims
    t = m.fused.out_type
    header = {**header, "out_bits": layer.n_out * t.width,
              "comment": f"{header['comment']}; output registers hold {m.fused.name}'s {t} "
                         f"({m.fused.primitive} fused in)"}
    extra["fused_activation"] = m.fused.name
    return header, prims + (("fxp_relu.v",) if m.fused.primitive == "fxp_relu" else ())


def render_folded(env: jinja2.Environment, layer: Layer, module: str, opts: RenderOptions,
                  header: dict[str, Any], act: FusedActivation | None = None
                  ) -> tuple[Module, DenseCost, str, dict[str, Any], tuple[Any, ...], tuple[str, ...]]:
    """Reuse factor R > 1: the architecture :func:`codesign.arch.fold.choose` picks (or
    ``opts.fold_architecture`` forces), its Verilog, design.json fields, handshake (an engine:
    R, issue cycles, pipeline depth; :mod:`codesign.arch.stream_timing`) and primitives. ``act``:
    the next layer's activation, applied before the output registers, as at reuse factor 1."""
    if layer.product != "po2":  # refuse what no folded architecture reproduces, as the lanes always did
        dense_arch.check_exact(layer, product_rounding=dense_arch.needs_product_rounding(layer))
    choice = fold.choose(layer, opts.fold_architecture, adder_graph=opts.adder_graph, clock_ns=opts.clock_ns,
                         multipliers=opts.multipliers)
    extra: dict[str, Any] = {"architecture": FOLD_NAMES[choice.arch], "fold_architecture": choice.arch}
    if choice.arch == "lanes":
        m, cost, info = dense_arch.folded(layer, module, opts.multipliers, act)
        template, params = "dense_folded.v.j2", {"R": info["R"], "lanes": info["lanes"], "tw": info["tw"]}
        extra["lanes"] = info["lanes"]
        handshake: tuple[Any, ...] = ("engine", info["R"], info["R"], 1)
    elif choice.arch == "digit_serial":
        p = choice.plans["digit_serial"]
        m, cost, s = digit_serial.build_module(layer, module, p, act)
        what = (f"digit-serial shared adder graph, {p.d}-bit input digits over {p.D} cycle(s), "
                f"{len(p.g.nodes)} adder(s), {len(p.roots)} serial accumulator(s)")
        template, params = "dense_serial.v.j2", {"s": s, "what": what}
        extra.update(digit_bits=p.d, digits=p.D, adders=len(p.g.nodes), accumulators=len(p.roots),
                     pipeline_stages=p.depth)
        handshake = ("engine", s.R, s.active, s.depth)
    else:
        q = choice.plans["input_serial"]
        m, cost, s = input_serial.build_module(layer, module, q, opts.multipliers, act)
        what = (f"input-serial multipliers, {q.k} input(s) per cycle over {q.C} cycle(s), "
                f"{cost.multipliers} multiplier(s) with cycle-indexed weight ROMs")
        template, params = "dense_serial.v.j2", {"s": s, "what": what}
        extra.update(inputs_per_cycle=q.k, cycles=q.C)
        handshake = ("engine", s.R, s.active, s.depth)
    header, prims = fused_output(m, layer, header, extra, ("fxp_cast.v",))
    text = env.get_template(template).render(m=m, **params, **header)
    # every architecture's estimate counts n_out result_t output registers; a fused activation
    # narrows them alike (so the choice stands), and the search's estimate reads these figures
    narrowed = layer.n_out * (layer.out_type.width - m.fused.out_type.width) if m.fused is not None else 0
    extra["fold_estimates"] = {a: dict(e, ff=e["ff"] - narrowed) for a, e in choice.estimates.items()}
    if opts.multipliers != "auto" and choice.arch != "digit_serial":  # absent: auto (the synthesizer maps them)
        extra["multipliers_as"] = opts.multipliers
    if choice.note:
        extra["fold_note"] = choice.note
    return m, cost, text, extra, handshake, prims


def channel_wise(layer: Layer, beats: int) -> Layer | None:
    """The one-pixel layer of a diagonal Dense (an extracted BatchNormalization) whose weights and
    biases repeat every ``n_in / beats`` elements, so hls4ml's io_stream applies it beat by beat;
    None for any other layer."""
    w, b = layer.weights, layer.bias
    if beats <= 1 or w is None or b is None or layer.n_in != layer.n_out or layer.n_in % beats:
        return None
    c = layer.n_in // beats
    d = np.diagonal(w)
    if np.count_nonzero(w - np.diag(d)) or not (np.array_equal(d, np.tile(d[:c], beats))
                                                and np.array_equal(b, np.tile(b[:c], beats))):
        return None
    return replace(layer, n_in=c, n_out=c, weights=np.diag(d[:c]), bias=b[:c].copy())


class Dense(LayerKind):
    kind = "dense"
    hls4ml_classes = ("Dense",)
    keras_classes = ("Dense", "QDense")
    keras_weight_classes = ("Dense", "QDense")
    supported = "Dense"
    streams = True

    def extract(self, hl: Any, up: Upstream) -> Layer:
        w, b = extract.kernel_and_bias(hl)
        if hl.get_attr("_weights_transposed", False):  # hls4ml's resource strategy stores W^T
            w = np.transpose(w)
        if extract.is_binary(hl):  # weight_binary: bit 0 means -1 (the product is w == 0 ? -a : a)
            w = np.where(w == 0, -1.0, 1.0)
        wc, wf = extract.grid_codes(w, f"layer {hl.name} weights")
        bc, bf = extract.grid_codes(b, f"layer {hl.name} biases")
        product, product_type = extract.product(hl, up.in_type)
        return Layer(
            name=hl.name, kind="dense", n_in=up.n_in, n_out=up.n_out, in_type=up.in_type, out_type=up.out_type,
            source=up.source, accum_type=extract.accum_type(hl), weights=wc.reshape(up.n_in, up.n_out),
            weight_frac=wf, bias=bc.reshape(up.n_out), bias_frac=bf, reuse_factor=up.reuse_factor,
            strategy=up.strategy, product=product, product_type=product_type,
        )

    def golden(self, layer: Layer, x: np.ndarray) -> np.ndarray:
        return golden_dense(layer, x)

    def render(self, env: jinja2.Environment, layer: Layer, module: str, opts: RenderOptions) -> Rendered:
        check_reuse_factor(layer, layer.n_in, layer.n_out)
        return render_products(env, layer, module, opts, module_header(layer, module))[0]

    def render_fused(self, env: jinja2.Environment, layer: Layer, module: str, opts: RenderOptions,
                     act: FusedActivation) -> Rendered | None:
        """The datapath ends in one register stage (the parallel one's last pipeline stage, a folded
        one's output register, loaded once per vector), which can as well hold the activation's
        narrow result."""
        check_reuse_factor(layer, layer.n_in, layer.n_out)
        return render_products(env, layer, module, opts, module_header(layer, module), act)[0]

    def render_stream(self, env: jinja2.Environment, layer: Layer, module: str, opts: RenderOptions,
                      beats_in: int) -> list[Rendered]:
        """hls4ml's Dense on a stream reads all its input beats, then computes: a gather (when the
        input is more than one beat), then the same module as io_parallel's. A BatchNormalization
        (a diagonal Dense whose scale and bias repeat every pixel) works beat by beat instead."""
        per_beat = channel_wise(layer, beats_in)
        if per_beat is not None:
            r = self.render(env, per_beat, module, opts)
            r.extra = {**r.extra, "architecture": f"per pixel ({r.extra['architecture']})"}
            return [r]
        stages = []
        if beats_in > 1:
            per_beat_bits = layer.n_in // beats_in * layer.in_type.width
            text, handshake = stream_arch.gather(
                env, f"{module}_gather", beats_in, per_beat_bits,
                f"layer {layer.name}: {beats_in} beats of {layer.n_in // beats_in} x {layer.in_type} -> {layer.n_in}")
            stages.append(Rendered(f"{module}_gather", text, 1, 1, 0, True, (), {}, handshake))
        return stages + [self.render(env, layer, module, opts)]

    def beats_out(self, layer: Layer, beats_in: int) -> int:
        return beats_in if channel_wise(layer, beats_in) is not None else 1

    def ii(self, layer: Layer) -> int:
        """R for a folded layer (one vector every R cycles), 1 otherwise."""
        return layer.reuse_factor if layer.reuse_factor > 1 and layer.nonzero_weights > 0 else 1

    def reuse_factor(self, layer: Layer) -> int | None:
        return layer.reuse_factor

    def stored_weights(self, layer: Layer) -> int:
        return int(layer.weights.size) if layer.weights is not None else 0


KIND = Dense()
