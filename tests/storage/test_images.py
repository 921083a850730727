"""The one image decoder (street2shop.storage.images): upright, RGB, bombs refused, and the
same upright pixels wherever a photo is embedded."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photo_testing import as_phone_stores_it, png, upright
from street2shop.storage.images import UnreadableImageError, open_image

def test_exif_orientation_is_applied_for_bytes_and_files(tmp_path: Path) -> None:
    photo = upright()
    data = as_phone_stores_it(photo)
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.size == (40, 64)  # what a decoder that ignores the tag sees
    assert np.array_equal(np.asarray(open_image(data)), np.asarray(photo))
    path = tmp_path / "phone.png"
    path.write_bytes(data)
    assert np.array_equal(np.asarray(open_image(path)), np.asarray(photo))


def test_every_mode_comes_out_rgb() -> None:
    for mode in ("L", "P", "RGBA", "CMYK", "I;16"):
        image = Image.new(mode, (8, 8))
        buf = io.BytesIO()
        image.save(buf, "TIFF")
        assert open_image(buf.getvalue()).mode == "RGB"


def test_unreadable_and_oversized_images_name_the_file(tmp_path: Path, monkeypatch) -> None:
    cut = tmp_path / "cut.png"
    cut.write_bytes(png(upright())[:200])
    with pytest.raises(UnreadableImageError, match="cut.png"):
        open_image(cut)
    with pytest.raises(UnreadableImageError, match="missing.jpg"):
        open_image(tmp_path / "missing.jpg")
    with pytest.raises(UnreadableImageError, match="uploaded bytes"):
        open_image(b"not an image")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 40 - 1)
    with pytest.raises(UnreadableImageError, match="more than the limit"):
        open_image(png(upright()))


def test_min_size_decodes_a_large_jpeg_at_reduced_scale() -> None:
    buf = io.BytesIO()
    upright(size=(1600, 1200)).save(buf, "JPEG", quality=90)
    small = open_image(buf.getvalue(), min_size=200)
    assert small.size == (400, 300)  # 1/4 scale: the smallest keeping both sides >= 200
    assert open_image(buf.getvalue()).size == (1600, 1200)


def test_an_upright_and_an_exif_rotated_photo_embed_the_same_in_the_pipeline(tmp_path: Path) -> None:
    """``embed_images`` (evaluation, indexing, mining, training's validation) reads files
    through the one decoder: the phone's way of storing a portrait changes nothing."""
    from street2shop.models.embed import embed_images
    from street2shop.models.embedder import build_embedder

    model = build_embedder(backbone="tiny", dim=8, pretrained=False, image_size=32).eval()
    photo = upright(1)
    (tmp_path / "upright.png").write_bytes(png(photo))
    (tmp_path / "phone.png").write_bytes(as_phone_stores_it(photo))
    (tmp_path / "sideways.png").write_bytes(png(photo.transpose(Image.Transpose.ROTATE_90)))
    a, b, sideways = embed_images(model, [str(tmp_path / n) for n in ("upright.png", "phone.png", "sideways.png")], num_workers=0)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.allclose(a, sideways, atol=1e-3)  # orientation does reach the vector


def test_heic_photos_decode_like_any_other() -> None:
    """HEIC, an iPhone's default, decodes through the same reader (pillow-heif's opener)."""
    photo = upright(2).resize((8, 5)).resize((64, 40), Image.Resampling.BICUBIC)  # smooth, as photos are
    buf = io.BytesIO()
    photo.save(buf, "HEIF", quality=95)
    decoded = open_image(buf.getvalue())
    assert decoded.size == photo.size and decoded.mode == "RGB"
    assert np.abs(np.asarray(decoded, np.int16) - np.asarray(photo, np.int16)).mean() < 6  # lossy, but the same picture
