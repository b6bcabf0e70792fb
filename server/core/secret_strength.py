"""How weak a signing key is: too short, a placeholder, repetitive or a plain sequence."""

from __future__ import annotations

import math
import re
from collections import Counter

MIN_LENGTH = 16
MIN_DISTINCT = 6
MIN_BITS = 32.0
# Compared after lower-casing and dropping everything but letters and digits.
PLACEHOLDERS = frozenset({
    "", "changethis", "changeme", "secret", "secretkey", "placeholder", "dev", "password",
    "yoursecretkey", "mysecretkey", "replaceme", "example", "default", "insecure", "test",
})


def _sequence(value: str) -> bool:
    """True for runs like 'abcdefgh…' or '9876…' (every step the same ±1)."""
    steps = {ord(b) - ord(a) for a, b in zip(value, value[1:], strict=False)}
    return len(steps) == 1 and steps <= {-1, 0, 1}


def _repeated(value: str) -> bool:
    """True when the value is a shorter unit repeated ('abcdabcd…', 'changemechangeme')."""
    return re.fullmatch(r"(.+?)\1+", value) is not None


def estimated_bits(value: str) -> float:
    """Length times the Shannon entropy of the characters used (an upper bound)."""
    counts = Counter(value)
    n = len(value)
    return n * -sum(c / n * math.log2(c / n) for c in counts.values())


def weakness(value: str) -> str | None:
    """Why a secret is too weak for production, or None when it will do."""
    if len(value) < MIN_LENGTH:
        return f"shorter than {MIN_LENGTH} characters"
    plain = re.sub(r"[^a-z0-9]", "", value.lower())
    unit = re.sub(r"^(.+?)\1+$", r"\1", plain)
    stem = unit.rstrip("0123456789")
    if plain in PLACEHOLDERS or unit in PLACEHOLDERS or (stem and stem in PLACEHOLDERS):
        return "a placeholder"
    if _repeated(value):
        return "a short pattern repeated"
    if _sequence(value):
        return "a plain character sequence"
    if len(set(value)) < MIN_DISTINCT:
        return f"fewer than {MIN_DISTINCT} different characters"
    if estimated_bits(value) < MIN_BITS:
        return f"too little entropy (about {estimated_bits(value):.0f} bits, need {MIN_BITS:.0f})"
    return None
