"""One typed, frozen configuration tree for a run, loaded from YAML and validated on load.

Every field has a default, so an empty file (or no file) is the embedded default run: the sklearn
digits MLP 64-32-32-10, 6-bit, 50 % sparsity. ``codesign init`` writes :func:`example_yaml`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from codesign.errors import ConfigError

T = TypeVar("T")
DATASETS = ("digits", "npz")
MODEL_KINDS = ("mlp", "cnn")
STRATEGIES = ("Latency", "Resource")
#: Values of hls.io_type ("auto": codesign.convert.choose_io_type).
IO_TYPES = ("auto", "io_parallel", "io_stream")
SIMULATORS = ("verilator", "icarus")
#: Values of rtl.fold_architecture (codesign.arch.fold.CHOICES).
FOLD_ARCHITECTURES = ("auto", "lanes", "digit_serial", "input_serial")
#: Values of rtl.multipliers (codesign.arch.dense.MULTIPLIERS).
MULTIPLIERS = ("auto", "dsp", "lut")
PRECISION_RE = re.compile(
    r"^(u?fixed)<\s*(\d+)\s*,\s*(-?\d+)\s*(?:,\s*(\w+)\s*)?(?:,\s*(\w+)\s*)?(?:,\s*(\d+)\s*)?>$"
    r"|^(u?int)<\s*(\d+)\s*>$"
)


@dataclass(frozen=True)
class DataConfig:
    #: "digits" (sklearn's, embedded) or "npz" (a file with X_train, y_train, X_test, y_test).
    dataset: str = "digits"
    #: Path of the .npz file when dataset is "npz".
    path: str | None = None
    #: Fraction of digits held out as the test set (digits only).
    test_fraction: float = 0.2
    #: Side of the digits images (digits only): 8 is sklearn's 8x8; a larger side resizes them by
    #: nearest neighbour (pixel values stay on the k/16 grid), e.g. 28 for an MNIST-sized 28x28 input
    #: that exercises io_stream at a realistic size without a download.
    digits_size: int = 8


@dataclass(frozen=True)
class ModelConfig:
    #: Architecture family: "mlp" is QDense + quantized ReLU layers; "cnn" is QConv2D + quantized
    #: ReLU + MaxPooling2D blocks, then Flatten and QDense layers (cnn_hidden, then the logits).
    kind: str = "mlp"
    #: Widths of the hidden layers of the MLP (input and output widths come from the data).
    hidden: tuple[int, ...] = (32, 32)
    #: CNN only: filters of each QConv2D (one conv block per entry: conv_i, crelu_i, pool_i).
    conv_filters: tuple[int, ...] = (8,)
    #: CNN only: square kernel size of every QConv2D (stride 1, "valid" padding).
    kernel_size: int = 3
    #: CNN only: square MaxPooling2D size (and stride) after each conv block; 0 or 1: no pooling.
    pool_size: int = 2
    #: CNN only: input image [height, width, channels]; null: a square one-channel image from the
    #: data's feature count (digits: 8x8x1). Flat data rows are reshaped to it (row-major).
    image_shape: tuple[int, ...] | None = None
    #: CNN only: widths of the hidden QDense layers after Flatten (empty: Flatten -> logits).
    #: ``hidden`` is the MLP's and is ignored by the CNN.
    cnn_hidden: tuple[int, ...] = ()
    #: CNN only: integer bits of the quantized ReLU after each conv (crelu_i: quantized_relu(bits,
    #: this), values 0 .. 2^this); 1 lets a 3x3 sum of k/16 pixels exceed 1 without saturating.
    conv_relu_integer_bits: int = 1
    #: Default bit width of weights, biases and activations.
    bits: int = 6
    #: Integer bits (excluding sign) of weights and biases, as in quantized_bits(bits, integer).
    integer_bits: int = 0
    #: Bit width of the input quantizer (inputs are scaled to [0, 1) and quantized to this).
    input_bits: int = 8
    #: Per-layer bit-width overrides, by layer name (MLP: dense_0, relu_0, ..., dense_N; CNN also
    #: conv_0, crelu_0, ...).
    layer_bits: dict[str, int] = field(default_factory=dict)
    #: Import this Keras/QKeras model (.h5, or .json with weights_path) instead of training.
    import_path: str | None = None
    #: Weights (.h5) for a .json architecture given in import_path.
    weights_path: str | None = None
    #: Low-rank factorization (training levers, codesign.low_rank): {dense layer: rank r}. The layer's
    #: n_in x n_out kernel W becomes W ~ U.V, trained as two QDense layers, dense_i_u (n_in -> r) then
    #: dense_i (r -> n_out), nothing between (U's output keeps its exact, wider type in hardware):
    #: n_in*r + r*n_out multipliers instead of n_in*n_out. 1 <= r < min(n_in, n_out).
    low_rank: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PruningConfig:
    #: Fraction of weights set to zero at the end of training (0 disables pruning).
    target_sparsity: float = 0.5
    #: Prune whole neurons (structured) instead of single weights (magnitude).
    structured: bool = False
    #: Iterative prune / fine-tune rounds; the target is reached in equal steps.
    rounds: int = 1
    #: Lottery-ticket rewinding (codesign.pruning): null is off. An epoch e (0 .. training.epochs-1):
    #: train unpruned, keeping the weights after e epochs (0: the initial weights); then each of the
    #: ``rounds`` rounds prunes the lowest-magnitude weights of each layer to its step of the target,
    #: rewinds the survivors to the kept weights and retrains. Magnitude (unstructured) pruning only.
    rewind_epoch: int | None = None
    #: Structured pruning's importance of a neuron / filter (codesign.pruning): "magnitude" (L2
    #: norm of its weights and bias), "taylor" (first-order Taylor: (sum of weight x loss gradient over
    #: the unit)^2, averaged over training batches) or "activation" (how often its output is nonzero on
    #: the training data: units that rarely fire go first). Non-magnitude needs structured: true.
    criterion: str = "magnitude"


@dataclass(frozen=True)
class DistillConfig:
    #: Knowledge distillation (codesign.distill): null is off; "float": train a float Keras teacher of
    #: the student's architecture (hidden widths / filters times teacher_width) first; or a path to a
    #: Keras .h5 model (logits or softmax outputs, the data's classes) to use as the teacher.
    teacher: str | None = None
    #: Width multiplier of the "float" teacher's hidden layers and conv filters (1: same size).
    teacher_width: int = 1
    #: Epochs of the "float" teacher; null: training.epochs.
    teacher_epochs: int | None = None
    #: Softmax temperature T of the soft targets (loss term scaled by T^2); > 0.
    temperature: float = 4.0
    #: Weight of the soft-target (teacher) loss; 1 - alpha weighs the labels' loss. 0 .. 1.
    alpha: float = 0.5


@dataclass(frozen=True)
class TrainingConfig:
    #: Training epochs per pruning round.
    epochs: int = 60
    #: Mini-batch size.
    batch_size: int = 64
    #: Adam learning rate.
    learning_rate: float = 0.01
    #: Seed for data split, initialisation and shuffling.
    seed: int = 0
    #: Knowledge distillation of the quantized student from a float teacher (teacher null: off).
    distill: DistillConfig = field(default_factory=DistillConfig)


@dataclass(frozen=True)
class PtqConfig:
    #: Post-training quantization of an imported float Keras model (codesign.ptq): per-layer weight,
    #: bias, result and accumulator types from calibrated value ranges instead of hls4ml's default
    #: fixed<16,6> everywhere. Needs model.import_path; a QKeras model is refused (its quantizers
    #: fix its types). Off: the convert stage is unchanged.
    enabled: bool = False
    #: Largest accuracy drop (a fraction: 0.005 is half a point) against the float model, measured
    #: with the bit-exact golden model on the calibration inputs, that the chosen types may cost.
    #: The calibration inputs are training inputs, on which the float model has wider margins than
    #: on unseen data, so a test set loses more than this: 0 (no loss on them) is the safe default.
    target_drop: float = 0.0
    #: Calibration inputs: this many of the data set's training inputs; without a matching data set,
    #: this many random N(0,1) in-range inputs labelled by the float model's argmax.
    calibration_samples: int = 1000
    #: Mixed precision: after the smallest uniform fractional bit count within target_drop, lower
    #: the input's, each layer's weight and each layer's result fractional bits one at a time, the
    #: least sensitive first, while the drop stays within target_drop (false: uniform only).
    mixed_precision: bool = True
    #: Range of fractional bits searched (integer bits come from the calibrated ranges).
    min_frac_bits: int = 0
    max_frac_bits: int = 16
    #: Seed of the calibration sample (and of the random inputs without a data set).
    seed: int = 0


@dataclass(frozen=True)
class HlsConfig:
    #: FPGA part written into the HLS project.
    part: str = "xcu250-figd2104-2L-e"
    #: Target clock period in ns (200 MHz by default).
    clock_period_ns: float = 5.0
    #: hls4ml strategy for every layer: "Latency" or "Resource".
    strategy: str = "Latency"
    #: Global reuse factor.
    reuse_factor: int = 1
    #: Per-layer reuse factors, by hls4ml layer name; overrides reuse_factor.
    layer_reuse_factor: dict[str, int] = field(default_factory=dict)
    #: Per-layer strategy overrides, by hls4ml layer name.
    layer_strategy: dict[str, str] = field(default_factory=dict)
    #: Input precision; "auto" uses the first quantizer's type so C-sim is bit-exact with QKeras.
    input_precision: str = "auto"
    #: Per-layer precision overrides: {layer: {result|accum|weight|bias: "fixed<W,I,Q,O>"}}.
    layer_precision: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Drop a final Softmax so outputs are the logits (argmax is unchanged).
    strip_softmax: bool = True
    #: hls4ml's io_type: "io_parallel" (every layer's outputs at once; convolutions fully parallel
    #: over their output pixels), "io_stream" (one pixel, all channels, per cycle through line
    #: buffers; the kernel reused across the image), or "auto": io_stream for a model with a
    #: convolution whose io_parallel expansion exceeds 50,000 products (output pixels x kernel
    #: weights; 16 3x3 filters over 28x28 make 97,344) when the streaming RTL builds all its layers
    #: (Conv1D/2D, pooling with stride = size and 'valid' padding, ReLU, Flatten, Dense).
    io_type: str = "auto"
    #: Post-training quantization of a float model (off by default).
    ptq: PtqConfig = field(default_factory=PtqConfig)


@dataclass(frozen=True)
class RtlConfig:
    #: Reuse factor 1: share common subexpressions across the whole weight matrix (adder graph,
    #: registers placed by a 5 ns delay budget) instead of one shift-add tree per neuron.
    adder_graph: bool = True
    #: Adder levels between pipeline registers in per-neuron trees (when adder_graph is false).
    levels_per_stage: int = 2
    #: Reuse factor > 1: "auto" (the cheapest by the cost model of codesign.arch.fold), "lanes"
    #: (multiplier lanes), "digit_serial" (adder graph on input digits) or "input_serial" (inputs
    #: from a shift register, weights from ROMs); a layer that cannot use the choice gets "lanes".
    fold_architecture: str = "auto"
    #: Reuse factor > 1: the general multipliers of the folded architectures. "auto": written as
    #: a * b, the synthesizer maps them (wide ones to DSP blocks), the cost model counts LUTs; "dsp":
    #: marked (* use_dsp = "yes" *) and counted as DSP blocks by the cost model, so folding spends
    #: DSPs to save LUTs; "lut": written as shift-and-add partial products, LUTs in any tool.
    multipliers: str = "auto"
    #: io_parallel: a Dense (any reuse factor) or RF-1 conv followed by a ReLU or linear activation applies
    #: it before its output register (same primitives, same values, same latency), which then holds
    #: the activation's narrow type instead of the wide result type, where that saves flip-flops
    #: (design.json: fused_activation / fused_into); false: one module per layer.
    fuse_activations: bool = True


@dataclass(frozen=True)
class VerifyConfig:
    #: Random on-grid input vectors streamed after the test set.
    random_vectors: int = 10000
    #: Simulator: "verilator" (default) or "icarus" (small designs).
    simulator: str = "verilator"
    #: Seed of random vectors, input gaps and output back-pressure.
    seed: int = 1
    #: Probability that the source inserts an idle cycle before a vector.
    input_gap_prob: float = 0.2
    #: Probability that the sink holds out_ready low on a cycle.
    backpressure_prob: float = 0.2


@dataclass(frozen=True)
class SynthConfig:
    #: Yosys synth_xilinx family.
    family: str = "xcup"
    #: Map multipliers to LUTs (-nodsp).
    nodsp: bool = False
    #: Also synthesize keeping the hierarchy: LUT/FF/CARRY/DSP/BRAM per layer (a second Yosys run).
    per_layer: bool = True
    #: Also estimate an ASIC: Yosys generic gates, NAND2-equivalent area, per layer (a third run).
    asic: bool = True


@dataclass(frozen=True)
class Config:
    #: Run directory; every stage writes its own subdirectory here.
    output_dir: str = "runs/digits"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    hls: HlsConfig = field(default_factory=HlsConfig)
    rtl: RtlConfig = field(default_factory=RtlConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)

    def replace(self, **changes: Any) -> Config:
        """Return a copy with dotted-path fields changed: ``cfg.replace(**{"hls.reuse_factor": 4})``."""
        data = to_dict(self)
        for dotted, value in changes.items():
            node, obj = data, self
            *parents, leaf = dotted.split(".")
            for p in parents:
                if p not in node or not isinstance(node[p], dict):
                    raise ConfigError(f"unknown config field {dotted!r}")
                node = node[p]
                obj = getattr(obj, p) if dataclasses.is_dataclass(obj) else obj[p]
            # a mapping field (e.g. model.layer_bits) takes new keys; a section takes only its fields
            if leaf not in node and dataclasses.is_dataclass(obj):
                raise ConfigError(f"unknown config field {dotted!r}")
            node[leaf] = value
        return from_dict(data)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The configuration as plain YAML-able data (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert lists to tuples. Raise ConfigError."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (elem, _ellipsis) = get_args(tp)
        return tuple(_coerce(v, elem, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = get_args(tp)
        return {_coerce(k, kt, f"{where} key"): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {where}")


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"{where + '.' if where else ''}{unknown[0]}: unknown field; valid fields here: {', '.join(names)}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where + '.' if where else ''}{k}") for k, v in data.items()}
    return cls(**kwargs)


def _require(cond: bool, where: str, value: Any, valid: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {value!r} is invalid; valid: {valid}")


def check_precision(text: str, where: str) -> None:
    """Raise ConfigError unless ``text`` is an hls4ml precision string such as fixed<8,3,RND,SAT>."""
    from codesign.fixedpoint import QUANT_MODES, OVERFLOW_MODES

    m = PRECISION_RE.match(text.strip())
    if not m:
        raise ConfigError(
            f"{where}: {text!r} is not a precision; write fixed<W,I>, ufixed<W,I,Q,O>, int<W> or uint<W>"
        )
    if m.group(1):
        width, integer = int(m.group(2)), int(m.group(3))
        if width < 1 or width > 64:
            raise ConfigError(f"{where}: width {width} in {text!r} must be between 1 and 64")
        q, o = m.group(4), m.group(5)
        if q and q.upper().removeprefix("AP_") not in QUANT_MODES:
            raise ConfigError(f"{where}: rounding mode {q!r} in {text!r}; valid: {', '.join(QUANT_MODES)}")
        if o and o.upper().removeprefix("AP_") not in OVERFLOW_MODES:
            raise ConfigError(f"{where}: overflow mode {o!r} in {text!r}; valid: {', '.join(OVERFLOW_MODES)}")
        del integer
    else:
        width = int(m.group(8))
        if width < 1 or width > 64:
            raise ConfigError(f"{where}: width {width} in {text!r} must be between 1 and 64")


def validate(cfg: Config) -> Config:
    """Check ranges and cross-field rules; return cfg unchanged or raise ConfigError naming the field."""
    d, m, p, t, h, v = cfg.data, cfg.model, cfg.pruning, cfg.training, cfg.hls, cfg.verify
    _require(d.dataset in DATASETS, "data.dataset", d.dataset, ", ".join(DATASETS))
    if d.dataset == "npz":
        _require(bool(d.path), "data.path", d.path, "a .npz file path when data.dataset is npz")
    _require(0.05 <= d.test_fraction <= 0.9, "data.test_fraction", d.test_fraction, "0.05 .. 0.9")
    _require(8 <= d.digits_size <= 64, "data.digits_size", d.digits_size, "8 .. 64")
    _require(m.kind in MODEL_KINDS, "model.kind", m.kind, ", ".join(MODEL_KINDS))
    _require(all(1 <= w <= 4096 for w in m.hidden), "model.hidden", list(m.hidden), "widths 1..4096")
    _require(2 <= m.bits <= 16, "model.bits", m.bits, "2 .. 16")
    _require(0 <= m.integer_bits < m.bits, "model.integer_bits", m.integer_bits, f"0 .. {m.bits - 1}")
    _require(2 <= m.input_bits <= 16, "model.input_bits", m.input_bits, "2 .. 16")
    for name, b in m.layer_bits.items():
        _require(2 <= b <= 16, f"model.layer_bits.{name}", b, "2 .. 16")
    _validate_cnn(m)
    if m.weights_path and not m.import_path:
        raise ConfigError("model.weights_path is set but model.import_path is not; set both or neither")
    _require(0.0 <= p.target_sparsity < 1.0, "pruning.target_sparsity", p.target_sparsity, "0 <= s < 1")
    _require(1 <= p.rounds <= 20, "pruning.rounds", p.rounds, "1 .. 20")
    _require(1 <= t.epochs <= 10000, "training.epochs", t.epochs, "1 .. 10000")
    _validate_training_levers(cfg)
    _require(1 <= t.batch_size <= 65536, "training.batch_size", t.batch_size, "1 .. 65536")
    _require(0 < t.learning_rate < 1, "training.learning_rate", t.learning_rate, "0 < lr < 1")
    _require(h.strategy in STRATEGIES, "hls.strategy", h.strategy, ", ".join(STRATEGIES))
    _require(h.io_type in IO_TYPES, "hls.io_type", h.io_type, ", ".join(IO_TYPES))
    _validate_ptq(cfg)
    _require(h.clock_period_ns > 0, "hls.clock_period_ns", h.clock_period_ns, "> 0")
    _require(h.reuse_factor >= 1, "hls.reuse_factor", h.reuse_factor, ">= 1")
    for name, rf in h.layer_reuse_factor.items():
        _require(rf >= 1, f"hls.layer_reuse_factor.{name}", rf, ">= 1")
    for name, s in h.layer_strategy.items():
        _require(s in STRATEGIES, f"hls.layer_strategy.{name}", s, ", ".join(STRATEGIES))
    if h.input_precision != "auto":
        check_precision(h.input_precision, "hls.input_precision")
    for name, precs in h.layer_precision.items():
        for kind, text in precs.items():
            _require(
                kind in ("result", "accum", "weight", "bias"),
                f"hls.layer_precision.{name}", kind, "result, accum, weight, bias",
            )
            check_precision(text, f"hls.layer_precision.{name}.{kind}")
    _require(1 <= cfg.rtl.levels_per_stage <= 16, "rtl.levels_per_stage", cfg.rtl.levels_per_stage, "1 .. 16")
    _require(cfg.rtl.fold_architecture in FOLD_ARCHITECTURES, "rtl.fold_architecture", cfg.rtl.fold_architecture,
             ", ".join(FOLD_ARCHITECTURES))
    _require(cfg.rtl.multipliers in MULTIPLIERS, "rtl.multipliers", cfg.rtl.multipliers, ", ".join(MULTIPLIERS))
    _require(0 <= v.random_vectors <= 10_000_000, "verify.random_vectors", v.random_vectors, "0 .. 1e7")
    _require(v.simulator in SIMULATORS, "verify.simulator", v.simulator, ", ".join(SIMULATORS))
    _require(0 <= v.input_gap_prob < 1, "verify.input_gap_prob", v.input_gap_prob, "0 <= p < 1")
    _require(0 <= v.backpressure_prob < 1, "verify.backpressure_prob", v.backpressure_prob, "0 <= p < 1")
    return cfg


#: Values of pruning.criterion (codesign.pruning).
PRUNING_CRITERIA = ("magnitude", "taylor", "activation")


def _validate_training_levers(cfg: Config) -> None:
    """Distillation, rewinding, pruning criterion and low rank: ranges and the options they need.

    Layer names and ranks against the model's real widths are checked by codesign.low_rank when
    the data's shape is known."""
    m, p, t = cfg.model, cfg.pruning, cfg.training
    dist = t.distill
    _require(p.criterion in PRUNING_CRITERIA, "pruning.criterion", p.criterion, ", ".join(PRUNING_CRITERIA))
    if p.criterion != "magnitude":
        _require(p.structured, "pruning.criterion", p.criterion,
                 "magnitude unless pruning.structured is true (taylor and activation rank whole neurons)")
    if p.rewind_epoch is not None:
        _require(0 <= p.rewind_epoch < t.epochs, "pruning.rewind_epoch", p.rewind_epoch,
                 f"null or 0 .. {t.epochs - 1} (an epoch before training.epochs = {t.epochs})")
        _require(p.target_sparsity > 0 and not p.structured, "pruning.rewind_epoch", p.rewind_epoch,
                 "null unless magnitude pruning is on (pruning.target_sparsity > 0, structured: false)")
    if dist.teacher is not None:
        _require(dist.teacher == "float" or dist.teacher.endswith((".h5", ".keras")), "training.distill.teacher",
                 dist.teacher, 'null, "float" or a path to a Keras .h5 model')
    _require(dist.temperature > 0, "training.distill.temperature", dist.temperature, "> 0")
    _require(0.0 <= dist.alpha <= 1.0, "training.distill.alpha", dist.alpha, "0 .. 1")
    _require(1 <= dist.teacher_width <= 16, "training.distill.teacher_width", dist.teacher_width, "1 .. 16")
    if dist.teacher_epochs is not None:
        _require(1 <= dist.teacher_epochs <= 10000, "training.distill.teacher_epochs", dist.teacher_epochs,
                 "null or 1 .. 10000")
    for name, rank in m.low_rank.items():
        _require(rank >= 1, f"model.low_rank.{name}", rank, "a rank >= 1 (and < min(n_in, n_out))")
    if m.import_path and (m.low_rank or dist.teacher is not None or p.rewind_epoch is not None):
        raise ConfigError("model.import_path imports a model, so nothing is trained: model.low_rank, "
                          "training.distill.teacher and pruning.rewind_epoch must stay unset")


