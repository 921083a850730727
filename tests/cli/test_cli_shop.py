"""The CLI's generate command, and a shop of real (bundled CC0) garments."""

from __future__ import annotations

import csv
import json

from PIL import Image
from typer.testing import CliRunner

from street2shop.shop import garments as G
from street2shop.cli.shop import shop_app


def test_cli_generate_real_shop(tmp_path):
    out = tmp_path / "shop"
    result = CliRunner().invoke(shop_app, ["generate", str(out), "--seed", "2", "--products", "5",
                                           "--garments", "real", "--image-size", "64", "--workers", "1"])
    assert result.exit_code == 0, result.output
    catalog = json.loads((out / "catalog.json").read_text())
    assert len(catalog["products"]) == 5
    assert {c["slug"] for c in catalog["categories"]} == set(G.real_index().values())
    with open(out / "truth" / "images.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(Image.open(out / "images" / r["file"]).size == (64, 64) for r in rows)
    bad = CliRunner().invoke(shop_app, ["generate", str(tmp_path / "x"), "--garments", "cartoon"])
    assert bad.exit_code == 2 and "garments" in bad.output
    bad = CliRunner().invoke(shop_app, ["serve", str(out), "--p-429", "1.5"])
    assert bad.exit_code == 2 and "p_429" in bad.output
