"""Fixtures of the service tests: a tiny published store (see ``service_testing``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_testing import publish_crawl, publish_index

from street2shop.storage.store import ArtifactStore


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("service-home")
    store = ArtifactStore(home)
    images = publish_crawl(store)
    publish_index(store, images, seed=0)
    return home