def _validate_ptq(cfg: Config) -> None:
    """hls.ptq: ranges, and that there is a float model to quantize."""
    q = cfg.hls.ptq
    _require(0.0 <= q.target_drop < 1.0, "hls.ptq.target_drop", q.target_drop, "0 <= drop < 1 (a fraction)")
    _require(10 <= q.calibration_samples <= 100_000, "hls.ptq.calibration_samples", q.calibration_samples,
             "10 .. 100000")
    _require(0 <= q.min_frac_bits <= 24, "hls.ptq.min_frac_bits", q.min_frac_bits, "0 .. 24")
    _require(q.min_frac_bits <= q.max_frac_bits <= 24, "hls.ptq.max_frac_bits", q.max_frac_bits,
             f"{q.min_frac_bits} (hls.ptq.min_frac_bits) .. 24")
    if q.enabled and not cfg.model.import_path:
        raise ConfigError("hls.ptq.enabled: PTQ quantizes an imported float Keras model (model.import_path); "
                          "the model the flow trains is QKeras and already quantized",
                          hint="set model.import_path, or hls.ptq.enabled: false")


def cnn_output_size(size: int, m: ModelConfig) -> int:
    """Height (or width) of a ``size`` image after every conv block ("valid" conv, then pooling)."""
    for _ in m.conv_filters:
        size -= m.kernel_size - 1
        if size < 1:
            return 0
        if m.pool_size > 1:
            size //= m.pool_size
    return size


