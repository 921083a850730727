"""The localise stage: learns from the training street photos only, publishes a head that
loads, scores it against the shop's true boxes and a benchmark's, re-runs skip."""

from __future__ import annotations

import csv
import shutil

import pyarrow as pa
import pytest
from crawled_testing import crawled_shop

from street2shop.models.localise import load_localiser
from street2shop.models.localise_training import LocaliserParams
from street2shop.retrieval.evaluation import Benchmark
from street2shop.storage.names import LOCALISER, LOCALISER_FILE, PSEUDO_BOXES
from street2shop.tasks.data import DataRefs, load_annotated
from street2shop.tasks.localise import run_localise

PARAMS = LocaliserParams(backbone="tiny", pretrained=False, input_size=64, hidden=16, steps=10, runtime="eager")


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("localise")
    store, crawl, dedup = crawled_shop(root, n_products=24)
    with store.publish("noise", ["noise_scores", "noise_labels"], "v1") as writers:  # every photo kept
        writers["noise_scores"].write_table(pa.table({"image_id": pa.array([], pa.string()), "p_noise": pa.array([], pa.float32()),
                                                      "keep": pa.array([], pa.bool_())}))
        writers["noise_labels"].write_table(pa.table({"image_id": pa.array([], pa.string()), "label": pa.array([], pa.string())}))
    data = DataRefs(items=crawl["items"], images=crawl["images"], groups=dedup["groups"], splits=dedup["splits"],
                    noise_scores=store.latest("noise", "noise_scores"), noise_labels=store.latest("noise", "noise_labels"))
    return root, store, data


def test_learns_from_training_street_photos_and_is_scored_against_truth(shop, tmp_path):
    root, store, data = shop
    # a benchmark: a few of the shop's photos with their true boxes beside its queries CSV
    truth = list(csv.DictReader(open(root / "shop" / "truth" / "boxes.csv")))[:3]
    (tmp_path / "q").mkdir()
    for row in truth:
        shutil.copyfile(root / "shop" / "images" / row["file"], tmp_path / "q" / row["file"])
    (tmp_path / "queries.csv").write_text("path,item_id\n")
    with open(tmp_path / "boxes.csv", "w") as fh:
        fh.write("path,x0,y0,x1,y1\n" + "".join(f"q/{r['file']},{r['x0']},{r['y0']},{r['x1']},{r['y1']}\n" for r in truth))
    bench = Benchmark(name="bench", gallery=str(tmp_path / "gallery.csv"), queries=str(tmp_path / "queries.csv"))

    result = run_localise(store, data, PARAMS, str(root / "shop" / "truth" / "boxes.csv"), [bench])
    head, meta = load_localiser(store.file(result[LOCALISER], LOCALISER_FILE))
    assert meta["backbone"] == "tiny" and meta["input_size"] == [64, 64] and meta["map_stride"] >= 1
    pseudo = store.read_table(result[PSEUDO_BOXES])
    annotated = load_annotated(store, data).to_pylist()
    split_of = {(r["image_id"]): (r["split"], r["role"]) for r in annotated}
    assert pseudo.num_rows > 0 and {split_of[i] for i in pseudo.column("image_id").to_pylist()} == {("train", "street")}
    for row in pseudo.to_pylist():
        assert 0 <= row["x0"] < row["x1"] <= 1 and 0 <= row["y0"] < row["y1"] <= 1 and row["category"]
    figures = result.metrics
    test_street = {r["image_id"] for r in annotated if r["split"] == "test" and r["role"] == "street"}
    assert figures["pseudo_boxes"] == pseudo.num_rows and figures["truth"] == "truth/boxes.csv"
    assert figures["test_iou_photos"] == len(test_street) > 0 and 0 <= figures["test_iou_median"] <= 1
    assert figures["bench_iou_photos"] == 3 and figures["training_seconds"] > 0
    assert set(head.categories) == set(pseudo.column("category").to_pylist()) or len(head.categories) == 0
    assert run_localise(store, data, PARAMS, str(root / "shop" / "truth" / "boxes.csv"), [bench]).skipped


def test_a_shop_without_truth_says_so(shop):
    _, store, data = shop
    result = run_localise(store, data, PARAMS.model_copy(update={"seed": 1}))
    assert result.metrics["truth"] == "no truth" and "test_iou_median" not in result.metrics
