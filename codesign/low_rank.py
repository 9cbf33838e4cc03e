"""Low-rank factorization of a Dense layer (``model.low_rank: {dense_i: r}``), a training lever.

The n_in x n_out kernel W of ``dense_i`` becomes W ~ U.V, trained from scratch as two QDense
layers: ``dense_i_u`` (n_in -> r, bias, no activation), a linear quantizer ``dense_i_q``
(quantized_bits of the layer's bits + INTEGER_BITS, INTEGER_BITS integer bits: the fraction bits of
the hidden ReLUs, room for the signed sum) and ``dense_i`` (r -> n_out, keeps the original name so
the rest of the layer-name contract holds). The hardware multiplies n_in*r + r*n_out weights
instead of n_in*n_out. The quantizer between U and V makes the intermediate a fixed-point value in
QKeras as in hls4ml, so the downstream flow sees ordinary Dense and linear-quantizer layers.
"""

from __future__ import annotations

from typing import Any

from codesign.errors import ConfigError

#: Integer bits (excluding sign) of the quantizer between U and V: U.x of [0, 1) inputs and
#: |weights| < 1 rarely leaves [-4, 4) (and saturates there, as in hls4ml, if it does).
INTEGER_BITS = 2


def names(i: int) -> tuple[str, str, str]:
    """(U, quantizer, V) layer names of a factorized dense_i."""
    return f"dense_{i}_u", f"dense_{i}_q", f"dense_{i}"


def check(low_rank: dict[str, int], dense_shapes: dict[str, tuple[int, int]]) -> None:
    """Refuse a name that is not a dense layer of this model, or a rank that saves nothing.

    Args:
        dense_shapes: {dense_i: (n_in, n_out)} of the unfactorized model.

    Raises:
        ConfigError: naming ``model.low_rank.<name>`` and the valid names or ranks.
    """
    for name, rank in low_rank.items():
        if name not in dense_shapes:
            raise ConfigError(f"model.low_rank.{name}: no such dense layer in this model; valid: "
                              f"{', '.join(dense_shapes)}")
        n_in, n_out = dense_shapes[name]
        if not 1 <= rank < min(n_in, n_out):
            raise ConfigError(
                f"model.low_rank.{name}: rank {rank} is invalid for a {n_in} x {n_out} kernel; valid: "
                f"1 .. {min(n_in, n_out) - 1} (rank >= min(n_in, n_out) = {min(n_in, n_out)} saves nothing)")


def layers(i: int, rank: int, width: int, dense: Any, bits_of: Any) -> list[Any]:
    """The U, quantizer and V layers replacing dense_i.

    Args:
        dense: ``dense(name, units)`` -> a QDense with the model's quantizers for that layer.
        bits_of: ``bits_of(name)`` -> the layer's bit width (model.layer_bits, else model.bits).
    """
    from qkeras import QActivation, quantized_bits

    u, q, v = names(i)
    quant = quantized_bits(bits_of(q) + INTEGER_BITS, INTEGER_BITS, alpha=1)
    return [dense(u, rank), QActivation(quant, name=q), dense(v, width)]


def record(low_rank: dict[str, int], dense_shapes: dict[str, tuple[int, int]],
           stats: list[dict[str, Any]]) -> dict[str, Any]:
    """result.json's ``low_rank``: per factorized layer its rank, shape and multiplier counts.

    ``multipliers_full`` = n_in*n_out (the unfactorized kernel), ``multipliers`` = n_in*r + r*n_out
    (U and V), ``nonzero`` = the measured nonzero quantized weights of U and V (after pruning).
    """
    by_name = {e["name"]: e for e in stats}
    out: dict[str, Any] = {}
    for name, rank in low_rank.items():
        n_in, n_out = dense_shapes[name]
        i = int(name.split("_")[1])
        u, _, v = names(i)
        out[name] = {"rank": rank, "n_in": n_in, "n_out": n_out, "multipliers_full": n_in * n_out,
                     "multipliers": n_in * rank + rank * n_out,
                     "nonzero": by_name[u]["nonzero"] + by_name[v]["nonzero"]}
    return out
