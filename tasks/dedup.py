"""Dedup/merge stage task: group near-duplicate listings and split by group.

Publishes ``groups`` (with the evidence of every merge) and ``splits`` (by group, so
no product leaks between train and test). With the demo shop's ground truth at hand,
the pairwise precision and recall of merges go into the manifest, for each method alone
(``merge_hash_precision``, ``merge_embedding_recall``, ...) and combined (``merge_precision``,
``merge_recall``: the groups actually published).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from street2shop.cleaning.dedup import DedupParams, make_splits, merge_near_duplicates, merge_quality
from street2shop.storage.names import DEDUP, GROUPS, SPLITS
from street2shop.storage.store import ArtifactRef, ArtifactStore, images_with_paths
from street2shop.storage.stages import STAGES_BY_NAME
from street2shop.tasks.stage import StageResult, report_to_prefect, run_stage

STAGE = DEDUP
CODE_VERSION = "3"  # 2: embedding pass; truth groups by any shared design; 3: whitened copies, complete linkage
OUTPUTS = STAGES_BY_NAME[STAGE].outputs  # as storage/stages.py declares them


def read_truth_design_ids(truth_items_csv: str | Path) -> dict[str, str]:
    with open(truth_items_csv, newline="") as fh:
        return {row["item_id"]: row["design_id"] for row in csv.DictReader(fh)}


def run_dedup(
    store: ArtifactStore,
    items_ref: ArtifactRef,
    images_ref: ArtifactRef,
    params: DedupParams,
    truth_items_csv: str | None = None,
) -> StageResult:
    def compute(writers) -> None:
        items = store.read_table(items_ref)
        images = images_with_paths(store, images_ref)
        shop = images.filter(pc.equal(images.column("role"), "shop"))
        result = merge_near_duplicates(items, shop, params)
        splits = make_splits(result.groups, items, params)
        writers[GROUPS].write_table(result.groups)
        writers[SPLITS].write_table(splits)
        figures = {k: v for k, v in dict(result.stats).items() if isinstance(v, (int, float, str))}
        figures["groups"] = len(set(result.groups.column("group_id").to_pylist()))
        for split in ("train", "val", "test"):
            figures[f"groups_{split}"] = pc.sum(pc.equal(splits.column("split"), split)).as_py() or 0
        if truth_items_csv:
            truth = read_truth_design_ids(truth_items_csv)
            product = dict(zip(items.column("item_id").to_pylist(), items.column("product_id").to_pylist()))
            figures.update({f"merge_{k}": v for k, v in merge_quality(result.groups, truth, product).items()})
            for method, groups in result.groups_by_method.items():
                figures.update({f"merge_{method}_{k}": v for k, v in merge_quality(groups, truth, product).items()})
        writers[GROUPS].metrics.update(figures)
        writers[SPLITS].metrics.update(figures)

    return run_stage(
        store, STAGE, CODE_VERSION, OUTPUTS, compute, inputs={"items": items_ref, "images": images_ref},
        params={**params.model_dump(mode="json"), "truth": bool(truth_items_csv)},
    )


@task(name="dedup-merge", cache_policy=NO_CACHE)
def dedup_task(home: str, items_ref: ArtifactRef, images_ref: ArtifactRef, params: DedupParams, truth_items_csv: str | None = None) -> StageResult:
    result = run_dedup(ArtifactStore(home), items_ref, images_ref, params, truth_items_csv)
    report_to_prefect(result, "dedup/merge")
    return result
