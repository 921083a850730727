"""Fixtures for the crawler tests: tiny generated shops served on loopback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from street2shop.shop.generator import ShopParams, generate_shop

#: Small enough to generate in about a second, big enough for paginated feedback pages.
SHOP = ShopParams(seed=11, n_products=10, garments="procedural", image_size=64,
                  reviews_per_item=(1, 6))


@pytest.fixture(scope="session")
def shop_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shop(tmp_path_factory.mktemp("shop") / "shop", SHOP)


@pytest.fixture
def shop_dir(shop_template: Path, tmp_path: Path) -> Path:
    """A private copy: tests that grow the shop must not change the others' shop."""
    return Path(shutil.copytree(shop_template, tmp_path / "shop"))
