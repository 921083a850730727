"""The learned localiser on the served embedder's one pass: the box of pass 1's map, its crop
embedded by a second pass or its window pooled from the same map, the whole photo last."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from street2shop.models.embedder import build_embedder
from street2shop.models.localise import BoxHead
from street2shop.models.onepass import one_pass_search, one_pass_searches

INPUT = (48, 32)  # (height, width) of the photo the head reads: not the embedder's square


def tiny_model():
    torch.manual_seed(0)
    return build_embedder("tiny", pretrained=False, dim=16, image_size=32).eval()


def centred_head(in_channels: int) -> BoxHead:
    """A head whose every cell votes equally for a box reaching 0.25 from the cell's centre on
    every side: the pooled box is (0.25, 0.25, 0.75, 0.75) whatever the photo."""
    torch.manual_seed(0)
    head = BoxHead(in_channels, hidden=8)
    with torch.no_grad():
        head.out.weight.zero_()
        head.out.bias.copy_(torch.tensor([0.0, *[math.log(math.e - 1)] * 4]))  # softplus = 1 -> 0.25
    return head.eval()


def photo(seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (96, 64, 3), dtype=np.uint8)  # 64 wide, 96 high
    return Image.fromarray(pixels)


def meta(model) -> dict:
    return {"backbone": model.config.backbone, "input_size": list(INPUT), "map_stride": 4}


def search(pooled: bool, **options):
    model = tiny_model()
    head = centred_head(model.backbone.num_features)
    return model, one_pass_search(model, "eager", head, meta(model), pooled=pooled, factors=[1.0], aspect=None, **options)


def test_the_crop_variant_embeds_the_box_in_a_second_pass_and_the_whole_photo_from_the_first():
    model, learned = search(pooled=False)
    image = photo()
    whole, fmap, (localisation,) = learned.localise([image])
    assert localisation.boxes == ((0.25, 0.25, 0.75, 0.75), (0.0, 0.0, 1.0, 1.0))
    assert localisation.garments[0].box == pytest.approx((0.25, 0.25, 0.75, 0.75))
    got = learned.vectors([image])[0]
    with torch.no_grad():
        box = model(model.preprocess(image.crop((16, 24, 48, 72)))[None])[0]  # the box in pixels
        squashed = model.preprocess.to_tensor(image.resize((INPUT[1], INPUT[0]), Image.Resampling.BICUBIC))[None]
        whole_expected = model(squashed)[0]
    np.testing.assert_allclose(got[0], box.numpy(), atol=1e-5)
    np.testing.assert_allclose(got[1], whole_expected.numpy(), atol=1e-5)
    assert fmap.shape == (1, model.backbone.num_features, 12, 8) and learned.passes == 2
    vectors, (found,) = learned.search([image])  # one photo, as a service asks
    np.testing.assert_array_equal(vectors[0], got)
    assert found == localisation


def test_the_pooled_variant_reads_the_box_window_of_the_same_map():
    model, learned = search(pooled=True)
    image = photo(1)
    got = learned.vectors([image])[0]
    squashed = model.preprocess.to_tensor(image.resize((INPUT[1], INPUT[0]), Image.Resampling.BICUBIC))[None]
    with torch.no_grad():
        fmap = model.backbone.forward_features(squashed)
        window = fmap[:, :, 3:9, 2:6]  # rows 0.25..0.75 of 12, columns 0.25..0.75 of 8
        expected = torch.nn.functional.normalize(model.head(window), dim=-1)[0]
    np.testing.assert_allclose(got[0], expected.numpy(), atol=1e-5)
    assert got.shape == (2, 16) and learned.passes == 1


def test_photo_files_give_the_vectors_of_the_decoded_photos(tmp_path):
    _, learned = search(pooled=False, include_whole=False)
    images = [photo(i) for i in range(3)]
    paths = []
    for i, image in enumerate(images):
        image.save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    got = learned.embed_paths(paths, batch_size=2)
    assert got.shape == (3, 1, 16)
    np.testing.assert_allclose(got, learned.vectors(images), atol=1e-6)


def test_variants_share_one_runner_and_bad_options_are_named():
    model = tiny_model()
    head = centred_head(model.backbone.num_features)
    both = one_pass_searches(model, "eager", head, meta(model), {"crop": {"factors": [1.1, 1.3]}, "pooled": {"pooled": True}})
    assert both["crop"].runner is both["pooled"].runner and both["crop"].passes == 3 and both["pooled"].passes == 1
    with pytest.raises(ValueError, match="unknown option.*'zoom'.*factors"):
        one_pass_search(model, "eager", head, meta(model), zoom=2)
    with pytest.raises(ValueError, match="backbone 'efficientnet_lite0'"):
        one_pass_search(model, "eager", head, {**meta(model), "backbone": "efficientnet_lite0"})
    with pytest.raises(ValueError, match="factors must be positive"):
        one_pass_search(model, "eager", head, meta(model), factors=[])


def test_a_compiled_search_runs_its_eager_ops_on_one_thread_and_gives_the_threads_back():
    """With OpenVINO the head and pooling run on one torch thread (their spinning workers took
    the cores from the compiled pass); the setting is restored after, also when searches overlap."""
    import threading

    pytest.importorskip("openvino")
    model = tiny_model()
    head = centred_head(model.backbone.num_features)
    compiled = one_pass_search(model, "openvino", head, meta(model), pooled=True, factors=[1.0], aspect=None)
    eager = one_pass_search(model, "eager", head, meta(model), pooled=True, factors=[1.0], aspect=None)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        original = compiled.head.detect

        def detect(fmap):
            seen.append(torch.get_num_threads())
            return original(fmap)

        object.__setattr__(compiled.head, "detect", detect)
        images = [photo(i) for i in range(4)]
        threads = [threading.Thread(target=compiled.search, args=([im],)) for im in images]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = compiled.vectors(images)
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
        np.testing.assert_allclose(got, eager.vectors(images), atol=1e-4)
    finally:
        torch.set_num_threads(before)
