"""Post-training quantization (PTQ) of float Keras models, with per-layer mixed precision.

A float Keras model imported into the flow would get hls4ml's default ``fixed<16,6>`` everywhere
(37-bit accumulators on the jet-tagging MLP). With ``hls.ptq.enabled`` the convert stage asks
:func:`quantize` for per-layer types instead:

1. **Calibration.** Value ranges are traced through the float model on calibration inputs (the data
   set's training inputs, or random N(0, 1) in-range features when there is no data set, as the
   convert stage's agreement check draws them): the input, each Dense layer's weights, biases and
   pre-activation outputs, each activation's outputs.
2. **Integer bits from the ranges.** Weights, biases, results and the input get the integer bits
   their calibrated magnitude needs (results saturate, so an out-of-range value clips instead of
   wrapping). Accumulators get the integer bits of their worst case over the *input type's* range
   (max_j sum_i |w_ij| * max|x| + |b_j|), so they never overflow whatever the input, and exactly
   the fractional bits of a product (input + weight), so the accumulation itself is exact.
3. **Fractional bits searched.** One fractional bit count F for every knob is raised until the
   accuracy drop against the float model, measured with the bit-exact golden model
   (:mod:`codesign.golden`, equal to hls4ml's C-sim) on the calibration inputs, is within
   ``target_drop``. Then mixed precision: each knob's sensitivity (the drop when only it falls,
   the others held at F) is measured for the report, and a greedy descent lowers, one bit at a
   time, the knob whose fall costs the least measured accuracy, while the drop stays within target.

Knobs: the input's fractional bits, and per Dense layer its weight (and bias) fractional bits and
its result (and activation result) fractional bits. The chosen types go into ``hls.layer_precision``
and ``hls.input_precision`` of a derived configuration; the user's own ``hls.layer_precision``
entries win over the chosen ones (an explicit override is kept). Supported: chains of Dense,
Activation / ReLU (relu, linear), Dropout and Flatten-free MLPs; a QKeras model, a convolution or
other layers are refused by name.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from codesign.config import Config
from codesign.errors import ConfigError, ConversionError

#: Keras layer classes PTQ plans types for (a chain of these; softmax at the end is stripped).
PTQ_LAYERS = ("InputLayer", "Dense", "Activation", "ReLU", "Dropout")
#: Modes of the chosen types: results round (half up) and saturate; weights round to nearest.
RESULT_MODES = "RND,SAT"
WEIGHT_MODES = "RND_CONV,SAT"


# ----------------------------------------------------------------------------- the plan

@dataclass
class DenseRange:
    """Calibrated ranges of one Dense layer (and the activation after it, fused or separate)."""

    name: str  #: hls4ml / Keras name of the Dense layer
    act_name: str | None  #: hls4ml name of the activation after it (None: linear)
    weights: np.ndarray  #: float kernel n_in x n_out
    bias: np.ndarray
    pre_max: float  #: max |pre-activation| over the calibration inputs
    act_max: float  #: max activation output (relu: >= 0)
    #: hls4ml's name of the linear activation it may keep after the Dense layer (its result type
    #: would otherwise be the fixed<16,6> default, which wraps large logits)
    linear_name: str | None = None


@dataclass
class Plan:
    """What the types are derived from: the input's range and each Dense layer's ranges."""

    input_max: float
    input_signed: bool
    layers: list[DenseRange]
    knobs: list[str] = field(default_factory=list)  #: "input", "<layer>.weight", "<layer>.result"


def is_qkeras(model: Any) -> list[str]:
    """Names (and classes) of the model's QKeras layers."""
    return [f"{layer.name} ({type(layer).__name__})" for layer in model.layers
            if type(layer).__module__.startswith("qkeras") or type(layer).__name__.startswith("Q")]


def check_model(model: Any) -> None:
    """Refuse what PTQ cannot plan, naming the layer: QKeras layers, other classes, branches."""
    q = is_qkeras(model)
    if q:
        raise ConfigError(
            f"hls.ptq.enabled: the model has QKeras layers ({', '.join(q[:3])}{', ...' if len(q) > 3 else ''}); "
            "PTQ is for float Keras models (a QKeras model's types come from its quantizers)",
            hint="set hls.ptq.enabled: false for this model")
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in PTQ_LAYERS:
            raise ConfigError(f"hls.ptq.enabled: layer {layer.name!r} ({kind}) is not supported by PTQ; "
                              f"supported: {', '.join(PTQ_LAYERS)} (a chain)")
        act = getattr(layer, "activation", None)
        name = getattr(act, "__name__", "linear") if act is not None else "linear"
        if kind in ("Dense", "Activation") and name not in ("linear", "relu"):
            raise ConfigError(f"hls.ptq.enabled: layer {layer.name!r} ({kind}) has activation {name!r}; "
                              "PTQ supports relu and linear (a final softmax is stripped by hls.strip_softmax)")
        if len(getattr(layer, "_inbound_nodes", [])) > 1:
            raise ConfigError(f"hls.ptq.enabled: layer {layer.name!r} is shared; PTQ supports a chain of layers")


