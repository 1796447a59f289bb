"""Secrets out of the texts the engine and the CLI show.

Like Airflow's secrets masker (``[logging] min_length_masked_secret``, default 5), a secret
shorter than :data:`MIN_MASKED_LENGTH` characters is never replaced: replacing a one- or
two-character password everywhere turns every message into noise ("'<' not ***upporte***")
while hiding nothing an attacker could not guess. Such passwords are not masked (README).
"""

from __future__ import annotations

from collections.abc import Iterable

MIN_MASKED_LENGTH = 5
"""Secrets shorter than this are not masked (Airflow's default ``min_length_masked_secret``)."""

MASK = "***"


def maskable(secrets: Iterable[str | None], min_length: int = MIN_MASKED_LENGTH) -> list[str]:
    """The secrets long enough to mask, longest first (so no shorter one cuts a longer one)."""
    return sorted({s for s in secrets if s and len(s) >= min_length}, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every maskable secret replaced by ``***``."""
    for secret in maskable(secrets):
        text = text.replace(secret, MASK)
    return text
