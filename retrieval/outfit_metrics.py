"""Outfit compatibility figures: the questions, and how a model's answers are scored.

Two tasks, as on Polyvore Outfits (Vasileva et al. 2018):

* **compatibility AUC**: real outfits (label 1) against outfits of the same types made of
  random items (label 0); a model scores each outfit, the AUC is the chance that a real one
  outscores a made-up one (ties count half).
* **fill in the blank (FITB)**: an outfit less one item and four candidates of the missing
  item's type, one of them right; accuracy of picking it (chance: 25 %). A tie between the
  best candidates counts as the share of them that is right, so a model that cannot tell
  (a constant) scores chance, not 0 or 1.

``make_questions`` draws both kinds from outfits and a pool of items per split (every
position of an outfit is a FITB question); a data set that brings its own questions
(Polyvore's ``compatibility_*.txt`` and ``fill_in_blank_*.json``) is scored the same way.
Figures are per outfit size and over all sizes (size 0).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from street2shop.storage.schemas import OUTFIT_METRICS, OUTFIT_QUESTIONS

#: candidates of a FITB question (the right one included)
FITB_CANDIDATES = 4


def compatibility_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """ROC AUC of ``scores`` for ``labels`` (1 = compatible), ties counted half
    (Mann-Whitney U over average ranks); NaN without both labels."""
    s = np.asarray(scores, float)
    y = np.asarray(labels, int)
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average rank over each run of equal scores
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def fitb_correct(candidate_scores: Sequence[float], answer: int) -> float:
    """1 if the right candidate scores highest alone, 1/t if it ties with t-1 others at the
    top, else 0."""
    s = np.asarray(candidate_scores, float)
    best = np.flatnonzero(s == s.max())
    return 1.0 / len(best) if answer in best else 0.0


def make_questions(
    outfits: pa.Table,
    splits: pa.Table,
    type_of: Mapping[str, str],
    seed: int = 0,
    negatives_per_outfit: int = 1,
    which: Sequence[str] = ("val", "test"),
) -> pa.Table:
    """Compatibility and FITB questions (``OUTFIT_QUESTIONS``) for the outfits of ``which``
    splits. Random items come from the items of that split's outfits (so a test question
    holds test items only), of the same type; a FITB's wrong candidates are not in the
    outfit. ``type_of``: item id -> type."""
    rng = np.random.default_rng([seed, 29])
    split_of = dict(zip(splits.column("outfit_id").to_pylist(), splits.column("split").to_pylist()))
    by_outfit: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for row in outfits.to_pylist():
        by_outfit[row["outfit_id"]].append((row["position"], row["item_id"]))
    rows: list[dict] = []
    for split in which:
        ids = sorted(o for o in by_outfit if split_of.get(o) == split)
        pool: dict[str, list[str]] = defaultdict(list)
        for oid in ids:
            for _, item in by_outfit[oid]:
                pool[type_of[item]].append(item)
        pool = {t: sorted(set(v)) for t, v in pool.items()}
        for oid in ids:
            items = [i for _, i in sorted(by_outfit[oid])]
            n = len(items)
            rows.append(_question(f"{oid}:c", "compatibility", split, items, None, 1, n))
            for k in range(negatives_per_outfit):
                fake = [pool[type_of[i]][int(rng.integers(len(pool[type_of[i]])))] for i in items]
                rows.append(_question(f"{oid}:c{k}", "compatibility", split, fake, None, 0, n))
            for pos, blank in enumerate(items):
                others = [i for i in pool[type_of[blank]] if i not in items]
                if len(others) < FITB_CANDIDATES - 1:
                    continue  # too few items of this type in the split to ask
                wrong = [others[j] for j in rng.choice(len(others), FITB_CANDIDATES - 1, replace=False)]
                answer = int(rng.integers(FITB_CANDIDATES))
                candidates = wrong[:answer] + [blank] + wrong[answer:]
                rest = items[:pos] + items[pos + 1 :]
                rows.append(_question(f"{oid}:f{pos}", "fitb", split, rest, candidates, answer, n))
    return pa.Table.from_pylist(rows, schema=OUTFIT_QUESTIONS)


def _question(qid: str, kind: str, split: str, items: list[str], candidates: list[str] | None, label: int,
              size: int) -> dict:
    return {"question_id": qid, "kind": kind, "split": split, "items": items, "candidates": candidates,
            "label": label, "size": size}


#: outfit -> score (higher: more compatible); (context, candidate) -> score
OutfitScorer = Callable[[Sequence[str]], float]
FitbScorer = Callable[[Sequence[str], Sequence[str]], Sequence[float]]


def score_questions(
    questions: pa.Table, model: str, outfit_score: OutfitScorer, fitb_scores: FitbScorer
) -> tuple[pa.Table, dict[str, list]]:
    """``OUTFIT_METRICS`` rows of ``model`` per split and size (0 = all), and the raw answers
    (question id -> score or candidate scores) for the report."""
    per: dict[tuple[str, str, int], list] = defaultdict(list)
    answers: dict[str, list] = {}
    for q in questions.to_pylist():
        sizes = (0, q["size"])
        if q["kind"] == "compatibility":
            s = float(outfit_score(q["items"]))
            answers[q["question_id"]] = [s]
            for size in sizes:
                per[(q["split"], "auc", size)].append((s, q["label"]))
        else:
            s = [float(v) for v in fitb_scores(q["items"], q["candidates"])]
            answers[q["question_id"]] = s
            for size in sizes:
                per[(q["split"], "fitb", size)].append(fitb_correct(s, q["label"]))
    rows = []
    for (split, metric, size), values in sorted(per.items()):
        if metric == "auc":
            value = compatibility_auc([v for v, _ in values], [y for _, y in values])
        else:
            value = float(np.mean(values))
        rows.append({"model": model, "split": split, "size": size, "metric": metric, "value": value, "n": len(values)})
    return pa.Table.from_pylist(rows, schema=OUTFIT_METRICS), answers


def chance_rows(questions: pa.Table, model: str = "random") -> pa.Table:
    """What guessing scores, exactly: AUC 0.5 and FITB 1/4 (the expectation, not a draw)."""
    counts: dict[tuple[str, str, int], int] = defaultdict(int)
    for q in questions.select(["kind", "split", "size"]).to_pylist():
        metric = "auc" if q["kind"] == "compatibility" else "fitb"
        for size in (0, q["size"]):
            counts[(q["split"], metric, size)] += 1
    rows = [{"model": model, "split": s, "size": z, "metric": m, "value": 0.5 if m == "auc" else 1 / FITB_CANDIDATES, "n": n}
            for (s, m, z), n in sorted(counts.items())]
    return pa.Table.from_pylist(rows, schema=OUTFIT_METRICS)
