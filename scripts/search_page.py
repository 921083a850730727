"""README's picture of the search page, regenerated from a store: ``street2shop serve`` on a
loopback port, a test-split customer photo (not seen in training, kept by the noise filter)
uploaded through the page in Debian's Chromium (playwright), and a screenshot of the results::

    python scripts/search_page.py --home .street2shop --out docs/search-page.png

Prints the query photo, its item and the rank the page shows it at, for the caption. With
``--pick N`` the N-th such photo (by image id) is the query instead of the first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prefect_ui import CHROMIUM_ARGS, free_port  # noqa: E402

QUERY = """
select i.image_id, i.path, i.item_id from latest_images i
join latest_groups g using (item_id) join latest_splits s using (group_id)
left join latest_noise_scores n using (image_id)
where i.role = 'street' and s.split = 'test' and coalesce(n.keep, true)
order by i.image_id
"""


def test_photo(home: str, pick: int) -> tuple[Path, str]:
    """A test-split street photo the noise filter kept: (its local file, its item id)."""
    from street2shop.storage.catalog import query
    from street2shop.storage.store import ArtifactStore

    store = ArtifactStore(home)
    rows = query(store, QUERY).to_pylist()
    if len(rows) <= pick:
        raise SystemExit(f"{home}: {len(rows)} kept test-split street photos; --pick {pick} is out of range")
    row = rows[pick]
    [path] = store.blobs.resolve_many([row["path"]])
    return Path(path), row["item_id"]


def wait_until_ok(url: str, timeout: float = 600.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                health = json.loads(answer.read())
                if health.get("status") == "ok":
                    return health
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url}/health did not say ok within {timeout:.0f} s")


def screenshot(url: str, photo: Path, item_id: str, out: Path) -> int | None:
    """Upload ``photo`` on the page, save the results; the rank of ``item_id`` (None if absent)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(url + "/")
        page.set_input_files("#file", str(photo))
        page.wait_for_selector("#results .card img")
        for _ in range(200):  # every photo decoded (the page's CSP forbids wait_for_function)
            if page.eval_on_selector_all("#results .card img", "imgs => imgs.every(i => i.complete && i.naturalWidth > 0)"):
                break
            page.wait_for_timeout(50)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=False)
        browser.close()
    with open(photo, "rb") as f:  # the same search through the API, for the caption
        boundary = "searchpage"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.jpg\"\r\n"
                "Content-Type: image/jpeg\r\n\r\n").encode() + f.read() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}/search?k=20", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        results = json.loads(answer.read())["results"]
    return next((r["rank"] for r in results if r["item_id"] == item_id), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True, help="a store with a served index (the demo's: .street2shop)")
    ap.add_argument("--out", type=Path, default=Path("docs/search-page.png"))
    ap.add_argument("--pick", type=int, default=0, help="which kept test-split street photo (0: the first by id)")
    args = ap.parse_args()
    photo, item_id = test_photo(args.home, args.pick)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = subprocess.Popen([shutil.which("street2shop"), "serve", "--home", args.home, "--port", str(port)], env=env)
    try:
        health = wait_until_ok(url)
        rank = screenshot(url, photo, item_id, args.out)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps({"out": str(args.out), "query": photo.name, "item": item_id, "rank": rank,
                      "index": health["index"], "items": health["items"]}))


if __name__ == "__main__":
    main()
