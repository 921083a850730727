"""Localise stage task: the garment localiser learned from the training street photos.

Publishes ``localiser`` (the box head, :data:`~street2shop.storage.names.LOCALISER_FILE`,
with the backbone and input size whose feature map it reads) and ``pseudo_boxes`` (the boxes
it learned from). Where truth exists it is scored, never trained on: the demo shop's
``truth/boxes.csv`` (its test split's customer photos) and each benchmark with a
``boxes.csv`` beside its ``queries.csv`` (hm-dev). A crawled real shop has no truth: its
figures say so (``truth: "no truth"``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from street2shop.cleaning.selection import query_images
from street2shop.models.backbones import create_backbone
from street2shop.models.localise import save_localiser
from street2shop.models.localise_training import LocaliserParams, learn_localiser, maps_function, score_localiser
from street2shop.retrieval.evaluation import Benchmark
from street2shop.storage.names import LOCALISE, LOCALISER, LOCALISER_FILE, PSEUDO_BOXES
from street2shop.storage.stages import STAGES_BY_NAME
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.data import DataRefs, load_annotated
from street2shop.tasks.stage import StageResult, report_to_prefect, run_stage

STAGE = LOCALISE
CODE_VERSION = "1"
OUTPUTS = STAGES_BY_NAME[STAGE].outputs  # as storage/stages.py declares them
#: a benchmark's true boxes: this file beside its queries CSV (``path,x0,y0,x1,y1``)
BENCHMARK_BOXES = "boxes.csv"
_COORDS = ("x0", "y0", "x1", "y1")


def read_truth_boxes(truth_boxes_csv: str | Path) -> dict[str, tuple[float, ...]]:
    """image_id -> its true garment box, from the demo shop's ``truth/boxes.csv``."""
    with open(truth_boxes_csv, newline="") as fh:
        return {row["image_id"]: tuple(float(row[c]) for c in _COORDS) for row in csv.DictReader(fh)}


def benchmark_boxes(benchmark: Benchmark) -> tuple[list[str], np.ndarray] | None:
    """The benchmark's query photos (absolute paths) and their true boxes; None without a
    ``boxes.csv`` beside its queries."""
    path = Path(benchmark.queries).parent / BENCHMARK_BOXES
    if not path.is_file():
        return None
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    paths = [str(p if (p := Path(row["path"])).is_absolute() else path.parent / p) for row in rows]
    return paths, np.asarray([[float(row[c]) for c in _COORDS] for row in rows], np.float32)


def run_localise(
    store: ArtifactStore, data: DataRefs, params: LocaliserParams, truth_boxes_csv: str | None = None,
    benchmarks: list[Benchmark] | tuple = (),
) -> StageResult:
    truth_file = truth_boxes_csv if truth_boxes_csv and Path(truth_boxes_csv).is_file() else None

    def compute(writers) -> None:
        if not params.pretrained:
            torch.manual_seed(params.seed)
        backbone = create_backbone(params.backbone, pretrained=params.pretrained)
        maps_of = maps_function(backbone, params.input_size, params.runtime)
        annotated = load_annotated(store, data)
        learned = learn_localiser(annotated, params, maps_of)
        figures = dict(learned.figures)
        figures.update(_truth_figures(learned.head, maps_of, annotated, truth_file))
        for benchmark in benchmarks:
            if (scored := benchmark_boxes(benchmark)) is not None:
                figures.update(score_localiser(learned.head, maps_of, *scored, prefix=f"{benchmark.name}_iou"))
        save_localiser(writers[LOCALISER].path(LOCALISER_FILE), learned.head, backbone=params.backbone,
                       pretrained=params.pretrained, input_size=[params.input_size, params.input_size],
                       map_stride=int(backbone.feature_stride), figures=figures)
        writers[PSEUDO_BOXES].write_table(learned.pseudo_boxes)
        for name in OUTPUTS:
            writers[name].metrics.update(figures)

    scored_on = [b.name for b in benchmarks if benchmark_boxes(b) is not None]
    return run_stage(store, STAGE, CODE_VERSION, OUTPUTS, compute, inputs=data.as_inputs(),
                     params={**params.model_dump(mode="json"), "truth": bool(truth_file), "benchmarks": scored_on})


def _truth_figures(head, maps_of, annotated, truth_file: str | None) -> dict:
    """IoU on the test split's customer photos that have a true box (the demo shop)."""
    if truth_file is None:
        return {"truth": "no truth"}
    truth = read_truth_boxes(truth_file)
    test = query_images(annotated, "test")
    # a photo listed under two items counts once; noise photos have no true box
    ids = [i for i in dict.fromkeys(test.column("image_id").to_pylist()) if i in truth]
    path_of = dict(zip(test.column("image_id").to_pylist(), test.column("path").to_pylist()))
    boxes = np.asarray([truth[i] for i in ids], np.float32).reshape(-1, 4)
    return {"truth": "truth/boxes.csv", **score_localiser(head, maps_of, [path_of[i] for i in ids], boxes, prefix="test_iou")}


@task(name="localise", cache_policy=NO_CACHE)
def localise_task(
    home: str, data: DataRefs, params: LocaliserParams, truth_boxes_csv: str | None = None, benchmarks: list[Benchmark] | None = None,
) -> StageResult:
    result = run_localise(ArtifactStore(home), data, params, truth_boxes_csv, benchmarks or [])
    report_to_prefect(result, "localise")
    return result
