"""The CLI's generate command, and a shop of real (shipped CC0) garments."""

from __future__ import annotations

import csv
import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from street2shop.shop import garments as G
from street2shop.shop.cli import shop_app


def test_real_assets_cover_every_category():
    index = G.real_index()
    assert set(index.values()) == set(G.CATEGORY_SLUGS)
    assert all((G.REAL_DIR / f).is_file() for f in index)
    assert len(index) == 100 and len(G.real_unrelated_photos(64)) == 20
    assert sum(f.stat().st_size for f in G.REAL_DIR.glob("*.jpg")) < 2.5e6
    assert "CC0" in (G.REAL_DIR / "LICENSE").read_text() or "Creative Commons" in (G.REAL_DIR / "LICENSE").read_text()


def test_recolouring_a_real_garment_changes_the_garment_not_the_background():
    name = sorted(G.real_index())[0]
    design = G.Design("d00001", G.real_index()[name], "solid", "real", 1, asset=name)
    navy, mustard = G.render_garment(design, "navy", 128), G.render_garment(design, "mustard", 128)
    m = np.asarray(navy.mask) > 200
    outside = np.asarray(navy.mask) < 10
    a, b = np.asarray(navy.scene, np.float32), np.asarray(mustard.scene, np.float32)
    assert np.abs(a[m] - b[m]).mean() > 40  # the garment is recoloured
    assert np.abs(a[outside] - b[outside]).mean() < 1  # the floor/bed it lies on is not
    # Mean garment colour moves towards the target's: mustard is redder-greener than navy.
    assert b[m][:, 0].mean() > a[m][:, 0].mean() and a[m][:, 2].mean() > b[m][:, 2].mean() - 40


def test_cli_generate_real_shop(tmp_path):
    out = tmp_path / "shop"
    result = CliRunner().invoke(shop_app, ["generate", str(out), "--seed", "2", "--products", "5",
                                           "--garments", "real", "--image-size", "64", "--workers", "1"])
    assert result.exit_code == 0, result.output
    catalog = json.loads((out / "catalog.json").read_text())
    assert len(catalog["products"]) == 5
    with open(out / "truth" / "images.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(Image.open(out / "images" / r["file"]).size == (64, 64) for r in rows)
    bad = CliRunner().invoke(shop_app, ["generate", str(tmp_path / "x"), "--garments", "cartoon"])
    assert bad.exit_code == 2 and "garments" in bad.output
    bad = CliRunner().invoke(shop_app, ["serve", str(out), "--p-429", "1.5"])
    assert bad.exit_code == 2 and "p_429" in bad.output
