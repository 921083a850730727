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

import warnings
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


# -- 95 % intervals and the serving rule ---------------------------------------------------------
#: resamples of a bootstrap interval
BOOTSTRAP_RESAMPLES = 1000


def bootstrap_ci(samples: Sequence, statistic: Callable[..., np.ndarray], seed: int = 0, level: float = 0.95,
                 resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """The percentile bootstrap interval ``(low, high)`` of ``statistic`` over the questions
    (or queries) ``samples``: one array, or a tuple of arrays resampled together (paired,
    e.g. ``(scores, labels)`` for an AUC). ``statistic(*arrays, axis=-1)`` is vectorised
    over resamples (scipy's convention). Seeded, so a rerun gives the same interval; NaN with
    fewer than two samples."""
    from scipy.stats import DegenerateDataWarning, bootstrap  # the library's resampler; scipy is slow to import

    arrays = tuple(np.asarray(a, float) for a in (samples if isinstance(samples, tuple) else (samples,)))
    if len(arrays[0]) < 2:
        return float("nan"), float("nan")
    with warnings.catch_warnings():  # every resample alike (all FITB right, say): the interval is that point
        warnings.simplefilter("ignore", DegenerateDataWarning)
        res = bootstrap(arrays, statistic, n_resamples=resamples, confidence_level=level, method="percentile",
                        paired=True, vectorized=True, rng=np.random.default_rng([seed, 41]))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def auc_ci(scores: Sequence[float], labels: Sequence[int], seed: int = 0) -> tuple[float, float]:
    """95 % interval of the compatibility AUC, questions resampled."""
    return bootstrap_ci((scores, labels), _auc_along, seed)


def _auc_along(scores: np.ndarray, labels: np.ndarray, axis: int = -1) -> np.ndarray:
    """:func:`compatibility_auc` of each row (resample) at once: Mann-Whitney U over average
    ranks; NaN for a resample without both labels."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=axis)
    y = labels > 0.5
    pos = y.sum(axis=axis)
    neg = y.shape[axis] - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * y).sum(axis=axis) - pos * (pos + 1) / 2) / (pos * neg)


def mean_ci(values: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """95 % interval of a mean of per-question values (FITB right or not, a query's AP@k)."""
    return bootstrap_ci(np.asarray(values, float), np.mean, seed)


def question_intervals(questions: pa.Table, answers: Mapping[str, list[float]], seed: int = 0
                       ) -> dict[str, tuple[float, float]]:
    """``{"auc": (low, high), "fitb": (low, high)}`` of one model's ``answers`` (from
    :func:`score_questions`) to ``questions`` (one split)."""
    scores, labels, right = [], [], []
    for q in questions.to_pylist():
        if q["question_id"] not in answers:
            continue
        if q["kind"] == "compatibility":
            scores.append(answers[q["question_id"]][0])
            labels.append(q["label"])
        else:
            right.append(fitb_correct(answers[q["question_id"]], q["label"]))
    return {"auc": auc_ci(scores, labels, seed), "fitb": mean_ci(right, seed)}


def serve_by_validation(scores: Mapping[str, float], baselines: Sequence[str], forced: str = "best") -> tuple[str, str]:
    """``(served, rule)``: the candidate with the highest validation score; a baseline wins a
    tie (a trained model must beat every baseline to be served), NaN scores never win.
    ``forced``: a candidate's name serves it whatever the figures ("best": the rule)."""
    if forced != "best":
        if forced not in scores:
            raise ValueError(f"serve={forced!r} is not a candidate: {sorted(scores)}")
        return forced, f"forced by serve={forced!r}"
    if not scores:
        raise ValueError("no candidate to serve")
    order = [*(b for b in baselines if b in scores), *(n for n in scores if n not in baselines)]
    best = order[0]
    for name in order[1:]:
        value, top = scores[name], scores[best]
        if value == value and (top != top or value > top):
            best = name
    return best, "highest validation score; baselines win ties"