def _act_name(layer: Any) -> str:
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", "linear") if act is not None else "linear"


def calibrate(model: Any, x: np.ndarray) -> Plan:
    """Trace value ranges through the float (softmax-stripped) model on calibration inputs ``x``."""
    import tensorflow as tf

    check_model(model)
    body = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    probe = tf.keras.Model(model.inputs, [layer.output for layer in body])
    outs = probe.predict(x, verbose=0, batch_size=1024)
    outs = outs if isinstance(outs, list) else [outs]
    x = np.asarray(x, dtype=np.float64)
    plan = Plan(input_max=float(np.max(np.abs(x))), input_signed=bool(np.min(x) < 0), layers=[])
    prev = x
    for layer, out in zip(body, outs):
        out = np.asarray(out, dtype=np.float64)
        kind = type(layer).__name__
        if kind == "Dense":
            w, b = (np.asarray(v, dtype=np.float64) for v in layer.get_weights())
            pre = prev @ w + b
            act = _act_name(layer)
            plan.layers.append(DenseRange(layer.name, f"{layer.name}_{act}" if act == "relu" else None, w, b,
                                          float(np.max(np.abs(pre))), float(np.max(out))))
        elif kind in ("Activation", "ReLU") and plan.layers and (kind == "ReLU" or _act_name(layer) == "relu"):
            last = plan.layers[-1]
            if last.act_name is not None:
                raise ConfigError(f"hls.ptq.enabled: layer {layer.name!r} follows an activation; "
                                  "PTQ supports one activation after each Dense layer")
            last.act_name, last.act_max = layer.name, float(np.max(out))
        prev = out
    if not plan.layers:
        raise ConfigError("hls.ptq.enabled: the model has no Dense layer to quantize")
    plan.knobs = ["input"] + [f"{d.name}.{k}" for d in plan.layers for k in ("weight", "result")]
    return plan


# ----------------------------------------------------------------------------- types

def integer_bits(max_abs: float, signed: bool) -> int:
    """Integer bits (with the sign bit when signed) that hold magnitudes up to ``max_abs``: at least
    1 signed, 0 unsigned (a fractional type keeps its binary point at the top)."""
    mag = math.floor(math.log2(max_abs)) + 1 if max_abs > 0 else 0
    return max(mag, 0) + (1 if signed else 0)


def _fixed(integer: int, frac: int, signed: bool, modes: str = "") -> str:
    kind = "fixed" if signed else "ufixed"
    return f"{kind}<{integer + frac},{integer}{',' + modes if modes else ''}>"


def types_for(plan: Plan, frac: dict[str, int]) -> tuple[str, dict[str, dict[str, str]]]:
    """(input precision, hls.layer_precision) for fractional bits ``frac`` per knob."""
    f_in = frac["input"]
    i_in = integer_bits(plan.input_max, plan.input_signed)
    input_prec = _fixed(i_in, f_in, plan.input_signed)
    cur_max = 2.0 ** (i_in - (1 if plan.input_signed else 0))  # largest magnitude of the input type
    cur_frac = f_in
    precs: dict[str, dict[str, str]] = {}
    for d in plan.layers:
        fw, fr = frac[f"{d.name}.weight"], frac[f"{d.name}.result"]
        iw = integer_bits(float(np.max(np.abs(d.weights))), True)
        ib = integer_bits(float(np.max(np.abs(d.bias))), True)
        fb = min(fw, cur_frac + fw)  # the bias is cast to the accumulator: no more bits than it has
        # worst case over the input type's range; +1 ulp per weight/bias covers rounding up
        bound = float(np.max(np.sum(np.abs(d.weights) + 2.0 ** -fw, axis=0) * cur_max
                             + np.abs(d.bias) + 2.0 ** -fb))
        ia, fa = integer_bits(bound, True), cur_frac + fw
        ir = integer_bits(d.pre_max, True)
        precs[d.name] = {"weight": _fixed(iw, fw, True, WEIGHT_MODES), "bias": _fixed(ib, fb, True, WEIGHT_MODES),
                         "accum": _fixed(ia, fa, True), "result": _fixed(ir, fr, True, RESULT_MODES)}
        cur_max, cur_frac = 2.0 ** (ir - 1), fr
        if d.act_name is None and d.linear_name is not None:
            precs[d.linear_name] = {"result": precs[d.name]["result"]}
        if d.act_name is not None:
            ia_ = integer_bits(d.act_max, False)
            precs[d.act_name] = {"result": _fixed(ia_, fr, False, RESULT_MODES)}
            cur_max = 2.0 ** ia_
    return input_prec, precs


