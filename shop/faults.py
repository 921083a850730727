"""Fault injection for the demo shop: latency, throttling, server errors, broken payloads.

Every decision is a pure function of ``(seed, canonical URL)``, so a test can ask which URLs
are permanently broken (``is_corrupt_image``...) and the server answers the same way on
every run. Transient faults (429 / 5xx) fail the first one or two attempts of a URL, then the
URL succeeds, so a polite crawler that retries gets everything.
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import BaseModel, Field, model_validator

#: At most this many failing attempts per URL for transient faults (the protocol's promise).
MAX_TRANSIENT_FAILURES = 2


def canonical_url(url: str) -> str:
    """Path plus sorted query, without scheme and host: the key every fault is drawn from.

    ``http://127.0.0.1:8000/p/p000001/feedback?page=2`` and ``/p/p000001/feedback?page=2``
    are the same URL to the fault model, so tests can ask with either.
    """
    parts = urlsplit(url)
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return parts.path + (f"?{query}" if query else "")


def _feedback_page(url: str) -> int | None:
    """The page number of a feedback URL, or None for any other URL."""
    parts = urlsplit(url)
    segments = parts.path.strip("/").split("/")
    if len(segments) != 3 or segments[0] != "p" or segments[2] != "feedback":
        return None
    page = dict(parse_qsl(parts.query)).get("page", "1")
    try:
        return int(page)
    except ValueError:
        return None


class FaultConfig(BaseModel):
    """What can go wrong, and how often. All probabilities are fractions of URLs."""

    seed: int = 0
    latency_ms: float = Field(0.0, ge=0)
    p_429: float = Field(0.0, ge=0, le=1)
    retry_after_s: int = Field(1, ge=0)
    p_5xx: float = Field(0.0, ge=0, le=1)
    p_corrupt_image: float = Field(0.0, ge=0, le=1)
    p_truncated_image: float = Field(0.0, ge=0, le=1)
    p_malformed_page: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _disjoint_fractions(self) -> FaultConfig:
        # Each pair is drawn from one uniform number, so their sum must fit in [0, 1].
        if self.p_429 + self.p_5xx > 1:
            raise ValueError("p_429 + p_5xx must be <= 1")
        if self.p_corrupt_image + self.p_truncated_image > 1:
            raise ValueError("p_corrupt_image + p_truncated_image must be <= 1")
        return self

    # -- the deterministic draws -------------------------------------------------------
    def uniform(self, url: str, purpose: str) -> float:
        """A number in [0, 1) fixed by (seed, purpose, canonical URL)."""
        key = f"{self.seed}\x00{purpose}\x00{canonical_url(url)}".encode()
        digest = hashlib.blake2b(key, digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def transient_failure(self, url: str) -> tuple[int, int] | None:
        """``(status, n_failing_attempts)`` for a URL that fails transiently, else None."""
        u = self.uniform(url, "transient")
        if u >= self.p_429 + self.p_5xx:
            return None
        attempts = 1 + int(self.uniform(url, "attempts") * MAX_TRANSIENT_FAILURES)
        if u < self.p_429:
            return 429, attempts
        return (503 if self.uniform(url, "5xx-code") < 0.5 else 500), attempts

    def is_corrupt_image(self, url: str) -> bool:
        return self.uniform(url, "image") < self.p_corrupt_image

    def is_truncated_image(self, url: str) -> bool:
        u = self.uniform(url, "image")
        return self.p_corrupt_image <= u < self.p_corrupt_image + self.p_truncated_image

    def is_malformed_page(self, url: str) -> bool:
        """Only feedback pages after the first can be malformed (so every item stays reachable)."""
        page = _feedback_page(url)
        if page is None or page < 2:
            return False
        return self.uniform(url, "malformed") < self.p_malformed_page

    def garbage_bytes(self, url: str, n: int) -> bytes:
        """Deterministic non-JPEG bytes standing in for a corrupt image."""
        out = bytearray()
        counter = 0
        while len(out) < n:
            key = f"{self.seed}\x00garbage\x00{canonical_url(url)}\x00{counter}".encode()
            out += hashlib.blake2b(key, digest_size=64).digest()
            counter += 1
        # Never start with the JPEG SOI marker, so the bytes cannot pass for a JPEG header.
        out[0:2] = b"GB"
        return bytes(out[:n])
