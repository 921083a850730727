"""Test-wide settings: a private Prefect home and no analytics, set before Prefect is imported."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="s2s-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import photo_testing  # noqa: E402  (tests/ is on sys.path)
from labelled_testing import ITEMS, draw, write_csv  # noqa: E402


@pytest.fixture(scope="session", name="draw")
def draw_fixture():
    """Synthetic garment, near-duplicate, parcel and close-up photos (tests/photo_testing.py)."""
    return photo_testing.helpers()


@pytest.fixture(scope="session")
def prefect_harness():
    """One ephemeral Prefect API for the tests that run flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


CHROMIUM = "/usr/bin/chromium"
#: what the browser tests pass to Debian's Chromium: headless-safe, and no background traffic
#: (this machine has no network; without these flags Chromium keeps trying to reach Google)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
def chromium():
    """A headless Debian Chromium driven by playwright (its own browser builds are never used).

    Skipped when playwright or Chromium is missing, except under CI (``CI=true``, which
    ``.ci/run`` sets): there the browser tests must really run, and README's test command
    installs Chromium first (``.ci/install-test-deps``).
    """
    import shutil

    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[test]')"
    if missing is None and shutil.which(CHROMIUM) is None:
        missing = "Debian's chromium is not installed (as root: bash .ci/install-test-deps)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# ---- tiny labelled photo sets (coloured shapes written as files) and a ``tiny`` checkpoint


@pytest.fixture
def photo_set(tmp_path: Path) -> dict[str, Path]:
    """``gallery.csv`` (2 shop photos per item) and ``queries.csv`` (2 street photos per item)
    next to a ``photos/`` folder, paths relative to the CSVs."""
    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    rows = {"gallery": [], "queries": []}
    for item, (product, category, colour_name, colour, shape) in ITEMS.items():
        for kind, street in (("gallery", False), ("queries", True)):
            for i in range(2):
                name = f"photos/{item.replace(':', '_')}_{kind}_{i}.jpg"
                draw(colour, shape, rng, street).save(tmp_path / name, quality=90)
                row = {"path": name, "item_id": item}
                if kind == "gallery":
                    row |= {"product_id": product, "category": category, "colour": colour_name}
                rows[kind].append(row)
    return {kind: write_csv(tmp_path / f"{kind}.csv", r) for kind, r in rows.items()}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from street2shop.models.embedder import build_embedder, save_checkpoint

    model = build_embedder(backbone="tiny", dim=16, pretrained=False, image_size=32)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", model)


@pytest.fixture()
def single_torch_thread():
    """One torch thread for the test (the models and cleaning tests use it for every test): tiny
    tensors gain nothing from threads on a shared 2-core machine, and a multi-threaded backward
    sums in any order (under load a one-ulp difference changed a report)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
