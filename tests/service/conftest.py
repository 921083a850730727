"""Fixtures of the service tests: a tiny published store (see ``service_testing``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_testing import publish_served_store, served_in_thread

from street2shop.service.app import create_app


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("service-home")
    publish_served_store(home)
    return home


@pytest.fixture(scope="module")
def live_url(tiny_home):
    """The app served by uvicorn on a free loopback port, in a thread of this process."""
    with served_in_thread(create_app(tiny_home, street_in_background=False)) as url:
        yield url
