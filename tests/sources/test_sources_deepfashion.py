"""DeepFashion Consumer-to-shop's layout read as labelled photos (street2shop.sources.deepfashion),
on a tiny fixture in that layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from street2shop.sources.deepfashion import read_consumer_to_shop, write_dataset_csv
from street2shop.sources.labelled import DataError, read_labelled_csv

PAIRS = [
    ("img/TOPS/Summer_Wear/id_00000001/comsumer_01.jpg", "img/TOPS/Summer_Wear/id_00000001/shop_01.jpg", "id_00000001", "train"),
    ("img/TOPS/Summer_Wear/id_00000001/comsumer_02.jpg", "img/TOPS/Summer_Wear/id_00000001/shop_01.jpg", "id_00000001", "train"),
    ("img/DRESSES/Dress/id_00000002/comsumer_01.jpg", "img/DRESSES/Dress/id_00000002/shop_01.jpg", "id_00000002", "test"),
]


def deepfashion(root: Path, pairs=PAIRS, under_img: bool = True) -> Path:
    """The benchmark's layout: Eval/list_eval_partition.txt and the photos under Img/."""
    base = root / "Img" if under_img else root
    for i, pair in enumerate(pairs):
        for k, name in enumerate(pair[:2]):
            (base / name).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (48, 64), (40 * i, 100 + 50 * k, 90)).save(base / name)
    (root / "Eval").mkdir(parents=True, exist_ok=True)
    lines = [str(len(pairs)), "image_pair_name_1 image_pair_name_2 item_id evaluation_status", *(" ".join(p) for p in pairs)]
    (root / "Eval" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root


def test_every_photo_once_with_its_item_role_and_category(tmp_path) -> None:
    table = read_consumer_to_shop(deepfashion(tmp_path))
    rows = {Path(r["path"]).relative_to(tmp_path / "Img").as_posix(): r for r in table.to_pylist()}
    assert len(rows) == 5  # the shared shop photo of id_00000001 once
    shop = rows["img/TOPS/Summer_Wear/id_00000001/shop_01.jpg"]
    assert (shop["role"], shop["item_id"], shop["category"], shop["split"]) == ("shop", "id_00000001", "TOPS/Summer_Wear", "train")
    assert rows["img/DRESSES/Dress/id_00000002/comsumer_01.jpg"]["role"] == "street"
    assert read_consumer_to_shop(tmp_path, splits=("test",)).num_rows == 2


def test_written_csv_reads_back_as_a_labelled_dataset(tmp_path) -> None:
    csv_path = write_dataset_csv(read_consumer_to_shop(deepfashion(tmp_path / "df", under_img=False)), tmp_path / "photos.csv")
    photos = read_labelled_csv(csv_path, required=("role",))
    assert photos.table.num_rows == 5 and set(photos.table.column("role").to_pylist()) == {"shop", "street"}
    assert photos.attributes == ("product_id", "category", "colour")


def test_a_broken_layout_is_named(tmp_path) -> None:
    with pytest.raises(DataError, match="no Eval/list_eval_partition.txt"):
        read_consumer_to_shop(tmp_path)
    root = deepfashion(tmp_path / "a", pairs=[*PAIRS, ("img/X/Y/id_3/a.jpg", "img/X/Y/id_3/b.jpg", "id_3", "holdout")])
    with pytest.raises(DataError, match="1 bad line"):
        read_consumer_to_shop(root)
    root = deepfashion(tmp_path / "b")
    (root / "Img" / PAIRS[2][0]).unlink()
    with pytest.raises(DataError, match="1 photo"):
        read_consumer_to_shop(root)
    # a photo that is a consumer's in one pair and the shop's in another
    twisted = [PAIRS[0], (PAIRS[0][1], PAIRS[0][0], "id_00000001", "train")]
    with pytest.raises(DataError, match="is shop of id_00000001, earlier street"):
        read_consumer_to_shop(deepfashion(tmp_path / "c", pairs=twisted))
