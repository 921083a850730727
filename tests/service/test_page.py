"""The web page in headless Chromium: upload a photo, the results grid renders real images;
the garments found are drawn on the photo, and a click on one or a dragged rectangle searches it.

Uses the ``chromium`` fixture (tests/conftest.py): Debian's Chromium driven by playwright.
The screenshot is written to ``tests/service/_artifacts/`` for a human to look at.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pytest
from service_testing import publish_boxhead_store, served_in_thread, shop_photo

from street2shop.service.app import create_app
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


@pytest.fixture(scope="module")
def boxhead_url(tmp_path_factory):
    """A live service whose served localiser finds garments (a random box head, several boxes)."""
    store, *_ = publish_boxhead_store(tmp_path_factory.mktemp("page-boxhead"))
    with served_in_thread(create_app(store.home, street_in_background=False, inference_mode="eager")) as url:
        yield url, store


def _search(url: str, data: bytes, **params) -> dict:
    response = httpx.post(f"{url}/search", params={"k": 20, **params}, files={"image": ("q.jpg", data, "image/jpeg")})
    response.raise_for_status()
    return response.json()


def _titles(page) -> list[str]:
    return [c.inner_text().splitlines()[1] for c in page.locator("#results .card").all()]


def _title(hit: dict) -> str:
    return hit["title"] or hit["item_id"]


def test_the_page_draws_the_garments_and_searches_a_clicked_one_or_a_dragged_region(chromium, boxhead_url, tmp_path) -> None:
    url, store = boxhead_url
    row = next(r for r in store.read_table(store.latest("crawl", "images")).to_pylist() if r["role"] == "street")
    data = (store.home / row["path"]).read_bytes()
    query = tmp_path / "street.jpg"
    query.write_bytes(data)
    expected = _search(url, data)
    assert len(expected["garments"]) >= 2
    searches: list[str] = []

    page = chromium.new_page(viewport={"width": 1100, "height": 900})
    page.on("request", lambda r: searches.append(r.url) if "/search" in r.url else None)
    page.goto(url + "/")
    page.wait_for_selector("#category option[value='tops']", state="attached")
    page.set_input_files("#file", str(query))
    page.wait_for_selector("#boxes .garment")
    garments = page.locator("#boxes .garment")
    assert garments.count() == len(expected["garments"])
    assert page.locator("#boxes .garment.searched").get_attribute("data-index") == "0"
    assert _titles(page) == [_title(h) for h in expected["results"]]
    # each box sits where the service found it, in fractions of the photo as drawn
    photo = page.locator("#photo-img").bounding_box()
    assert photo["width"] == 320
    for i, garment in enumerate(expected["garments"]):
        drawn = garments.nth(i).bounding_box()
        x0, y0, x1, y1 = garment["box"]
        assert drawn["x"] == pytest.approx(photo["x"] + x0 * photo["width"], abs=1.5)
        assert drawn["y"] == pytest.approx(photo["y"] + y0 * photo["height"], abs=1.5)
        assert drawn["width"] == pytest.approx((x1 - x0) * photo["width"], abs=1.5)

    # a click on garment 1 (where no smaller box, drawn above it, covers it) searches that garment
    def area(b):
        return (b[2] - b[0]) * (b[3] - b[1])

    target = expected["garments"][1]["box"]
    above = [g["box"] for g in expected["garments"] if area(g["box"]) < area(target)]
    spot = next((fx, fy) for fy in np.linspace(target[1] + 0.01, target[3] - 0.01, 20) for fx in np.linspace(target[0] + 0.01, target[2] - 0.01, 20)
                if not any(b[0] <= fx <= b[2] and b[1] <= fy <= b[3] for b in above))
    page.mouse.click(photo["x"] + spot[0] * photo["width"], photo["y"] + spot[1] * photo["height"])
    page.wait_for_selector("#boxes .garment.searched[data-index='1']")
    assert "garment=1" in searches[-1]
    assert _titles(page) == [_title(h) for h in _search(url, data, garment=1)["results"]]
    assert "garment 1" in page.locator("#status").inner_text()

    # a rectangle dragged where no garment is searches that region
    start = next((fx, fy) for fy in np.linspace(0.02, 0.5, 25) for fx in np.linspace(0.02, 0.5, 25)
                 if not any(g["box"][0] <= fx <= g["box"][2] and g["box"][1] <= fy <= g["box"][3] for g in expected["garments"]))
    end = (start[0] + 0.45, start[1] + 0.45)
    page.mouse.move(photo["x"] + start[0] * photo["width"], photo["y"] + start[1] * photo["height"])
    page.mouse.down()
    page.mouse.move(photo["x"] + end[0] * photo["width"], photo["y"] + end[1] * photo["height"], steps=5)
    page.mouse.up()
    page.wait_for_selector("#boxes .drawn")
    asked = parse_qs(urlparse(searches[-1]).query)["box"][0]
    box = [float(v) for v in asked.split(",")]
    assert box == pytest.approx([*start, *end], abs=0.01)
    assert _titles(page) == [_title(h) for h in _search(url, data, box=asked)["results"]]
    assert "region drawn" in page.locator("#status").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "garments_page.png"), full_page=True)