def _validate_cnn(m: ModelConfig) -> None:
    """CNN fields: ranges always (so a preset is checked before kind is switched), shapes for "cnn"."""
    _require(all(1 <= f <= 1024 for f in m.conv_filters), "model.conv_filters", list(m.conv_filters),
             "filter counts 1..1024")
    _require(1 <= m.kernel_size <= 15, "model.kernel_size", m.kernel_size, "1 .. 15")
    _require(0 <= m.pool_size <= 16, "model.pool_size", m.pool_size, "0 .. 16 (0 or 1: no pooling)")
    _require(all(1 <= w <= 4096 for w in m.cnn_hidden), "model.cnn_hidden", list(m.cnn_hidden),
             "widths 1..4096")
    _require(0 <= m.conv_relu_integer_bits < m.bits, "model.conv_relu_integer_bits",
             m.conv_relu_integer_bits, f"0 .. {m.bits - 1}")
    if m.image_shape is not None:
        _require(len(m.image_shape) == 3 and all(d >= 1 for d in m.image_shape), "model.image_shape",
                 list(m.image_shape), "[height, width, channels], each >= 1, or null")
    if m.kind != "cnn":
        return
    _require(len(m.conv_filters) >= 1, "model.conv_filters", list(m.conv_filters),
             "at least one filter count when model.kind is cnn")
    if m.image_shape is not None:
        h, w, _ = m.image_shape
        out = min(cnn_output_size(h, m), cnn_output_size(w, m))
        _require(out >= 1, "model.image_shape", list(m.image_shape),
                 f"an image large enough for {len(m.conv_filters)} conv block(s) of kernel "
                 f"{m.kernel_size} and pool {m.pool_size} (it shrinks to {out} pixels)")