def _bits_summary(input_prec: str, precs: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Widths of every chosen type, per layer (for the report and the plots)."""
    from codesign.fixedpoint import parse_precision

    out: dict[str, Any] = {"input": {"type": input_prec, "width": parse_precision(input_prec).width}}
    for name, p in precs.items():
        out[name] = {k: {"type": v, "width": parse_precision(v).width} for k, v in p.items()}
    return out


# ----------------------------------------------------------------------------- measuring

@dataclass(frozen=True)
class Hls4mlSteps:
    """The convert stage's functions PTQ runs, handed in by :func:`codesign.convert.post_training_quantization`
    (the convert stage calls this module, so this module does not import it back)."""

    convert_model: Callable[..., Any]  #: codesign.convert.convert_model
    on_grid_inputs: Callable[..., np.ndarray]  #: codesign.convert.on_grid_inputs
    strip_softmax: Callable[..., Any]  #: codesign.convert.strip_softmax


class Evaluator:
    """Accuracy of the quantized model for given knob values: hls4ml converts it (no C++ compile),
    the hardware IR is extracted and the integer golden model (bit-exact with the C-sim) runs."""

    def __init__(self, cfg: Config, model: Any, plan: Plan, x: np.ndarray, labels: np.ndarray,
                 reference: np.ndarray, steps: Hls4mlSteps):
        self.steps = steps
        self.cfg, self.model, self.plan, self.x, self.labels = cfg, model, plan, x, labels
        self.reference = reference  # float logits, for the output error
        self.float_accuracy = float(np.mean(reference.argmax(1) == labels))
        self.cache: dict[tuple[int, ...], dict[str, float]] = {}

    def config(self, frac: dict[str, int]) -> Config:
        input_prec, precs = types_for(self.plan, frac)
        h = self.cfg.hls
        for name, user in h.layer_precision.items():  # the user's explicit overrides win
            precs.setdefault(name, {}).update(user)
        changes: dict[str, Any] = {"hls.layer_precision": precs}
        if h.input_precision == "auto":
            changes["hls.input_precision"] = input_prec
        return self.cfg.replace(**changes)

    def __call__(self, frac: dict[str, int]) -> dict[str, float]:
        key = tuple(frac[k] for k in self.plan.knobs)
        if key not in self.cache:
            self.cache[key] = self._measure(frac)
        return self.cache[key]

    def _measure(self, frac: dict[str, int]) -> dict[str, float]:
        from codesign import golden
        from codesign.layers import from_hls4ml

        with tempfile.TemporaryDirectory(prefix="codesign_ptq_") as tmp:
            hls_model, _, stripped = self.steps.convert_model(self.config(frac), self.model, Path(tmp) / "hls",
                                                              compile=False)
            graph = from_hls4ml(hls_model, softmax_stripped=stripped)
        out = graph.output_type.to_real(golden.predict(graph, self.steps.on_grid_inputs(graph, self.x)))
        acc = float(np.mean(out.argmax(1) == self.labels))
        err = out - self.reference
        rel = float(np.sqrt(np.mean(err ** 2)) / max(np.sqrt(np.mean(self.reference ** 2)), 1e-30))
        return {"accuracy": acc, "drop": self.float_accuracy - acc, "output_rel_rms_error": rel}


# ----------------------------------------------------------------------------- the search

def calibration_set(cfg: Config, model: Any, x_train: np.ndarray | None,
                    y_train: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(inputs, labels, what) for calibration: training inputs with their labels, or random N(0, 1)
    features labelled by the float model's argmax (accuracy then means agreement with it)."""
    p = cfg.hls.ptq
    rng = np.random.default_rng(p.seed)
    if x_train is not None and y_train is not None and len(x_train):
        idx = rng.permutation(len(x_train))[: p.calibration_samples]
        return (np.asarray(x_train, dtype=np.float64)[idx], np.asarray(y_train)[idx],
                f"{min(p.calibration_samples, len(x_train))} training samples")
    n_in = int(np.prod(model.inputs[0].shape[1:]))
    x = rng.standard_normal((p.calibration_samples, n_in))
    logits = model.predict(x, verbose=0, batch_size=1024)
    return x, np.asarray(logits).argmax(1), f"{p.calibration_samples} random N(0,1) in-range inputs (labels: float argmax)"


def _name_linear_activations(plan: Plan, model: Any) -> None:
    """The linear activation layers hls4ml's configuration lists after Dense layers."""
    import hls4ml

    names = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")["LayerName"]
    for d in plan.layers:
        if d.act_name is None and f"{d.name}_linear" in names:
            d.linear_name = f"{d.name}_linear"


def quantize(cfg: Config, model: Any, x_train: np.ndarray | None = None,
             y_train: np.ndarray | None = None, *, steps: Hls4mlSteps) -> tuple[Config, dict[str, Any]]:
    """PTQ of a float model: (the configuration with the chosen types, the record of the choice).
    Callers use :func:`codesign.convert.post_training_quantization`, which hands in ``steps``.

    ``model`` is the model as loaded (its final softmax is stripped here when hls.strip_softmax).
    Raises ConfigError for a model PTQ does not take, ConversionError when no fractional bit count
    up to ``hls.ptq.max_frac_bits`` meets ``hls.ptq.target_drop``.
    """
    from codesign.model_io import model_input

    p = cfg.hls.ptq
    t0 = time.time()
    if not cfg.hls.strip_softmax:
        raise ConfigError("hls.ptq.enabled needs hls.strip_softmax: true (PTQ plans no softmax tables)")
    if is_qkeras(model):
        check_model(model)  # names the QKeras layers before anything else
    float_model, _ = steps.strip_softmax(model)
    check_model(float_model)
    x, labels, what = calibration_set(cfg, float_model, x_train, y_train)
    x = model_input(float_model, x)
    plan = calibrate(float_model, x)
    _name_linear_activations(plan, float_model)
    reference = np.asarray(float_model.predict(x, verbose=0, batch_size=1024), dtype=np.float64).reshape(len(x), -1)
    ev = Evaluator(cfg, float_model, plan, x, labels, reference, steps)

    # 1. one fractional bit count for every knob: the smallest within target
    uniform: list[dict[str, Any]] = []
    chosen_f = None
    for f in range(p.min_frac_bits, p.max_frac_bits + 1):
        m = ev({k: f for k in plan.knobs})
        uniform.append({"frac_bits": f, **m})
        if m["drop"] <= p.target_drop:
            chosen_f = f
            break
    if chosen_f is None:
        best = min(uniform, key=lambda r: r["drop"])
        raise ConversionError(
            f"hls.ptq: no fractional bit count up to hls.ptq.max_frac_bits={p.max_frac_bits} keeps the accuracy "
            f"drop within hls.ptq.target_drop={p.target_drop} (best: {best['drop']:.4f} at {best['frac_bits']} bits)",
            hint="raise hls.ptq.target_drop or hls.ptq.max_frac_bits")
    frac = {k: chosen_f for k in plan.knobs}

    # 2. sensitivity: one knob falls, the others held at the uniform choice
    sensitivity: dict[str, list[dict[str, Any]]] = {}
    if p.mixed_precision:
        for k in plan.knobs:
            rows = []
            for f in range(chosen_f, p.min_frac_bits - 1, -1):
                m = ev({**frac, k: f})
                rows.append({"frac_bits": f, **m})
            sensitivity[k] = rows

    # 3. greedy descent: lower the knob whose fall costs least, while the drop stays within target
    steps: list[dict[str, Any]] = []
    if p.mixed_precision:
        while True:
            best_k, best_m = None, None
            for k in plan.knobs:
                if frac[k] <= p.min_frac_bits:
                    continue
                m = ev({**frac, k: frac[k] - 1})
                if m["drop"] <= p.target_drop and (best_m is None or (m["drop"], m["output_rel_rms_error"])
                                                   < (best_m["drop"], best_m["output_rel_rms_error"])):
                    best_k, best_m = k, m
            if best_k is None:
                break
            frac[best_k] -= 1
            steps.append({"knob": best_k, "frac_bits": frac[best_k], **best_m})

    final = ev(frac)
    qcfg = ev.config(frac)
    record = {
        "enabled": True, "calibration": what, "target_drop": p.target_drop,
        "mixed_precision": p.mixed_precision,
        "float_accuracy_calibration": ev.float_accuracy, "uniform_frac_bits": chosen_f,
        "uniform_search": uniform, "frac_bits": frac, "accuracy_calibration": final["accuracy"],
        "drop_calibration": final["drop"], "output_rel_rms_error": final["output_rel_rms_error"],
        "input_precision": qcfg.hls.input_precision,
        "layer_precision": {k: dict(v) for k, v in qcfg.hls.layer_precision.items()},
        "widths": _bits_summary(qcfg.hls.input_precision, qcfg.hls.layer_precision),
        "ranges": {"input_max": plan.input_max, "input_signed": plan.input_signed,
                   "layers": {d.name: {"pre_max": d.pre_max, "act_max": d.act_max,
                                       "weight_max": float(np.max(np.abs(d.weights))),
                                       "bias_max": float(np.max(np.abs(d.bias)))} for d in plan.layers}},
        "sensitivity": sensitivity, "descent": steps, "evaluations": len(ev.cache),
        "seconds": round(time.time() - t0, 2),
    }
    return qcfg, record
