"""The web page in headless Chromium: upload a photo, the results grid renders real images.

Uses the ``chromium`` fixture (tests/conftest.py): Debian's Chromium driven by playwright.
The screenshot is written to ``tests/service/_artifacts/`` for a human to look at.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from service_testing import shop_photo

from street2shop.storage.store import ArtifactStore

ARTIFACTS = Path(__file__).parent / "_artifacts"

pytestmark = pytest.mark.slow


def test_upload_shows_a_results_grid_and_an_items_reverse_search(chromium, live_url, tiny_home, tmp_path) -> None:
    _, data = shop_photo(ArtifactStore(tiny_home), "p2:blue")
    query = tmp_path / "query.jpg"
    query.write_bytes(data)
    ARTIFACTS.mkdir(exist_ok=True)
    external: list[str] = []

    page = chromium.new_page(viewport={"width": 1100, "height": 900})
    page.on("request", lambda r: external.append(r.url) if not r.url.startswith((live_url, "blob:", "data:")) else None)
    page.goto(live_url + "/")
    page.wait_for_selector("#category option[value='tops']", state="attached")
    page.set_input_files("#file", str(query))
    page.wait_for_selector("#results .card img")
    # every photo decoded (polled: the page's CSP forbids wait_for_function's string eval)
    for _ in range(200):
        if page.eval_on_selector_all("#results .card img", "imgs => imgs.every(i => i.complete && i.naturalWidth > 0)"):
            break
        page.wait_for_timeout(50)
    cards = page.locator("#results .card")
    assert cards.count() == 6  # every item of the tiny catalogue, k=20 by default
    assert cards.nth(0).inner_text().splitlines()[:2] == ["#1 1.000", "blue top p2"]
    widths = page.eval_on_selector_all("#results .card img", "imgs => imgs.map(i => i.naturalWidth)")
    assert widths and all(w == 64 for w in widths)  # the served seller photos decoded

    cards.nth(0).click()
    page.wait_for_selector("#item-reverse .card img")
    assert page.locator("#item-title").inner_text() == "blue top p2"
    assert page.locator("#item-shop .card").count() == 2
    assert page.locator("#item-reverse .card.same").count() == 2  # its own customer photos marked
    page.screenshot(path=str(ARTIFACTS / "search_page.png"), full_page=True)
    assert (ARTIFACTS / "search_page.png").stat().st_size > 10_000
    assert external == []  # nothing outside the service was requested