def from_dict(data: dict[str, Any] | None) -> Config:
    """Build and validate a Config from plain data (as read from YAML)."""
    return validate(_build(Config, data or {}, ""))


def load_yaml_file(path: str | Path, what: str, build: Callable[[Any], T], hint: str | None = None) -> T:
    """``build`` applied to the YAML data of ``path`` (a ``what`` file: config, sweep, search); every
    error names the file: missing, not YAML, or the bad key or value ``build`` raised ConfigError for."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file {path} does not exist", hint=hint)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    try:
        return build(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e


def load(path: str | Path | None) -> Config:
    """Load a YAML config file (None: all defaults)."""
    if path is None:
        return from_dict({})
    return load_yaml_file(path, "config", from_dict, hint="`codesign init config.yaml` writes one")


def dump(cfg: Config, path: str | Path) -> None:
    """Write the resolved configuration (every default filled in)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def example_yaml() -> str:
    """A commented example configuration: every field, its default and its meaning."""
    lines = ["# codesign run configuration. Every field is optional; shown are the defaults.", ""]

    def comments(cls: type) -> dict[str, str]:
        import inspect

        src = inspect.getsource(cls).splitlines()
        out, pending = {}, []
        for line in src:
            s = line.strip()
            if s.startswith("#:"):
                pending.append(s[2:].strip())
            elif ":" in s and pending:
                out[s.split(":")[0].strip()] = " ".join(pending)
                pending = []
        return out

    def emit(obj: Any, indent: int) -> None:
        notes = comments(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            pad = "  " * indent
            if f.name in notes:
                lines.append(f"{pad}# {notes[f.name]}")
            if dataclasses.is_dataclass(value):
                lines.append(f"{pad}{f.name}:")
                emit(value, indent + 1)
                lines.append("")
            else:
                text = yaml.safe_dump({f.name: to_dict(value) if dataclasses.is_dataclass(value) else
                                       (list(value) if isinstance(value, tuple) else value)},
                                      default_flow_style=True).strip()[1:-1]
                lines.append(f"{pad}{text}")

    emit(Config(), 0)
    return "\n".join(lines).rstrip() + "\n"
