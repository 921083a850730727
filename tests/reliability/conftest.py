"""Fixtures of the reliability suite: the tiny published store of the service tests, the
app over it (in process and on a loopback port), the benchmark helpers in ``bench/``, and
one tiny demo shop with the store an uninterrupted pipeline published from it (the kill
tests compare with it; the signal tests start from it, so a run reaches its stage fast)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
BENCH = TESTS.parent / "bench"
# the store the service tests publish (tests/service/service_testing.py), and bench/'s
# helpers (scripts, not a package): imported by name like the tests beside them do
for folder in (TESTS / "service", BENCH):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from service_testing import publish_crawl, publish_index, served_in_thread  # noqa: E402

from street2shop.service.app import create_app  # noqa: E402
from street2shop.storage.store import ArtifactStore  # noqa: E402


@pytest.fixture(scope="session")
def hostile():
    """bench/_hostile.py: the corpus of hostile uploads."""
    return importlib.import_module("_hostile")


@pytest.fixture(scope="session")
def reliability():
    """bench/reliability.py: the pipeline fault plans, the store comparison, the soak."""
    return importlib.import_module("reliability")


@pytest.fixture(scope="session")
def tiny_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("reliability-home")
    store = ArtifactStore(home)
    publish_index(store, publish_crawl(store), seed=0)
    return home


@pytest.fixture(scope="session")
def app(tiny_home):
    return create_app(tiny_home, street_in_background=False, admin_token="a-token-of-twenty-chars")


@pytest.fixture(scope="session")
def live_url(app):
    """The app served by uvicorn on a free loopback port, in a thread of this process."""
    with served_in_thread(app, log_level="error", start_s=60) as url:
        yield url


@pytest.fixture(scope="session")
def pipeline_demo(tmp_path_factory, prefect_harness):
    """(base folder, config, Prefect API URL): one tiny demo shop and one API for every child."""
    from prefect.settings import PREFECT_API_URL

    from street2shop.flows.demo import TINY, demo_config, serving_demo_shop

    base = tmp_path_factory.mktemp("pipeline")
    with serving_demo_shop(base / "shop", TINY) as (shop_dir, url):
        config = base / "config.yaml"
        demo_config(shop_dir, url, TINY, progress=False).to_file(config)
        yield base, config, PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def reference(pipeline_demo, reliability):
    """Two ``street2shop run`` started at once on a fresh store (bench/reliability.py):
    (home, stage runs in order, the run that worked, the run that waited)."""
    return reliability.reference_pipeline(*pipeline_demo)
