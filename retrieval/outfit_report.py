"""The outfit_evaluate stage's HTML page: the figures per model and size, and FITB examples
with what each model picked, so a person can judge."""

from __future__ import annotations

from html import escape

import numpy as np
import pyarrow as pa

from street2shop.models.outfit_view import OutfitView
from street2shop.retrieval.thumbnails import thumb_img

#: the chance baseline's name in the metrics
RANDOM = "random"


def outfit_report(metrics: pa.Table, test: pa.Table, answers: dict[str, dict], view: OutfitView, examples: int,
                  train_figures: dict) -> str:
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
                cells.append(f"<td>{r['value']:.3f} <small>({r['n']})</small></td>" if r else "<td></td>")
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
            f"same types. FITB: four candidates of the blank's type; chance 0.25. In brackets: questions.</p>{table}"
            f"<h2>Fill in the blank: examples</h2>{''.join(blocks)}</body></html>")
