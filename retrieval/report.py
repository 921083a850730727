"""The self-contained HTML evaluation report: one file a person can open anywhere.

What it shows, all computed by the one evaluation path (:mod:`street2shop.retrieval.evaluation`):

* the baseline comparison table (top-1/5/10/20, mAP, "right product, wrong colour" per
  model: white-box features, pretrained backbone, trained embedder, trained + αQE/DBA),
  with the gallery each figure used;
* a recall@k plot per query category, one line per model;
* grids of example queries (hits and misses) with their top results, the correct item
  marked;
* a 2-D t-SNE map of the trained embeddings coloured by category and by domain (shop vs
  street).

Everything is inline: plots are SVG written here (no plotting library needed), photos are
base64 JPEG thumbnails, styles sit in one ``<style>`` block. The file therefore loads no
URL, so it can be attached to an issue, archived with its artifact version, or opened
offline. This module builds and renders the page from data already computed; the evaluate
stage writes it as ``report.html`` of its ``metrics`` version, ``street2shop report`` renders
it for any evaluated version (:mod:`street2shop.tasks.report`), ``street2shop eval`` for a
bring-your-own dataset.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from street2shop.cleaning.selection import gallery_images, query_images
from street2shop.retrieval.evaluation import SHOP
from street2shop.retrieval.metrics import ALL_CATEGORIES, RetrievalReport
from street2shop.retrieval.thumbnails import thumbnail_data_uri

#: Models in the order the comparison reads: white-box, pretrained, trained, post-processed.
MODEL_ORDER = ("colour_histogram", "hog", "pretrained", "trained", "trained+qe", "trained+dba", "trained+dba+qe")

#: The table's columns: (heading, metric name in the metrics table, k).
TABLE_COLUMNS = (
    ("top-1", "top_k", 1),
    ("top-5", "top_k", 5),
    ("top-10", "top_k", 10),
    ("top-20", "top_k", 20),
    ("mAP", "map", None),
    ("wrong colour @1", "wrong_colour", 1),
)

#: Tableau 10: distinguishable, colour-blind-friendlier than a rainbow.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")

THUMB_PX = 112


@dataclass(frozen=True)
class Result:
    item_id: str
    path: str  # a gallery photo of the item (its first), shown as the thumbnail
    score: float
    correct: bool


@dataclass(frozen=True)
class Example:
    query_path: str
    query_item: str
    category: str | None
    first_hit_rank: int  # 1-based; 0 = the correct item is not in the gallery
    results: tuple[Result, ...]


@dataclass
class ReportData:
    """Everything the page shows, already computed (rendering does no evaluation)."""

    title: str
    metrics: pa.Table  # rows of the ``metrics`` schema
    gallery_note: str
    examples: list[Example] = field(default_factory=list)
    map_xy: np.ndarray | None = None  # (n, 2) t-SNE coordinates
    map_categories: list[str] = field(default_factory=list)
    map_domains: list[str] = field(default_factory=list)
    #: the evaluate stage's query localisations: label -> figures (``passes``, ``ms_per_query``,
    #: ``[<set>:]top1`` ...), the rule that chose the served one, and its label
    localisations: dict[str, dict[str, float]] = field(default_factory=dict)
    localise_rule: str = ""
    served_localisation: str = ""


# --------------------------------------------------------------------------- building


def pick_examples(
    report: RetrievalReport,
    annotated: pa.Table,
    split: str,
    n_hits: int = 4,
    n_misses: int = 4,
    top: int = 5,
    seed: int = 0,
) -> list[Example]:
    """A seeded sample of top-1 hits and misses with their ``top`` ranked items."""
    queries = query_images(annotated, split)
    gallery = gallery_images(annotated)
    photo_of: dict[str, str] = {}
    for item, path in zip(gallery.column("item_id").to_pylist(), gallery.column("path").to_pylist()):
        photo_of.setdefault(item, path)
    rng = np.random.default_rng(seed)
    ranks = report.first_hit_rank
    chosen: list[int] = []
    for mask, n in ((ranks == 1, n_hits), (ranks != 1, n_misses)):
        candidates = np.flatnonzero(mask)
        chosen += sorted(rng.choice(candidates, size=min(n, len(candidates)), replace=False).tolist())
    q_paths, q_items = queries.column("path").to_pylist(), queries.column("item_id").to_pylist()
    q_categories = queries.column("category").to_pylist() if "category" in queries.column_names else [None] * len(q_paths)
    examples = []
    for i in chosen:
        results = tuple(
            Result(str(item), photo_of[item], float(score), item == q_items[i])
            for item, score in zip(report.ranked_items[i, :top], report.ranked_scores[i, :top])
            if item is not None
        )
        examples.append(Example(q_paths[i], q_items[i], q_categories[i], int(ranks[i]), results))
    return examples


def embedding_map(vectors: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """2-D t-SNE coordinates of ``vectors`` (seeded, so the same version draws the same map),
    or ``None`` when there are too few points for a meaningful neighbourhood."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = len(vectors)
    if n < 5:
        return None
    # perplexity must stay below n; ~n/3 keeps small test sets meaningful, 30 is the usual cap.
    perplexity = float(min(30.0, (n - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=500)
    # One thread: on a shared 2-core box OpenMP threads spin against each other and turn a
    # 0.1 s map of 16 points into 13 s (measured); single-threaded is as fast at this size.
    with threadpool_limits(1):
        return tsne.fit_transform(np.asarray(vectors, dtype=np.float32))


def build_report_data(
    title: str,
    metrics: pa.Table,
    annotated: pa.Table,
    split: str,
    report: RetrievalReport,
    vectors: dict[str, np.ndarray],
    seed: int = 0,
    max_map_points: int = 400,
    figures: Mapping[str, Any] | None = None,
) -> ReportData:
    """Collect the page's contents from one evaluation of the trained model.

    ``vectors`` are that model's ``gallery`` and ``queries`` vectors (rows aligned with
    ``gallery_images`` / ``query_images``); the map shows at most ``max_map_points`` of
    them, a seeded sample, since t-SNE is quadratic. ``figures``: the evaluation's headline
    figures, whose ``localise:<label>:<key>`` entries fill the localisation table.
    """
    gallery, queries = gallery_images(annotated), query_images(annotated, split)
    query_points = vectors["queries"][:, 0] if vectors["queries"].ndim == 3 else vectors["queries"]  # localised: the whole photo
    points = np.concatenate([vectors["gallery"], query_points])
    categories = _column_or(gallery, "category") + _column_or(queries, "category")
    domains = ["shop"] * gallery.num_rows + ["street"] * queries.num_rows
    keep = np.arange(len(points))
    if len(points) > max_map_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(points), max_map_points, replace=False))
    xy = embedding_map(points[keep], seed=seed)
    gallery_note = (
        f"Queries: {queries.num_rows} street photos of the {split!r} split. Gallery: "
        f"{gallery.num_rows} shop photos of {len(set(gallery.column('item_id').to_pylist()))} items, "
        "the whole catalogue; exact search; a hit is the correct item (product × colour)."
    )
    return ReportData(
        title=title,
        metrics=metrics,
        gallery_note=gallery_note,
        examples=pick_examples(report, annotated, split, seed=seed),
        map_xy=xy,
        map_categories=[categories[i] for i in keep],
        map_domains=[domains[i] for i in keep],
        **localisations_of(figures or {}),
    )


