"""A pipeline run on a small demo shop of real garments (tiny backbone), shared by the flow
tests of its optional stages (outfits, looks): it takes the longest of them, so it runs once."""

from __future__ import annotations

import pytest

from street2shop.flows.demo import TINY, demo_config, serving_demo_shop
from street2shop.flows.pipeline import pipeline

REAL_TINY = TINY.model_copy(update={"products": 40, "garments": "real", "image_size": 48})


@pytest.fixture(scope="session")
def real_tiny_demo(tmp_path_factory, prefect_harness):
    """(home, config, the first run's result), the shop served while the tests use it."""
    home = tmp_path_factory.mktemp("real-tiny-home")
    with serving_demo_shop(home, REAL_TINY) as (shop_dir, url):
        cfg = demo_config(shop_dir, url, REAL_TINY, progress=False)
        first = pipeline(str(home), cfg)
        yield home, cfg, first
