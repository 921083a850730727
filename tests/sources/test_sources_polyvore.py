"""Reading Polyvore Outfits from its own layout, on a tiny fixture in that layout."""

from __future__ import annotations

import json

import pytest
from polyvore_testing import OUTFITS, write_polyvore

from street2shop.sources.labelled import DataError
from street2shop.sources.polyvore import read_polyvore


def test_reads_outfits_splits_and_questions(tmp_path):
    data = read_polyvore(write_polyvore(tmp_path / "pv"))
    split = dict(zip(data.splits.column("outfit_id").to_pylist(), data.splits.column("split").to_pylist()))
    assert split == {s: {"train": "train", "valid": "val", "test": "test"}[f] for f, outs in OUTFITS.items() for s in outs}
    rows = [r for r in data.outfits.to_pylist() if r["outfit_id"] == "103"]
    assert [(r["item_id"], r["type"], r["position"]) for r in rows] == [("1", "tops", 0), ("5", "bottoms", 1), ("9", "shoes", 2)]
    assert data.items.num_rows == 27 and set(data.items.column("category").to_pylist()) == {"tops", "bottoms", "shoes"}
    assert all(p.is_file() for p in data.image_paths.values())
    q = {r["question_id"]: r for r in data.questions.to_pylist()}
    # compatibility_test.txt line 5: "0 300_1 301_2 303_3" -> items 16, 20, 27
    assert q["test:c5"]["items"] == ["16", "20", "27"] and q["test:c5"]["label"] == 0
    assert q["test:c1"]["items"] == ["16", "17", "18"] and q["test:c1"]["label"] == 1
    f0 = q["test:f0"]  # set 300 less its shoes; the right answer is 300_3 = item 18
    assert f0["items"] == ["16", "17"] and f0["candidates"][f0["label"]] == "18" and f0["size"] == 3
    assert {r["split"] for r in data.questions.to_pylist()} == {"val", "test"}


def test_names_what_is_wrong(tmp_path):
    root = write_polyvore(tmp_path / "pv")
    (root / "images" / "5.jpg").unlink()
    with pytest.raises(DataError, match="photo"):
        read_polyvore(root)
    (root / "images" / "5.jpg").write_bytes((root / "images" / "4.jpg").read_bytes())
    path = root / "nondisjoint" / "compatibility_test.txt"
    path.write_text(path.read_text() + "1 300_1 999_2\n")
    with pytest.raises(DataError, match=r"compatibility_test.txt:6: '999_2'"):
        read_polyvore(root)
    with pytest.raises(DataError, match="not found"):
        read_polyvore(root, "disjoint")
    with pytest.raises(DataError, match="unknown Polyvore"):
        read_polyvore(root, "both")


def test_a_fitb_question_needs_one_answer_from_its_outfit(tmp_path):
    root = write_polyvore(tmp_path / "pv")
    path = root / "nondisjoint" / "fill_in_blank_test.json"
    qs = json.loads(path.read_text())
    qs[0]["answers"] = ["301_3", "302_3", "303_3", "301_3"]
    path.write_text(json.dumps(qs))
    with pytest.raises(DataError, match="0 answers from the question's own outfit"):
        read_polyvore(root)
