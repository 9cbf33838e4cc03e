"""codesign/testbenches/bus.py: the one packing rule of bus words (element i at bits [i*W +: W],
two's complement), used by the cocotb testbench, fastsim's hex files and the IP core's hex files.

Every expected word here is built with plain Python integers, element by element (``ref_word``),
independently of the numpy bit matrices the module uses.
"""

from __future__ import annotations

import ast
import importlib.util
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from codesign import fastsim, ipcore, resources
from codesign.testbenches import bus

#: (element width, signed, elements per row): 1-bit fields, widths around the int64 limits, and rows
#: of 64, 65 and 1,300 bits, beyond any machine word
CASES = [(1, False, 7), (1, True, 7), (3, True, 5), (8, False, 8), (8, True, 8), (13, True, 5),
         (16, False, 4), (21, True, 7), (32, True, 3), (63, False, 2), (63, True, 2), (64, True, 2),
         (5, True, 13), (13, False, 5), (13, True, 100)]


def ref_word(row: list[int], width: int) -> int:
    """Element i at bits [i*W +: W]; a negative code as 2^W + code (two's complement)."""
    word = 0
    for i, c in enumerate(row):
        word |= (c % (1 << width)) << (i * width)
    return word


def ref_codes(word: int, n: int, width: int, signed: bool) -> list[int]:
    out = []
    for i in range(n):
        v = (word >> (i * width)) % (1 << width)
        out.append(v - (1 << width) if signed and v >= 1 << (width - 1) else v)
    return out


def random_codes(rng: random.Random, rows: int, n: int, width: int, signed: bool) -> np.ndarray:
    """Uniform W-bit codes (signed: the two's complement reading), the two extremes in rows 0 and 1."""
    def code(bits: int) -> int:
        return bits - (1 << width) if signed and bits >= 1 << (width - 1) else bits

    codes = [[code(rng.getrandbits(width)) for _ in range(n)] for _ in range(rows)]
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    codes[0], codes[1] = [lo] * n, [hi] * n
    return np.array(codes, dtype=np.int64)


@pytest.mark.parametrize("width,signed,n", CASES)
def test_pack_and_unpack_agree_with_python_integers(width: int, signed: bool, n: int) -> None:
    rng = random.Random(width * 1000 + n + signed)
    codes = random_codes(rng, 40, n, width, signed)
    words = bus.pack_rows(codes, width)
    assert words == [ref_word(row, width) for row in codes.tolist()]
    assert all(0 <= w < 1 << (n * width) for w in words)
    back = bus.unpack_words(words, n, width, signed)
    assert back.dtype == np.int64 and back.shape == codes.shape
    assert back.tolist() == codes.tolist()
    assert back.tolist() == [ref_codes(w, n, width, signed) for w in words]
    assert bus.unpack_word(words[3], n, width, signed).tolist() == codes[3].tolist()


def test_known_words() -> None:
    # 4-bit fields: 1 -> 0x1 in bits [3:0], -1 -> 0xf in bits [7:4]; -8 -> 0x8, 7 -> 0x7
    assert bus.pack_rows(np.array([[1, -1], [-8, 7]]), 4) == [0xF1, 0x78]
    assert bus.unpack_words([0xF1, 0x78], 2, 4, True).tolist() == [[1, -1], [-8, 7]]
    assert bus.unpack_words([0xF1, 0x78], 2, 4, False).tolist() == [[1, 15], [8, 7]]
    # 1-bit signed fields hold 0 and -1
    assert bus.pack_rows(np.array([[-1, 0, -1]]), 1) == [0b101]
    assert bus.unpack_word(0b101, 3, 1, True).tolist() == [-1, 0, -1]


def test_a_code_wider_than_its_field_keeps_its_low_bits() -> None:
    # as a W-bit port would; fastsim refuses such codes beforehand (check_range)
    assert bus.pack_rows(np.array([[0x1F, -17]]), 4) == [ref_word([0x1F, -17], 4)] == [0xFF]
    with pytest.raises(ValueError, match="outside a 4-bit field"):
        bus.check_range(np.array([[16]]), 4)
    with pytest.raises(ValueError, match="outside a 4-bit field"):
        bus.check_range(np.array([[-9]]), 4)
    bus.check_range(np.array([[-8, 15]]), 4)  # a signed and an unsigned extreme both fit


def test_unpack_ignores_bits_above_the_bus_and_handles_no_words() -> None:
    assert bus.unpack_word((0b11 << 8) | 0x21, 2, 4, False).tolist() == [1, 2]
    empty = bus.unpack_words([], 3, 5, True)
    assert empty.shape == (0, 3) and empty.dtype == np.int64
    assert bus.pack_rows(np.zeros((0, 3), dtype=np.int64), 5) == []


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="2-D"):
        bus.pack_rows(np.array([1, 2]), 4)
    with pytest.raises(ValueError, match="not positive"):
        bus.pack_rows(np.array([[1]]), 0)
    with pytest.raises(ValueError, match="unsigned 64-bit codes do not fit int64"):
        bus.unpack_words([1], 1, 64, False)


def test_hex_words_pad_to_the_bus_width() -> None:
    assert bus.hex_words([0xF1, 0x8], 8) == ["f1", "08"]
    assert bus.hex_words([1], 39) == ["0000000001"]  # 39 bits: 10 hex digits
    big = ref_word([-1] * 13, 5)  # 65 bits of ones
    assert bus.hex_words([big], 65) == ["1" + "f" * 16]


# ------------------------------------------------------------------ the three users share it
def test_fastsim_hex_is_the_bus_packing() -> None:
    rng = random.Random(5)
    codes = random_codes(rng, 30, 13, 5, True)  # 65-bit rows
    lines = fastsim.pack_hex(codes, 5)
    assert [int(h, 16) for h in lines] == [ref_word(r, 5) for r in codes.tolist()]
    assert {len(h) for h in lines} == {17}
    assert fastsim.unpack_words is bus.unpack_words
    with pytest.raises(ValueError, match="outside a 5-bit field"):
        fastsim.pack_hex(np.array([[32]]), 5)


def test_ipcore_hex_file_is_the_bus_packing() -> None:
    codes = np.array([[1, -1, 5], [-2, 0, 3]], dtype=np.int64)
    text = ipcore._hex_lines(codes, 13, 40)  # 39 payload bits in a 40-bit tdata word
    assert text == "".join(f"{ref_word(r, 13):010x}\n" for r in codes.tolist())


def test_the_cocotb_testbench_uses_the_sibling_bus_module() -> None:
    # tb_network imports ``bus`` from its own folder, which cocotb's run has on sys.path (codesign
    # need not be installed there: an IP core folder holds copies of both files)
    folder = str(resources.TESTBENCHES)
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location("tb_network_bus_check", resources.TESTBENCHES / "tb_network.py")
        assert spec is not None and spec.loader is not None
        tb = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = tb  # dataclasses look their module up while the class is created
        spec.loader.exec_module(tb)
    finally:
        sys.path.remove(folder)
        sys.modules.pop("tb_network_bus_check", None)
    sibling = sys.modules[tb.pack_rows.__module__]
    assert Path(sibling.__file__).resolve() == Path(bus.__file__).resolve()
    for name in ("pack_rows", "unpack_word", "unpack_words"):
        assert getattr(tb, name).__module__ == "bus"
    # bus.py imports numpy and the standard library only
    imported = set()
    for node in ast.walk(ast.parse(Path(bus.__file__).read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"numpy"}, imported