def localisations_of(figures: Mapping[str, Any]) -> dict[str, Any]:
    """The localisation table's contents from an evaluation's figures (``localise:<label>:<key>``)."""
    table: dict[str, dict[str, float]] = {}
    for key, value in figures.items():
        if key.startswith("localise:"):
            _, label, name = key.split(":", 2)
            table.setdefault(label, {})[name] = value
    return {"localisations": table, "localise_rule": str(figures.get("localise_rule", "")),
            "served_localisation": str(figures.get("localise", "")) if table else ""}


def _column_or(table: pa.Table, column: str, default: str = "unknown") -> list[str]:
    if column not in table.column_names:
        return [default] * table.num_rows
    return [default if v is None else str(v) for v in table.column(column).to_pylist()]


# --------------------------------------------------------------------------- rendering


def render_report(data: ReportData) -> str:
    """The whole page as one HTML string."""
    rows = [r if "benchmark" in r else {**r, "benchmark": SHOP} for r in data.metrics.to_pylist()]
    shop_rows = [r for r in rows if r["benchmark"] == SHOP]
    models = _ordered_models({r["model"] for r in shop_rows})
    sections = [
        f"<h1>{_e(data.title)}</h1>",
        f"<p class='note'>{_e(data.gallery_note)}</p>",
        "<h2>Baseline comparison (all categories)</h2>",
        _comparison_table(shop_rows, models),
    ]
    for benchmark in sorted({r["benchmark"] for r in rows} - {SHOP}):
        bench_rows = [r for r in rows if r["benchmark"] == benchmark]
        sections += [
            f"<h2>Benchmark {_e(benchmark)} (all categories)</h2>",
            "<p class='note'>A labelled set scored beside the shop: the trained model and the untrained "
            "backbone, under the same query localisation. Its photos are not shown in this report.</p>",
            _comparison_table(bench_rows, _ordered_models({r["model"] for r in bench_rows})),
        ]
    if data.localisations:
        sections += ["<h2>Query localisation (the served model at the served precision)</h2>", _localisation_table(data)]
    sections += [
        "<h2>Recall@k per category</h2>",
        "<div class='plots'>" + "".join(_recall_plots(shop_rows, models)) + "</div>",
        "<h2>Example queries</h2>",
        "<p class='note'>Left: the street photo. Right: its top results, best first; the correct item "
        "is framed green, wrong ones grey.</p>",
        _example_grids(data.examples),
        "<h2>Embedding map (t-SNE of the trained model)</h2>",
        _embedding_maps(data),
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(data.title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}.best{font-weight:bold}
.note{color:#555}.plots{display:flex;flex-wrap:wrap;gap:12px}
.grid{display:flex;gap:6px;margin:6px 0;align-items:flex-start}
.cell{font-size:11px;text-align:center;width:118px}
.cell img{width:112px;height:112px;object-fit:contain;border:3px solid #bbb;background:#f4f4f4}
.cell.query img{border-color:#4e79a7}.cell.correct img{border-color:#2ca02c}
.hit{color:#2ca02c}.miss{color:#d62728}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _ordered_models(models: set[str]) -> list[str]:
    known = [m for m in MODEL_ORDER if m in models]
    return known + sorted(models - set(known))


def _value(rows: list[dict], model: str, category: str, metric: str, k: int | None) -> float | None:
    for r in rows:
        if r["model"] == model and r["category"] == category and r["metric"] == metric and r["k"] == k:
            return r["value"]
    return None


def _comparison_table(rows: list[dict], models: list[str]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h, _, _ in TABLE_COLUMNS)
    values = {m: [_value(rows, m, ALL_CATEGORIES, metric, k) for _, metric, k in TABLE_COLUMNS] for m in models}
    body = []
    for m in models:
        cells = []
        for j, (_, metric, _) in enumerate(TABLE_COLUMNS):
            v = values[m][j]
            column = [values[x][j] for x in models if values[x][j] is not None]
            # The best model per column is bold; for the wrong-colour rate lower is better.
            best = (min if metric == "wrong_colour" else max)(column) if column else None
            cls = " class='best'" if v is not None and v == best else ""
            cells.append(f"<td{cls}>{'–' if v is None else f'{v:.3f}'}</td>")
        body.append(f"<tr><td>{_e(m)}</td>{''.join(cells)}</tr>")
    return f"<table class='comparison'><thead><tr><th>model</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _localisation_table(data: ReportData) -> str:
    """One row per localisation: forward passes and ms per query, then each set's top-1 / top-20."""
    keys = sorted({k for fig in data.localisations.values() for k in fig if k.rpartition(":")[2] in ("top1", "top20")},
                  key=lambda k: (k.count(":"), k))  # the shop split first
    head = "".join(f"<th>{_e(h)}</th>" for h in ["localisation", "passes", "ms/query", *keys])
    body = []
    for label, fig in sorted(data.localisations.items(), key=lambda item: item[1].get("passes", 0)):
        served = " (served)" if label == data.served_localisation else ""
        cells = [f"{fig.get('passes', 0):.0f}", *(f"{fig[k]:.3f}" if k in fig else "–" for k in keys)]
        # a measured time, marked so (it is the one cell two runs of the stage do not share)
        timing = f"<td class='timing'>{fig.get('ms_per_query', math.nan):.1f}</td>"
        tds = [f"<td>{cells[0]}</td>", timing, *(f"<td>{c}</td>" for c in cells[1:])]
        body.append(f"<tr><td>{_e(label + served)}</td>{''.join(tds)}</tr>")
    table = f"<table class='comparison'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f"<p class='note'>Served by the rule: {_e(data.localise_rule)}.</p>{table}"


def _recall_plots(rows: list[dict], models: list[str]) -> list[str]:
    categories = sorted({r["category"] for r in rows if r["metric"] == "recall"} - {ALL_CATEGORIES})
    plots = []
    for category in [ALL_CATEGORIES, *categories]:
        series = {}
        for m in models:
            points = sorted((r["k"], r["value"]) for r in rows if r["model"] == m and r["category"] == category and r["metric"] == "recall")
            if points:
                series[m] = points
        if series:
            plots.append(line_plot_svg(series, title=f"{category}: recall@k", x_label="k", y_label="recall"))
    return plots


def line_plot_svg(
    series: dict[str, Sequence[tuple[float, float]]],
    title: str,
    x_label: str,
    y_label: str,
    width: int = 360,
    height: int = 240,
) -> str:
    """A line chart (y in [0, 1], x on a log2 scale since k doubles) with a legend."""
    left, right, top, bottom = 40, 110, 24, 32
    xs = sorted({x for pts in series.values() for x, _ in pts})
    lo, hi = math.log2(min(xs)), math.log2(max(xs))
    span = hi - lo or 1.0

    def px(x: float) -> float:
        return left + (math.log2(x) - lo) / span * (width - left - right)

    def py(y: float) -> float:
        return top + (1 - y) * (height - top - bottom)

    parts = [f"<svg width='{width}' height='{height}' role='img' aria-label='{_e(title)}'>"]
    parts.append(f"<text x='{width / 2}' y='14' text-anchor='middle' font-size='12'>{_e(title)}</text>")
    for y in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f"<line x1='{left}' x2='{width - right}' y1='{py(y):.1f}' y2='{py(y):.1f}' stroke='#e5e5e5'/>")
        parts.append(f"<text x='{left - 4}' y='{py(y) + 3:.1f}' text-anchor='end' font-size='9'>{y:g}</text>")
    for x in xs:
        parts.append(f"<text x='{px(x):.1f}' y='{height - bottom + 12}' text-anchor='middle' font-size='9'>{x:g}</text>")
    parts.append(f"<text x='{(left + width - right) / 2}' y='{height - 4}' text-anchor='middle' font-size='10'>{_e(x_label)}</text>")
    parts.append(f"<text x='10' y='{(top + height - bottom) / 2}' font-size='10' transform='rotate(-90 10 {(top + height - bottom) / 2})' text-anchor='middle'>{_e(y_label)}</text>")
    for i, (name, pts) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{coords}'/>")
        for x, y in pts:
            parts.append(f"<circle cx='{px(x):.1f}' cy='{py(y):.1f}' r='2.5' fill='{colour}'><title>{_e(name)} k={x:g}: {y:.3f}</title></circle>")
        ly = top + 12 * i
        parts.append(f"<rect x='{width - right + 8}' y='{ly}' width='10' height='3' fill='{colour}'/>")
        parts.append(f"<text x='{width - right + 22}' y='{ly + 5}' font-size='9'>{_e(name)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def scatter_svg(xy: np.ndarray, labels: Sequence[str], title: str, width: int = 520, height: int = 420) -> str:
    """A scatter plot of 2-D points coloured by label, with a legend."""
    left, right, top, bottom = 10, 130, 24, 10
    names = sorted(set(labels))
    colour = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    mins, maxs = xy.min(axis=0), xy.max(axis=0)
    span = np.where(maxs - mins > 0, maxs - mins, 1.0)
    scaled = (xy - mins) / span
    parts = [f"<svg width='{width}' height='{height}' role='img' aria-label='{_e(title)}'>"]
    parts.append(f"<text x='{(width - right) / 2}' y='14' text-anchor='middle' font-size='12'>{_e(title)}</text>")
    for (u, v), label in zip(scaled, labels):
        x = left + u * (width - left - right)
        y = top + (1 - v) * (height - top - bottom)
        parts.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{colour[label]}' fill-opacity='0.75'><title>{_e(label)}</title></circle>")
    for i, name in enumerate(names):
        ly = top + 14 * i
        parts.append(f"<circle cx='{width - right + 12}' cy='{ly + 4}' r='4' fill='{colour[name]}'/>")
        parts.append(f"<text x='{width - right + 20}' y='{ly + 8}' font-size='10'>{_e(name)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _example_grids(examples: list[Example]) -> str:
    if not examples:
        return "<p class='note'>No example queries.</p>"
    cache: dict[str, str] = {}

    def img(path: str, alt: str) -> str:
        if path not in cache:
            cache[path] = thumbnail_data_uri(path, THUMB_PX)[0]
        return f"<img src='{cache[path]}' alt='{_e(alt)}'>"

    out = []
    for ex in examples:
        if ex.first_hit_rank == 1:
            verdict = "<span class='hit'>hit</span>"
        elif ex.first_hit_rank == 0:
            verdict = "<span class='miss'>miss (correct item not in the gallery)</span>"
        else:
            verdict = f"<span class='miss'>miss: correct item at rank {ex.first_hit_rank}</span>"
        cells = [f"<div class='cell query'>{img(ex.query_path, 'query ' + ex.query_item)}<br>query<br>{_e(ex.query_item)}<br>{verdict}</div>"]
        for rank, r in enumerate(ex.results, start=1):
            cls = "cell correct" if r.correct else "cell"
            mark = " ✓" if r.correct else ""
            cells.append(f"<div class='{cls}'>{img(r.path, f'rank {rank}: {r.item_id}')}<br>#{rank} {_e(r.item_id)}{mark}<br>{r.score:.3f}</div>")
        out.append(f"<div class='grid'>{''.join(cells)}</div>")
    return "\n".join(out)


def _embedding_maps(data: ReportData) -> str:
    if data.map_xy is None:
        return "<p class='note'>Too few photos for a map.</p>"
    return (
        "<div class='plots'>"
        + scatter_svg(data.map_xy, data.map_categories, "coloured by category")
        + scatter_svg(data.map_xy, data.map_domains, "coloured by domain")
        + "</div>"
    )
