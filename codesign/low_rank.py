"""Low-rank factorization of a Dense layer (``model.low_rank: {dense_i: r}``), a training lever.

The n_in x n_out kernel W of ``dense_i`` becomes W ~ U.V, trained from scratch as two QDense
layers: ``dense_i_u`` (n_in -> r, bias, no activation) and ``dense_i`` (r -> n_out, keeps the
original name so the rest of the layer-name contract holds). The hardware multiplies n_in*r +
r*n_out weights instead of n_in*n_out.

Nothing sits between U and V: hls4ml 1.3 removes a linear QActivation(quantized_bits) that follows
a Dense without applying its cast (MergeLinearActivation sets no type when the activation carries
no hls4ml quantizer), so such a quantizer would hold in QKeras and not in hardware. Without it,
hls4ml infers a lossless type for U's output (e.g. fixed<18,7> for 8 inputs of 6 bits) and the
C-sim equals QKeras' exact float sums. The price: V multiplies that wider value, and BOPs (which
need a quantizer's width in front of every layer) are unknown for the model.
"""

from __future__ import annotations

from typing import Any

from codesign.errors import ConfigError

def names(i: int) -> tuple[str, str]:
    """(U, V) layer names of a factorized dense_i."""
    return f"dense_{i}_u", f"dense_{i}"


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


def layers(i: int, rank: int, width: int, dense: Any) -> list[Any]:
    """The U and V layers replacing dense_i.

    Args:
        dense: ``dense(name, units)`` -> a QDense with the model's quantizers for that layer.
    """
    u, v = names(i)
    return [dense(u, rank), dense(v, width)]


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
        u, v = names(i)
        out[name] = {"rank": rank, "n_in": n_in, "n_out": n_out, "multipliers_full": n_in * n_out,
                     "multipliers": n_in * rank + rank * n_out,
                     "nonzero": by_name[u]["nonzero"] + by_name[v]["nonzero"]}
    return out
