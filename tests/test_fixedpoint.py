"""codesign.fixedpoint against real ap_fixed: every source code, every Q x O mode, integers equal.

The reference is tests/apfixed_ref.cpp compiled with g++ against hls4ml's bundled ap_types headers
(the headers hls4ml's C-sim uses). One compile (cached in pytest's cache directory, keyed by a hash
of its inputs) covers every combination.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from codesign.fixedpoint import (
    OVERFLOW_CODE,
    OVERFLOW_MODES,
    QUANT_CODE,
    QUANT_MODES,
    FixedType,
    cast,
    code_range_bits,
    from_hls4ml,
    parse_precision,
)

HERE = Path(__file__).resolve().parent

# (source type, destination type without modes). Sources are 7-9 bits so every code is converted.
# Comments: shift = F_src - F_dst (> 0 drops fractional bits), and what the pair exercises.
PAIRS: list[tuple[FixedType, FixedType]] = [
    (FixedType(8, 4), FixedType(5, 3)),            # shift 2, narrower integer part
    (FixedType(8, 4), FixedType(5, 2, False)),     # shift 1, signed -> unsigned
    (FixedType(8, 3, False), FixedType(4, 2)),     # shift 3, unsigned -> signed, overflow
    (FixedType(9, 5, False), FixedType(6, 3, False)),  # shift 1, unsigned -> unsigned
    (FixedType(7, 2), FixedType(10, 6)),           # shift 1, wider integer part: never overflows
    (FixedType(8, 4), FixedType(10, 4)),           # shift -2: exact, no rounding
    (FixedType(8, 4), FixedType(6, 5)),            # shift 3, rounding carry into a wider int part
    (FixedType(8, 4), FixedType(4, 6)),            # dst F = -2 (integer > width), shift 6
    (FixedType(8, 10), FixedType(8, 6)),           # src F = -2, shift -4, overflow
    (FixedType(8, 10), FixedType(4, 8, False)),    # src F = -2, dst F = -4, shift 2
    (FixedType(8, -2), FixedType(6, 0)),           # src F = 10 (> width), shift 4
    (FixedType(8, -2), FixedType(4, -1)),          # negative integer bits on both sides, shift 5
    (FixedType(7, 3), FixedType(4, 8)),            # shift 8 > source width: every bit dropped
    (FixedType(7, 3, False), FixedType(3, 7, False)),  # same, unsigned
    (FixedType(8, 4), FixedType(1, 1)),            # 1-bit signed destination
    (FixedType(8, 4), FixedType(1, 0, False)),     # 1-bit unsigned destination, shift 3
    (FixedType(8, 6), FixedType(6, 4)),            # shift 0, narrower integer part
    (FixedType(8, 4, False), FixedType(10, 6, False)),  # shift 0, wider
    (FixedType(8, 4, False), FixedType(8, 4)),     # shift 0, unsigned -> signed same width
    (FixedType(8, 3), FixedType(8, 3, False)),     # shift 0, signed -> unsigned same width
    (FixedType(9, 1), FixedType(6, 0, False)),     # quantized_relu-like ufixed<6,0>
    (FixedType(8, 8, False), FixedType(4, 4)),     # integers: uint<8> -> int<4>
    (FixedType(7, 3), FixedType(12, 3)),           # shift -5, wider
    (FixedType(8, 4), FixedType(12, 10, False)),   # shift 2, wide unsigned
    (FixedType(9, 9), FixedType(9, 9)),            # identity (int<9>)
]

CASES: list[tuple[FixedType, FixedType]] = [
    (src, dst.with_modes(q, o)) for src, dst in PAIRS for q in QUANT_MODES for o in OVERFLOW_MODES
]


def _ctype(t: FixedType) -> str:
    kind = "ap_fixed" if t.signed else "ap_ufixed"
    return f"{kind}<{t.width},{t.integer},AP_{t.rounding},AP_{t.overflow}>"


def ap_types_dir() -> Path:
    spec = importlib.util.find_spec("hls4ml")
    assert spec is not None and spec.origin is not None, "hls4ml is not installed"
    d = Path(spec.origin).parent / "templates" / "vivado" / "ap_types"
    assert (d / "ap_fixed.h").is_file(), f"no ap_fixed.h under {d}"
    return d


def asserts_in_apfixed(src: FixedType, dst: FixedType) -> bool:
    """ap_fixed aborts on these casts: the shift exceeds the source width and Q needs the bit
    after the LSB (`get_bit(op.V, F2 - F - 1)` in ap_fixed_base.h asserts "Attempting to read bit
    beyond MSB"). hls4ml compiles its C-sim without NDEBUG, so its C-sim aborts too."""
    quantizes = dst.rounding != "TRN" and not (dst.rounding == "TRN_ZERO" and not src.signed)
    return src.frac - dst.frac > src.width and quantizes


def _case_line(k: int, src: FixedType, dst: FixedType, by_default: bool) -> str:
    return (
        f'if (selected(argc, argv, "c{k}", {"true" if by_default else "false"})) '
        f'run<{_ctype(src)}, {_ctype(dst)}, {src.width}, {dst.width}, '
        f'{"true" if src.signed else "false"}>("c{k}");'
    )


def _parse(out: str) -> dict[str, np.ndarray]:
    results: dict[str, np.ndarray] = {}
    for line in out.splitlines():
        ident, *vals = line.split()
        dst = CASES[int(ident[1:])][1]
        raw = np.array([int(v) for v in vals], dtype=np.int64)
        if dst.signed:
            raw = np.where(raw >= (1 << (dst.width - 1)), raw - (1 << dst.width), raw)
        results[ident] = raw
    return results


@pytest.fixture(scope="session")
def apfixed_bins(pytestconfig: pytest.Config) -> dict[str, Path]:
    """Compile the harness twice, in parallel: as hls4ml's C-sim is compiled (asserts on), with
    every case; and with -DNDEBUG holding only the cases that assert, to see what ap_fixed's code
    computes there once the assertion is out of the way.

    The binaries are cached in pytest's cache directory under a hash of everything that goes into
    them (harness, case list, flags, header directory), so only the first run pays the ~20 s."""
    gxx = shutil.which("g++")
    assert gxx is not None, "g++ is required (Debian package g++)"
    cpp = HERE / "apfixed_ref.cpp"
    root = pytestconfig.cache.mkdir("apfixed") if pytestconfig.cache else Path(tempfile.mkdtemp())
    procs, bins = {}, {}
    for name, flags in (("asserts", []), ("ndebug", ["-DNDEBUG"])):
        lines = [
            _case_line(k, src, dst, by_default=(name == "asserts") != asserts_in_apfixed(src, dst))
            for k, (src, dst) in enumerate(CASES)
            if name == "asserts" or asserts_in_apfixed(src, dst)
        ]
        inc = "\n".join(lines) + "\n"
        key = hashlib.sha256("\0".join([cpp.read_text(), inc, " ".join(flags), str(ap_types_dir()), gxx])
                             .encode()).hexdigest()[:16]
        d = root / f"{name}-{key}"
        bins[name] = d / "apfixed_ref"
        if bins[name].is_file():
            continue
        d.mkdir(parents=True, exist_ok=True)
        (d / "apfixed_cases.inc").write_text(inc)
        # -O0: the same results as hls4ml's -O3 for this well-defined code, and compiles faster.
        cmd = [gxx, "-O0", "-std=c++14", "-w", *flags, f"-I{ap_types_dir()}", f"-I{d}",
               str(cpp), "-o", str(d / "apfixed_ref.tmp")]
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, proc in procs.items():
        _, err = proc.communicate()
        assert proc.returncode == 0, f"g++ ({name}) failed:\n{err[-3000:]}"
        (bins[name].parent / "apfixed_ref.tmp").rename(bins[name])
    return bins


@pytest.fixture(scope="session")
def apfixed_results(apfixed_bins: dict[str, Path]) -> dict[str, np.ndarray]:
    """id -> destination codes (sign-extended) for every case, from one run of each binary."""
    results: dict[str, np.ndarray] = {}
    for exe in apfixed_bins.values():
        proc = subprocess.run([str(exe)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{exe} failed ({proc.returncode}): {proc.stderr[-2000:]}"
        results.update(_parse(proc.stdout))
    assert sorted(results) == sorted(f"c{k}" for k in range(len(CASES)))
    return results


def _all_codes(t: FixedType) -> np.ndarray:
    return np.arange(t.min_code, t.max_code + 1, dtype=np.int64)


def test_cases_cover_every_mode_and_shift_kind() -> None:
    """The sweep itself: 7 x 4 modes, both signednesses, shifts <0/=0/>0, F<0, F>W, I>W."""
    modes = {(d.rounding, d.overflow) for _, d in CASES}
    assert modes == {(q, o) for q in QUANT_MODES for o in OVERFLOW_MODES}
    shifts = {s.frac - d.frac for s, d in PAIRS}
    assert any(x > 0 for x in shifts) and any(x < 0 for x in shifts) and 0 in shifts
    assert any(s.width < s.frac - d.frac for s, d in PAIRS)  # every source bit shifted out
    assert {d.signed for _, d in PAIRS} == {True, False} == {s.signed for s, _ in PAIRS}
    assert any(d.frac < 0 for _, d in PAIRS) and any(s.frac < 0 for s, _ in PAIRS)
    assert any(s.frac > s.width for s, _ in PAIRS)
    assert any(d.integer > d.width for _, d in PAIRS)


@pytest.mark.hls4ml
@pytest.mark.parametrize("src,dst", PAIRS, ids=[f"{s}->{d}".replace(",TRN,WRAP", "") for s, d in PAIRS])
def test_cast_equals_ap_fixed(src: FixedType, dst: FixedType,
                              apfixed_results: dict[str, np.ndarray]) -> None:
    codes = _all_codes(src)
    for q in QUANT_MODES:
        for o in OVERFLOW_MODES:
            to = dst.with_modes(q, o)
            k = CASES.index((src, to))
            want = apfixed_results[f"c{k}"]
            got = cast(codes, src.frac, to, src.signed)
            assert got.dtype == np.int64 and got.shape == want.shape
            if not np.array_equal(got, want):
                bad = np.flatnonzero(got != want)
                rows = ", ".join(f"code {codes[i]} -> ap_fixed {want[i]}, cast {got[i]}" for i in bad[:5])
                pytest.fail(f"{src} -> {to}: {bad.size} of {codes.size} differ: {rows}")
            # Every result is a valid code of the destination type.
            assert got.min() >= to.min_code and got.max() <= to.max_code


@pytest.mark.hls4ml
def test_apfixed_asserts_when_every_bit_is_shifted_out(apfixed_bins: dict[str, Path]) -> None:
    """Documents a limit of real ap_fixed (hence of hls4ml's C-sim): rounding a value whose every
    bit is shifted out aborts. The other cases of the same pair run fine (TRN)."""
    src, dst = FixedType(7, 3), FixedType(4, 8)
    k_rnd = CASES.index((src, dst.with_modes("RND", "WRAP")))
    k_trn = CASES.index((src, dst.with_modes("TRN", "WRAP")))
    assert asserts_in_apfixed(*CASES[k_rnd]) and not asserts_in_apfixed(*CASES[k_trn])
    proc = subprocess.run([str(apfixed_bins["asserts"]), f"c{k_rnd}"], capture_output=True, text=True)
    assert proc.returncode != 0 and "beyond MSB" in proc.stderr
    proc = subprocess.run([str(apfixed_bins["asserts"]), f"c{k_trn}"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith(f"c{k_trn} ")
    assert sum(asserts_in_apfixed(s, d) for s, d in CASES) > 0


@pytest.mark.hls4ml
def test_reference_is_not_trivial(apfixed_results: dict[str, np.ndarray]) -> None:
    """Guard against a harness that prints the same thing for every mode."""
    src, dst = FixedType(8, 4), FixedType(5, 3)
    seen = {tuple(apfixed_results[f"c{CASES.index((src, dst.with_modes(q, o)))}"])
            for q in QUANT_MODES for o in OVERFLOW_MODES}
    assert len(seen) >= 20
    # Spot values straight from the ap_fixed semantics: 1.375 (code 22 of fixed<8,4>) to fixed<5,3>.
    k = CASES.index((src, dst.with_modes("RND_CONV", "WRAP")))
    assert apfixed_results[f"c{k}"][22 - src.min_code] == 6  # 1.375 -> 1.5 (half to even: 1.5)
    k = CASES.index((src, dst.with_modes("TRN", "SAT")))
    assert apfixed_results[f"c{k}"][127 - src.min_code] == 15  # 7.9375 saturates to 3.75


def test_cast_scalar_and_wide_codes() -> None:
    assert int(cast(5, 2, FixedType(8, 8, True, "RND"))) == 1  # 1.25 -> 1
    assert int(cast(-6, 2, FixedType(8, 8, True, "RND"))) == -1  # -1.5 -> -1 (half up)
    assert int(cast(-6, 2, FixedType(8, 8, True, "RND_INF"))) == -2
    # 40-bit codes stay exact in int64.
    big = (1 << 39) - 1
    assert int(cast(big, 0, FixedType(48, 48))) == big
    assert int(cast(big, 0, FixedType(32, 32, True, "TRN", "SAT"))) == (1 << 31) - 1


@pytest.mark.parametrize("text,want", [
    ("fixed<16,6>", FixedType(16, 6, True)),
    ("ufixed<6,0,RND_CONV,SAT>", FixedType(6, 0, False, "RND_CONV", "SAT")),
    ("ap_fixed<8,3>".removeprefix("ap_"), FixedType(8, 3)),
    ("fixed<8, -2, AP_RND, AP_SAT_SYM>", FixedType(8, -2, True, "RND", "SAT_SYM")),
    ("fixed<10,12,TRN_ZERO,SAT_ZERO,0>", FixedType(10, 12, True, "TRN_ZERO", "SAT_ZERO")),
    ("int<8>", FixedType(8, 8, True)),
    ("uint<1>", FixedType(1, 1, False)),
    (" ufixed<4,4> ", FixedType(4, 4, False)),
])
def test_parse_precision(text: str, want: FixedType) -> None:
    assert parse_precision(text) == want


@pytest.mark.parametrize("text", [
    "float", "fixed<8>", "fixed<0,0>", "fixed<8,3,RND_WRONG>", "fixed<8,3,RND,CLAMP>",
    "fixed<8,3,RND,SAT,2>", "int<-3>", "fixed<8,3", "xfixed<8,3>",
])
def test_parse_precision_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_precision(text)


def test_from_hls4ml_precision_objects() -> None:
    from hls4ml.model.types import (
        ExponentPrecisionType,
        FixedPrecisionType,
        IntegerPrecisionType,
        RoundingMode,
        SaturationMode,
        XnorPrecisionType,
    )

    for q in QUANT_MODES:
        for o in OVERFLOW_MODES:
            p = FixedPrecisionType(9, 3, False, RoundingMode[q], SaturationMode[o])
            assert from_hls4ml(p) == FixedType(9, 3, False, q, o)
            # The text hls4ml prints parses to the same type.
            assert parse_precision(str(p)) == FixedType(9, 3, False, q, o)
    assert from_hls4ml(FixedPrecisionType(16, 6)) == FixedType(16, 6, True, "TRN", "WRAP")
    assert from_hls4ml(FixedPrecisionType(8, -2, True)) == FixedType(8, -2, True)
    assert from_hls4ml(IntegerPrecisionType(8, False)) == FixedType(8, 8, False)
    assert from_hls4ml(IntegerPrecisionType(5)) == FixedType(5, 5, True)
    assert from_hls4ml("ufixed<6,0,RND_CONV,SAT>") == FixedType(6, 0, False, "RND_CONV", "SAT")
    with pytest.raises(ValueError, match="saturation bits"):
        from_hls4ml(FixedPrecisionType(8, 3, True, RoundingMode.TRN, SaturationMode.SAT, 2))
    with pytest.raises(ValueError):
        from_hls4ml(XnorPrecisionType())
    with pytest.raises(ValueError):
        from_hls4ml(ExponentPrecisionType())


def test_fixedtype_validation_and_properties() -> None:
    t = FixedType(8, 3, True, "RND", "SAT")
    assert (t.frac, t.min_code, t.max_code) == (5, -128, 127)
    u = FixedType(6, 8, False)
    assert (u.frac, u.min_code, u.max_code) == (-2, 0, 63)
    assert str(t) == "fixed<8,3,RND,SAT>" and str(u) == "ufixed<6,8,TRN,WRAP>"
    assert t.to_json()["frac"] == 5
    with pytest.raises(ValueError):
        FixedType(0, 0)
    with pytest.raises(ValueError, match="rounding"):
        FixedType(8, 3, True, "ROUND")
    with pytest.raises(ValueError, match="overflow"):
        FixedType(8, 3, True, "RND", "CLIP")
    assert QUANT_CODE == {"TRN": 0, "TRN_ZERO": 1, "RND": 2, "RND_ZERO": 3, "RND_MIN_INF": 4,
                          "RND_INF": 5, "RND_CONV": 6}
    assert OVERFLOW_CODE == {"WRAP": 0, "SAT": 1, "SAT_ZERO": 2, "SAT_SYM": 3}


def test_to_codes_and_back() -> None:
    t = FixedType(8, 3)
    vals = np.array([0.0, 0.03125, -4.0, 3.96875, -0.5])
    codes = t.to_codes(vals)
    assert codes.dtype == np.int64
    assert codes.tolist() == [0, 1, -128, 127, -16]
    assert np.array_equal(t.to_real(codes), vals)
    with pytest.raises(ValueError, match="not on the grid"):
        t.to_codes(np.array([0.5, 0.01]))
    with pytest.raises(ValueError, match="0.0078125"):  # half a step of fixed<8,2> (2**-6)
        FixedType(8, 2).to_codes(np.array([[0.015625, 0.0078125]]))
    # Negative fractional bits: the grid is multiples of 4.
    n = FixedType(4, 6)
    assert n.to_codes(np.array([-8.0, 12.0])).tolist() == [-2, 3]
    with pytest.raises(ValueError):
        n.to_codes(np.array([2.0]))


@pytest.mark.parametrize("lo,hi,want", [
    (0, 0, (1, False)), (0, 1, (1, False)), (0, 255, (8, False)), (0, 256, (9, False)),
    (-1, 0, (1, True)), (-128, 127, (8, True)), (-129, 127, (9, True)), (-128, 128, (9, True)),
    (-1, 1, (2, True)), (-2, 1, (2, True)), (-3, 0, (3, True)), (-(1 << 40), 5, (41, True)),
])
def test_code_range_bits(lo: int, hi: int, want: tuple[int, bool]) -> None:
    assert code_range_bits(lo, hi) == want


def test_code_range_bits_is_minimal() -> None:
    """Exhaustive over small ranges: the width holds lo and hi, and one bit less does not."""
    for lo in range(-20, 21):
        for hi in range(max(lo, 0), 21):
            bits, signed = code_range_bits(lo, hi)
            assert signed == (lo < 0)
            t = FixedType(bits, bits, signed)
            assert t.min_code <= lo and hi <= t.max_code
            if bits > 1:
                s = FixedType(bits - 1, bits - 1, signed)
                assert not (s.min_code <= lo and hi <= s.max_code)
