"""The outfit_evaluate stage's HTML page: the figures per model and size (over all sizes with
95 % bootstrap intervals and the figure on training outfits), the model served and the
validation figures that chose it, and FITB examples with what each model picked, so a
person can judge."""

from __future__ import annotations

from html import escape

import numpy as np
import pyarrow as pa

from street2shop.models.outfit_view import OutfitView
from street2shop.retrieval.thumbnails import thumb_img

#: the chance baseline's name in the metrics
RANDOM = "random"


def _interval(figures: dict, key: str) -> str:
    ci = figures.get(f"{key}_ci95")
    train = figures.get(f"{key}_train")
    out = f" <small>[{ci[0]:.3f}, {ci[1]:.3f}]</small>" if ci else ""
    return out + (f" <small>train {train:.3f}</small>" if train is not None else "")


def _selection(train_figures: dict) -> str:
    candidates = train_figures.get("candidates") or {}
    if not candidates:
        return ""
    rows = "".join(f"<tr><td>{escape(n)}{' (served)' if n == train_figures.get('served') else ''}</td>"
                   + "".join(f"<td>{'' if c.get(k) is None else f'{c[k]:.3f}'}</td>" for k in ("val_auc", "val_fitb", "val_score"))
                   + "</tr>" for n, c in candidates.items())
    return (f"<h2>Served: {escape(str(train_figures.get('served')))}</h2><p>Rule: {escape(str(train_figures.get('serve_rule')))}; "
            f"on validation outfits, never test ones.</p><table><tr><th>candidate</th><th>val AUC</th><th>val FITB</th>"
            f"<th>val score</th></tr>{rows}</table>")


def outfit_report(metrics: pa.Table, test: pa.Table, answers: dict[str, dict], view: OutfitView, examples: int,
                  train_figures: dict, figures: dict | None = None) -> str:
    """A self-contained HTML page: the figures per model and size, and FITB examples with
    what each model picked, so a person can judge."""
    rows = metrics.to_pylist()
    models = list(dict.fromkeys(r["model"] for r in rows))
    sizes = sorted({r["size"] for r in rows})
    value = {(r["model"], r["metric"], r["size"]): r for r in rows}
    head = "".join(f"<th>{m} {'all' if z == 0 else f'size {z}'}</th>" for m in ("AUC", "FITB") for z in sizes)
    body = []
    for model in models:
        cells = []
        for metric in ("auc", "fitb"):
            for z in sizes:
                r = value.get((model, metric, z))
                extra = _interval(figures or {}, f"{model}_{metric}") if z == 0 else ""
                cells.append(f"<td>{r['value']:.3f}{extra} <small>({r['n']})</small></td>" if r else "<td></td>")
        seconds = train_figures.get(f"{model}_train_s")
        body.append(f"<tr><td>{escape(model)}</td>{''.join(cells)}<td>{seconds if seconds is not None else ''}</td></tr>")
    table = f"<table><tr><th>model</th>{head}<th>train s</th></tr>{''.join(body)}</table>"
    fitb = [q for q in test.to_pylist() if q["kind"] == "fitb"][:examples]
    shown = [m for m in models if m != RANDOM]
    blocks = []
    for q in fitb:
        context = "".join(thumb_img(view.photo_of.get(i)) for i in q["items"])
        cands = []
        for k, c in enumerate(q["candidates"]):
            picked = [m for m in shown if np.argmax(answers[m][q["question_id"]]) == k]
            mark = "right" if k == q["label"] else ""
            cands.append(f"<div class=\"cand {mark}\">{thumb_img(view.photo_of.get(c))}<br><small>{escape(', '.join(picked))}</small></div>")
        blocks.append(f"<div class=\"q\"><div>{escape(q['question_id'])}: the outfit</div>{context}"
                      f"<div>candidates (green: right; under each: the models that chose it)</div>{''.join(cands)}</div>")
    style = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}"
             ".q{margin:1em 0;padding:.5em;background:#f6f6f6}.cand{display:inline-block;margin:2px;padding:2px;text-align:center}"
             ".right{outline:3px solid #2a2}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Outfit compatibility</title><style>{style}</style></head>"
            f"<body><h1>Outfit compatibility (test split)</h1><p>AUC: real outfits against outfits of random items of the "
            f"same types. FITB: four candidates of the blank's type; chance 0.25. In square brackets: the 95 % bootstrap "
            f"interval (questions resampled); 'train': the same figure on training outfits; in round brackets: "
            f"questions.</p>{table}{_selection(train_figures)}"
            f"<h2>Fill in the blank: examples</h2>{''.join(blocks)}</body></html>")
