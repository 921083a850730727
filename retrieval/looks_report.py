"""The looks_evaluate stage's HTML page: figures per model, direction and expansion (the test
snapshot -> items mAP with its 95 % bootstrap interval), per style, the space served and the
validation figures that chose it, and grids of held-out posts with what two models found."""

from __future__ import annotations

from html import escape

import pyarrow as pa

from street2shop.models.looks_view import LooksView
from street2shop.retrieval.expansion import EXPANSIONS
from street2shop.retrieval.look_metrics import top_k
from street2shop.retrieval.thumbnails import thumb_img

#: the untrained baseline's name in the metrics: the frozen features, cosine
BACKBONE = "backbone"


def _selection(train_figures: dict, k: int) -> str:
    candidates = train_figures.get("candidates") or {}
    if not candidates:
        return ""
    rows = "".join(f"<tr><td>{escape(n)}{' (served)' if n == train_figures.get('served') else ''}</td>"
                   f"<td>{'' if c.get(f'val_map{k}') is None else format(c[f'val_map{k}'], '.3f')}</td></tr>"
                   for n, c in candidates.items())
    return (f"<h2>Served: {escape(str(train_figures.get('served')))}</h2><p>Rule: {escape(str(train_figures.get('serve_rule')))}; "
            f"on validation posts, never test ones.</p><table><tr><th>candidate</th><th>val snap→items mAP@{k}</th></tr>"
            f"{rows}</table>")


def looks_report(metrics: pa.Table, view: LooksView, spaces: dict, item_ids: list[str], snap_ids: list[str],
                 examples: list[str], served: str, k: int, figures: dict | None = None, train_figures: dict | None = None) -> str:
    """Figures per model, direction and expansion (test split, and train for the heads), per
    style, and grids: a held-out post, what its stylists linked, and the top k of two models."""
    rows = metrics.to_pylist()
    key = {(r["model"], r["direction"], r["split"], r["expansion"], r["group"], r["metric"]): r for r in rows}
    models = list(dict.fromkeys(r["model"] for r in rows))
    lines = []
    for split in ("test", "train"):
        for model in models:
            for exp in ("none", *EXPANSIONS):
                cells = []
                for direction in ("snap_to_items", "item_to_snaps"):
                    for metric in ("map", "recall", "hit"):
                        r = key.get((model, direction, split, exp, "all", metric))
                        shown = (metric, split, exp) == ("map", "test", "none")
                        ci = (figures or {}).get(f"{model}_{direction}_map{k}_ci95") if shown else None
                        extra = f" <small>[{ci[0]:.3f}, {ci[1]:.3f}]</small>" if ci else ""
                        cells.append(f"<td>{r['value']:.3f}{extra}</td>" if r else "<td></td>")
                if any(c != "<td></td>" for c in cells):
                    lines.append(f"<tr><td>{split}</td><td>{escape(model)}</td><td>{exp}</td>{''.join(cells)}</tr>")
    head = "".join(f"<th>{d} {m}@{k}</th>" for d in ("snap→items", "item→snaps") for m in ("mAP", "recall", "hit"))
    table = f"<table><tr><th>split</th><th>model</th><th>expansion</th>{head}</tr>{''.join(lines)}</table>"
    styles = sorted({r["group"] for r in rows if r["group"] != "all"})
    style_rows = []
    for model in models:
        cells = []
        for style in styles:
            r = key.get((model, "snap_to_items", "test", "none", style, "map"))
            cells.append(f"<td>{r['value']:.3f} <small>({r['n']})</small></td>" if r else "<td></td>")
        style_rows.append(f"<tr><td>{escape(model)}</td>{''.join(cells)}</tr>")
    by_style = (f"<table><tr><th>snap→items mAP@{k} (test)</th>{''.join(f'<th>{s}</th>' for s in styles)}</tr>"
                f"{''.join(style_rows)}</table>")
    grids = []
    for snap in examples:
        linked = set(view.links[snap])
        q = snap_ids.index(snap)
        parts = [f"<div class=\"grid\"><div>{escape(snap)} ({escape(view.style_of.get(snap, ''))}): the post</div>"
                 f"{thumb_img(view.snap_photo.get(snap), 160)}<div>linked by the stylists</div>"
                 + "".join(thumb_img(view.photo_of.get(i)) for i in view.links[snap])]
        for model in (served, BACKBONE):
            if model not in spaces:
                continue
            items_m, snaps_m = spaces[model]
            top = top_k(snaps_m[q : q + 1], items_m, item_ids, k)[0]
            parts.append(f"<div>{escape(model)}: top {k} (green: linked)</div>"
                         + "".join(thumb_img(view.photo_of.get(i), mark="hit" if i in linked else "") for i, _ in top))
        grids.append("".join(parts) + "</div>")
    style = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
             "padding:3px 6px}.grid{margin:1em 0;padding:.5em;background:#f6f6f6}img{margin:2px}.hit{outline:3px solid #2a2}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Shop the look</title><style>{style}</style></head><body>"
            f"<h1>Shop the look</h1><p>Held-out posts (no post and no product in two splits). snap→items: a post's photo "
            f"against every item of the shop, relevant = the items its stylists linked; item→snaps: a linked item against "
            f"every post. In square brackets: the 95 % bootstrap interval of the test mAP (posts resampled).</p>{table}"
            f"{_selection(train_figures or {}, k)}<h2>Per style</h2>{by_style}<h2>Examples</h2>{''.join(grids)}</body></html>")
