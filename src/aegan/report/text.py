"""How the report writes a number and names a score: the formatting every section shares.

A leaf module (it imports nothing of the report), so the modules that write
sentences (compose.py, findings.py) can share it without importing each other.
"""

from __future__ import annotations

import math


def fmt(mean, std=None, digits: int = 3, n: int | None = None) -> str:
    """`mean ± std`; with n = 1 the std is "–" (one seed has no spread to estimate), never "± 0"."""
    if mean is None or (isinstance(mean, float) and not math.isfinite(mean)):
        return "n/a"
    if n == 1:
        return f"{mean:.{digits}g} ± –"
    if std is None or not math.isfinite(std):
        return f"{mean:.{digits}g}"
    return f"{mean:.{digits}g} ± {std:.2g}"


def fid_name(feature_extractor: str) -> str:
    """Which features the FID is on: Inception's compare with published numbers, the scorer's do not."""
    return "FID (Inception)" if feature_extractor.startswith("inception") else "FID (scorer features)"
