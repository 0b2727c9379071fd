"""Parse and format the units profiles are written in.

Rates: bit/s and B/s with k/M/G/T prefixes (decimal, as link vendors quote them).
Times: s, ms, us (or µs), ns.  Sizes: B, KiB/MiB/GiB (binary, as buffer sizes are)
and kB/MB/GB (decimal).  Fractions: a percentage ("0.1%") or a plain number in [0, 1].
Every parser returns SI base units (bit/s, seconds, bytes, fraction) or raises UnitError
with the expectation spelled out, so the profile loader can name the key.
"""
from __future__ import annotations

import math
import re

_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_PREFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_SIZE = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
         "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


class UnitError(ValueError):
    """A value did not parse; the message says what was expected."""


def _split(text, what: str) -> tuple[float, str]:
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise UnitError(f"expected {what}, got {text!r}")
    m = re.fullmatch(r"\s*" + _NUMBER + r"\s*([A-Za-zµ/%]*)\s*", str(text))
    if not m:
        raise UnitError(f"expected {what}, got {text!r}")
    value = float(m.group(1))
    if not math.isfinite(value):       # 1e999 reads as infinity
        raise UnitError(f"expected {what}, got {text!r} (not a finite number)")
    return value, m.group(2)


def parse_rate(text) -> float:
    """'400Gbit/s' -> 4e11 bit/s; '450GB/s' -> 3.6e12 bit/s."""
    what = "a rate such as 400Gbit/s or 450GB/s"
    value, unit = _split(text, what)
    m = re.fullmatch(r"([kKMGT]?)(bit/s|bps|B/s)", unit)
    if not m:
        raise UnitError(f"expected {what}, got {text!r}")
    bits = value * _PREFIX[m.group(1)] * (8 if m.group(2) == "B/s" else 1)
    if bits <= 0:
        raise UnitError(f"expected a positive rate, got {text!r}")
    return bits


def parse_flops(text) -> float:
    """'989TFLOPS' (or TFLOP/s) -> 9.89e14 FLOP/s."""
    what = "a compute rate such as 989TFLOPS"
    value, unit = _split(text, what)
    m = re.fullmatch(r"([kKMGTP]?)FLOP(S|/s)", unit)
    if not m or value <= 0:
        raise UnitError(f"expected {what}, got {text!r}")
    return value * {"P": 1e15, **_PREFIX}[m.group(1)]


def parse_time(text) -> float:
    """'1.5us' -> 1.5e-6 s.  A bare 0 is accepted (no latency)."""
    what = "a time such as 2us, 1.5ms or 0"
    value, unit = _split(text, what)
    if unit == "" and value == 0:
        return 0.0
    if unit not in _TIME:
        raise UnitError(f"expected {what}, got {text!r}")
    return value * _TIME[unit]


def parse_length(text) -> float:
    """'150m' -> 150.0 m; '1.2km' -> 1200.0 m (a satellite formation's distances)."""
    what = "a distance such as 150m or 1.2km"
    value, unit = _split(text, what)
    if unit not in ("m", "km") or value < 0:
        raise UnitError(f"expected {what}, got {text!r}")
    return value * (1000.0 if unit == "km" else 1.0)


def parse_size(text) -> int:
    """'32MiB' -> 33554432 bytes; a bare integer is bytes."""
    what = "a size such as 4KiB, 32MiB or 1048576"
    value, unit = _split(text, what)
    if unit not in _SIZE and unit != "":
        raise UnitError(f"expected {what}, got {text!r}")
    size = value * _SIZE.get(unit, 1)
    if size < 1 or size != int(size):
        raise UnitError(f"expected a whole, positive number of bytes, got {text!r}")
    return int(size)


def parse_nccl_size(text) -> int:
    """A size as nccl-tests' -b/-e read it: bytes, or a whole number with K, M or G (either case,
    powers of 1024: 128M is 128 MiB); fabric's own KiB/MiB/GiB too.  kB/MB/GB are refused: nccl-tests
    reads 128MB as 128 MiB, fabric's profiles as 128e6 bytes, and a sweep should not guess."""
    what = "a size as nccl-tests writes it, such as 8, 64K, 128M or 1G (powers of 1024), or 32MiB"
    t = str(text).strip()
    if t[-2:] in ("kB", "KB", "MB", "GB", "TB", "mb", "gb", "kb"):
        raise UnitError(f"{t!r} is ambiguous: nccl-tests reads it as {t[:-1]} (powers of 1024), fabric's "
                        f"profiles as powers of 1000; write {t[:-1]} or {t[:-1]}iB, or the bytes")
    if t[-1:] in ("K", "M", "G", "k", "m", "g"):
        if not t[:-1].isdigit() or int(t[:-1]) == 0:
            raise UnitError(f"expected {what}, got {text!r}")
        return int(t[:-1]) * 1024 ** (" kmg".index(t[-1].lower()))
    return parse_size(t)


def parse_fraction(text) -> float:
    """'0.1%' -> 0.001; 0.001 -> 0.001."""
    what = "a percentage such as 0.1% (or a fraction in [0, 1])"
    value, unit = _split(text, what)
    if unit == "%":
        value /= 100.0
    elif unit != "":
        raise UnitError(f"expected {what}, got {text!r}")
    if not 0.0 <= value <= 1.0:
        raise UnitError(f"expected {what}, got {text!r}")
    return value


def fmt_rate(bits_per_s: float) -> str:
    for prefix, factor in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if bits_per_s >= factor:
            return f"{bits_per_s / factor:.4g}{prefix}bit/s"
    return f"{bits_per_s:.4g}bit/s"


def fmt_time(seconds: float) -> str:
    if seconds == 0:
        return "0"
    for unit, factor in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= factor:
            return f"{seconds / factor:.4g}{unit}"
    return f"{seconds / 1e-9:.4g}ns"


def fmt_size(nbytes: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= factor and nbytes % factor == 0:
            return f"{nbytes // factor}{unit}"
    return f"{nbytes}B"
