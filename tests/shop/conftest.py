"""Small generated shops shared by the shop tests (seconds to build)."""

from __future__ import annotations

import pytest
from shop_testing import REAL

from street2shop.shop.generator import ShopParams, generate_shop

SMALL = dict(n_products=12, garments="procedural", image_size=96, relist_fraction=0.25,
             reviews_per_item=(0, 6), photos_per_review=(1, 3))  # two feedback pages somewhere


@pytest.fixture(scope="session")
def small_params() -> dict:
    """Keyword arguments of ShopParams for a tiny shop (add a seed)."""
    return dict(SMALL)


@pytest.fixture(scope="session")
def small_shop(tmp_path_factory):
    return generate_shop(tmp_path_factory.mktemp("shop") / "s", ShopParams(seed=5, **SMALL), workers=1)


@pytest.fixture(scope="session")
def shop(tmp_path_factory):
    """The real-garment shop (seed 2) whose outfits and lookbook the tests read (never write)."""
    return generate_shop(tmp_path_factory.mktemp("real") / "s", ShopParams(seed=2, **REAL), workers=1)
