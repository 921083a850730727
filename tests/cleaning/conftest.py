"""The cleaning tests' settings: one torch thread, so the fine-tuned noise filter trained
twice in one test gives the same floats (a multi-threaded backward sums in any order; under
load a one-ulp difference changed a report), and tiny tensors gain nothing from threads."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(single_torch_thread):
    """Every cleaning test runs on one torch thread (tests/conftest.py)."""
