"""The self-contained HTML report (street2shop.retrieval.report): structure, plots, thumbnails."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from street2shop.retrieval.report import (
    MODEL_ORDER,
    Example,
    ReportData,
    Result,
    line_plot_svg,
    pick_examples,
    render_report,
)
from street2shop.retrieval.metrics import evaluate_retrieval

URL_ATTR = re.compile(r"""(?:src|href)\s*=\s*['"]?\s*(https?:|//)""", re.IGNORECASE)
IMG_SRC = re.compile(r"<img [^>]*src='([^']*)'")


def _metrics(models, categories=("tops", "shoes")) -> pa.Table:
    rows = []
    for i, model in enumerate(models):
        for category in ("all", *categories):
            for k in (1, 5, 10, 20):
                for metric in ("top_k", "recall"):
                    rows.append({"model": model, "split": "test", "category": category, "metric": metric, "k": k, "value": min(1.0, 0.1 * i + 0.04 * k)})
            rows.append({"model": model, "split": "test", "category": category, "metric": "map", "k": None, "value": 0.1 * i})
            rows.append({"model": model, "split": "test", "category": category, "metric": "wrong_colour", "k": 1, "value": 0.05 * i})
    return pa.Table.from_pylist(rows)


@pytest.fixture
def page(tmp_path) -> tuple[str, ReportData]:
    paths = []
    for i, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (300, 200), colour).save(paths[-1])
    examples = [
        Example(paths[0], "a", "tops", 1, (Result("a", paths[1], 0.9, True), Result("b", paths[2], 0.5, False))),
        Example(paths[2], "b", "shoes", 2, (Result("a", paths[1], 0.8, False), Result("b", paths[0], 0.7, True), Result("c", paths[2], 0.1, False))),
    ]
    rng = np.random.default_rng(0)
    data = ReportData(
        title="test <report>",
        metrics=_metrics(MODEL_ORDER),
        gallery_note="Gallery: 3 shop photos, the whole catalogue",
        examples=examples,
        map_xy=rng.normal(size=(6, 2)),
        map_categories=["tops", "shoes"] * 3,
        map_domains=["shop"] * 3 + ["street"] * 3,
    )
    return render_report(data), data


def test_report_is_self_contained(page):
    html, _ = page
    assert html.startswith("<!DOCTYPE html>")
    assert not URL_ATTR.search(html)
    assert "<link" not in html and "<script" not in html
    assert "test &lt;report&gt;" in html  # text is escaped


def test_comparison_table_lists_every_baseline_with_bold_best(page):
    html, _ = page
    table = html[html.index("<table class='comparison'>") : html.index("</table>")]
    for model in ("colour_histogram", "hog", "pretrained", "trained", "trained+qe", "trained+dba"):
        assert f"<td>{model}</td>" in table
    for heading in ("top-1", "top-5", "top-10", "top-20", "mAP", "wrong colour @1"):
        assert f"<th>{heading}</th>" in table
    # The last model has the highest top-1 (0.1 * 6 + 0.04) and the worst wrong-colour rate.
    last = table[table.index(f"<td>{MODEL_ORDER[-1]}</td>") :].split("</tr>")[0]
    assert "<td class='best'>0.640</td>" in last and "<td>0.300</td>" in last
    first = table[table.index(f"<td>{MODEL_ORDER[0]}</td>") :].split("</tr>")[0]
    assert "<td class='best'>0.000</td>" in first  # lowest wrong-colour rate is the best


def test_one_svg_per_category_plot_and_two_maps(page):
    html, _ = page
    # recall plots: all, shoes, tops; maps: by category, by domain
    assert html.count("<svg ") == 3 + 2
    for title in ("all: recall@k", "shoes: recall@k", "tops: recall@k", "coloured by category", "coloured by domain"):
        assert f"aria-label='{title}'" in html


def test_one_decodable_jpeg_thumbnail_per_grid_cell(page):
    html, data = page
    sources = IMG_SRC.findall(html)
    assert len(sources) == sum(1 + len(ex.results) for ex in data.examples) == 7
    for src in sources:
        assert src.startswith("data:image/jpeg;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.load()
        assert image.format == "JPEG" and max(image.size) <= 112
    assert html.count("class='cell correct'") == 2  # the correct item framed in each grid
    assert "miss: correct item at rank 2" in html


def test_line_plot_maps_values_onto_the_axes():
    svg = line_plot_svg({"m": [(1, 0.0), (4, 1.0)]}, "t", "k", "recall", width=200, height=140)
    # left=40, right margin=110 -> x in [40, 90]; top=24, bottom margin=32 -> y in [24, 108]
    assert "points='40.0,108.0 90.0,24.0'" in svg


def test_pick_examples_takes_hits_and_misses_and_marks_the_correct_item(tmp_path):
    gallery = [("g1", "a"), ("g2", "b"), ("g3", "c")]
    queries = [("q1", "a"), ("q2", "b"), ("q3", "c")]
    annotated = pa.table(
        {
            "image_id": [p for p, _ in gallery + queries],
            "item_id": [i for _, i in gallery + queries],
            "role": ["shop"] * 3 + ["street"] * 3,
            "path": [p for p, _ in gallery + queries],
            "category": ["x"] * 6,
            "split": ["test"] * 6,
            "keep": [True] * 6,
            "label": pa.nulls(6, pa.string()),
        }
    )
    eye = np.eye(3, dtype=np.float32)
    # q1 -> a (hit); q2 -> c then b (miss, correct at rank 2); q3 -> c (hit)
    query_vectors = np.array([[1, 0, 0], [0, 0.6, 0.8], [0, 0, 1]], dtype=np.float32)
    report = evaluate_retrieval(query_vectors, ["a", "b", "c"], eye, ["a", "b", "c"], ks=(1, 2))
    examples = pick_examples(report, annotated, "test", n_hits=5, n_misses=5, top=2)
    assert [(e.query_item, e.first_hit_rank) for e in examples] == [("a", 1), ("c", 1), ("b", 2)]
    miss = examples[-1]
    assert [r.item_id for r in miss.results][0] == "c" and [r.correct for r in miss.results] == [False, True]
    assert miss.results[1].path == "g2"  # the item's gallery photo is its thumbnail


@pytest.mark.slow
def test_report_renders_in_headless_chromium(chromium, page, tmp_path):
    """Opened as a file, with no network: every thumbnail decodes and every plot has a size."""
    html, data = page
    report = tmp_path / "report.html"
    report.write_text(html)
    requests: list[str] = []
    tab = chromium.new_page(viewport={"width": 1200, "height": 900})
    tab.on("request", lambda r: requests.append(r.url))
    tab.goto(report.as_uri())
    tab.wait_for_load_state("load")
    widths = tab.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    expected = sum(1 + len(e.results) for e in data.examples)
    assert len(widths) == expected and all(w > 0 for w in widths)
    boxes = tab.eval_on_selector_all("svg", "els => els.map(e => e.getBoundingClientRect().width)")
    assert boxes and all(w > 0 for w in boxes)
    assert requests == [report.as_uri()]  # self-contained: nothing else was fetched
