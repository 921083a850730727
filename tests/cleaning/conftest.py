"""The cleaning tests' settings: one torch thread, so the fine-tuned noise filter trained
twice in one test gives the same floats (a multi-threaded backward sums in any order; under
load a one-ulp difference changed a report), and tiny tensors gain nothing from threads."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
