"""The fast inference modes give the eager fp32 embeddings, and fail clearly without a backend."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from street2shop.models.embed import embed_images
from street2shop.models.embedder import build_embedder
from street2shop.models.fast import (
    BackendUnavailableError,
    InferenceEmbedder,
    list_modes,
    optimize_for_inference,
)


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    model = build_embedder("tiny", pretrained=False, dim=16).eval()
    # Non-trivial BatchNorm statistics, so a runner that ignored them would disagree.
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return model


def random_batch(n: int = 5, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def assert_same_embeddings(fast, reference, images: torch.Tensor) -> None:
    with torch.inference_mode():
        expected, got = reference(images), fast(images)
    assert got.shape == expected.shape
    cosine = (torch.nn.functional.normalize(got.float(), dim=-1) * expected).sum(-1)
    assert cosine.min().item() > 0.999, cosine
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4)


def test_registry_lists_modes_and_rejects_unknown_names():
    assert {"eager", "channels_last", "compile", "onnx", "openvino", "openvino_int8"} <= set(list_modes())
    with pytest.raises(ValueError, match="unknown inference mode 'int4'"):
        optimize_for_inference(tiny_model(), mode="int4")
    with pytest.raises(ValueError, match="unknown inference mode 'nope'"):
        optimize_for_inference(tiny_model(), mode="eager", fallback="nope")
    with pytest.raises(ValueError, match="threads"):
        optimize_for_inference(tiny_model(), mode="eager", threads=0)


def test_channels_last_matches_eager_and_keeps_metadata():
    reference = tiny_model()
    fast = optimize_for_inference(tiny_model(), mode="channels_last")
    assert isinstance(fast, InferenceEmbedder) and fast.mode == "channels_last"
    assert fast.dim == 16 and fast.preprocess == reference.preprocess and not fast.training
    assert_same_embeddings(fast, reference, random_batch())
    with pytest.raises(RuntimeError, match="training mode"):
        fast.train()


def test_embed_images_does_not_undo_the_runner_layout(synthetic_images):
    # embed_images calls model.to(memory_format=contiguous) on CPU; the runner's weights must stay NHWC.
    fast = optimize_for_inference(tiny_model(), mode="channels_last")
    paths = synthetic_images.column("path").to_pylist()[:4]
    expected = embed_images(tiny_model(), paths, batch_size=2, num_workers=0, device="cpu")
    got = embed_images(fast, paths, batch_size=2, num_workers=0, device="cpu")
    first_conv = fast.source.backbone.body[0].weight
    assert first_conv.is_contiguous(memory_format=torch.channels_last) and not first_conv.is_contiguous()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_onnx_matches_eager_through_embed_images(synthetic_images):
    pytest.importorskip("onnxruntime")
    reference = tiny_model()
    fast = optimize_for_inference(tiny_model(), mode="onnx", threads=1)
    assert_same_embeddings(fast, reference, random_batch(7))
    # The served path: embed_images accepts the fast module exactly like an Embedder.
    paths = synthetic_images.column("path").to_pylist()[:6]
    expected = embed_images(reference, paths, batch_size=4, num_workers=0, device="cpu")
    got = embed_images(fast, paths, batch_size=4, num_workers=0, device="cpu")
    assert (got * expected).sum(1).min() > 0.999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_missing_onnxruntime_raises_clearly_or_falls_back(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(BackendUnavailableError, match="pip install onnxruntime"):
        optimize_for_inference(tiny_model(), mode="onnx")
    reference = tiny_model()
    fallen_back = optimize_for_inference(tiny_model(), mode="onnx", fallback="channels_last")
    assert fallen_back.mode == "channels_last"
    assert_same_embeddings(fallen_back, reference, random_batch())


def test_compile_without_a_compiler_raises_clearly(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(BackendUnavailableError, match="C/C\\+\\+ compiler"):
        optimize_for_inference(tiny_model(), mode="compile")
    assert optimize_for_inference(tiny_model(), mode="compile", fallback="eager").training is False


@pytest.mark.slow
def test_compile_matches_eager():
    reference = tiny_model()
    fast = optimize_for_inference(tiny_model(), mode="compile")
    assert_same_embeddings(fast, reference, random_batch())


@pytest.mark.slow
def test_onnx_matches_eager_on_the_default_backbone():
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    reference = build_embedder("efficientnet_lite0", pretrained=True, dim=64).eval()
    fast = optimize_for_inference(reference, mode="onnx")
    assert_same_embeddings(fast, reference, random_batch(3, size=224))


def test_openvino_matches_eager_through_embed_images(synthetic_images):
    pytest.importorskip("openvino")
    reference = tiny_model()
    fast = optimize_for_inference(tiny_model(), mode="openvino", threads=1)
    assert isinstance(fast, InferenceEmbedder) and fast.mode == "openvino" and fast.dim == 16
    assert_same_embeddings(fast, reference, random_batch(7))
    assert_same_embeddings(fast, reference, random_batch(1))  # the batch axis is dynamic
    paths = synthetic_images.column("path").to_pylist()[:6]
    expected = embed_images(reference, paths, batch_size=4, num_workers=0, device="cpu")
    got = embed_images(fast, paths, batch_size=4, num_workers=0, device="cpu")
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_openvino_fp32_pins_fp32_kernels_even_where_bf16_exists():
    # OpenVINO picks bf16 by itself on AMX / AVX512-BF16 CPUs; the fp32 mode must not.
    pytest.importorskip("openvino")
    fast = optimize_for_inference(tiny_model(), mode="openvino", threads=1)
    expected = tiny_model()(random_batch(3)).detach()
    np.testing.assert_allclose(fast(random_batch(3)).numpy(), expected.numpy(), atol=1e-5)


def test_openvino_bf16_is_close_to_fp32_or_unavailable_with_a_reason():
    pytest.importorskip("openvino")
    from street2shop.models.fast import cpu_supports_bf16

    if not cpu_supports_bf16():
        with pytest.raises(BackendUnavailableError, match="AMX or AVX512-BF16"):
            optimize_for_inference(tiny_model(), mode="openvino_bf16", threads=1)
        return
    fast = optimize_for_inference(tiny_model(), mode="openvino_bf16", threads=1)
    images = random_batch(8)
    with torch.inference_mode():
        expected, got = tiny_model()(images), fast(images)
    cosine = (got * expected).sum(1)
    assert cosine.min().item() > 0.99, cosine
    assert (got - expected).abs().max().item() > 1e-5  # really bf16: not float-equal to fp32


def test_openvino_streams_run_side_by_side_with_the_same_results():
    pytest.importorskip("openvino")
    from concurrent.futures import ThreadPoolExecutor

    fast = optimize_for_inference(tiny_model(), mode="openvino", threads=2, streams=2)
    assert fast.streams == 2
    batches = [random_batch(3) for _ in range(6)]
    with ThreadPoolExecutor(3) as pool:  # more callers than streams: they take turns
        got = list(pool.map(fast, batches))
    reference = tiny_model()
    for images, vectors in zip(batches, got):
        np.testing.assert_allclose(vectors.numpy(), reference(images).detach().numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="streams .3. cannot exceed threads .2."):
        optimize_for_inference(tiny_model(), mode="openvino", threads=2, streams=3)
    with pytest.raises(ValueError, match="streams must be >= 1"):
        optimize_for_inference(tiny_model(), mode="openvino", streams=0)
    assert optimize_for_inference(tiny_model(), mode="onnx", threads=2, streams=2).streams == 1


def test_openvino_int8_stays_close_to_fp32_and_is_really_quantised():
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    calibration = random_batch(48)
    # Calibrated on other photos than the ones compared (as with real training photos).
    images = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    reference = tiny_model()
    fast = optimize_for_inference(tiny_model(), mode="openvino_int8", threads=1, calibration=calibration)
    assert fast.mode == "openvino_int8"
    with torch.inference_mode():
        expected, got = reference(images), fast(images)
    np.testing.assert_allclose(got.norm(dim=1).numpy(), 1.0, atol=1e-5)  # normalisation stays fp32
    cosine = (got * expected).sum(1)
    # int8 rounding of the middle convolution (its weights and input) moves each embedding by
    # about a percent of its length: cosine well above 0.99, yet not float-equal.
    assert cosine.min().item() > 0.99, cosine
    assert (got - expected).abs().max().item() > 1e-5


def test_quantised_graph_keeps_the_ends_in_fp32():
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from street2shop.models.fast import quantize_openvino

    network = quantize_openvino(tiny_model(), random_batch(8))
    ops = network.get_ordered_ops()
    convs = [i for i, op in enumerate(ops) if op.get_type_name() == "Convolution"]
    assert len(convs) == 3  # the tiny backbone's three convolutions

    def quantised_inputs(index: int) -> bool:
        # A quantised convolution reads activations (and weights) through FakeQuantize nodes.
        return any(
            inp.get_source_output().get_node().get_type_name() == "FakeQuantize" for inp in ops[index].inputs()
        )

    assert [quantised_inputs(i) for i in convs] == [False, True, False]
    after_last = {op.get_type_name() for op in ops[convs[-1] :]}
    assert "FakeQuantize" not in after_last


def test_openvino_int8_rejects_missing_or_misshapen_calibration():
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    with pytest.raises(ValueError, match="needs calibration photos"):
        optimize_for_inference(tiny_model(), mode="openvino_int8")
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        optimize_for_inference(tiny_model(), mode="openvino_int8", calibration=random_batch(4, size=64))


def test_missing_openvino_raises_clearly_or_falls_back(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` fail
    for mode in ("openvino", "openvino_int8"):
        with pytest.raises(BackendUnavailableError, match="pip install openvino"):
            optimize_for_inference(tiny_model(), mode=mode, calibration=random_batch(4))
    fallen_back = optimize_for_inference(tiny_model(), mode="openvino", fallback="eager")
    assert not isinstance(fallen_back, InferenceEmbedder)
    assert_same_embeddings(fallen_back, tiny_model(), random_batch())


def test_missing_nncf_names_it(monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(BackendUnavailableError, match="pip install nncf"):
        optimize_for_inference(tiny_model(), mode="openvino_int8", calibration=random_batch(4))
    # The fp32 OpenVINO mode does not need NNCF.
    assert optimize_for_inference(tiny_model(), mode="openvino").mode == "openvino"


@pytest.mark.parametrize("mode", ["eager", "onnx", "openvino"])
def test_one_pass_returns_the_embedding_and_the_backbone_map_of_one_photo(mode):
    """``feature_map=(h, w)``: one forward pass gives the embedding the model gives photos of
    that size and the feature map its backbone computes, in every fp32 mode."""
    if mode == "openvino":
        pytest.importorskip("openvino")
    reference = tiny_model()
    images = torch.randn(3, 3, 48, 32, generator=torch.Generator().manual_seed(3))  # not the model's square
    fast = optimize_for_inference(tiny_model(), mode=mode, feature_map=(48, 32))
    with torch.inference_mode():
        vectors, fmap = fast(images)
        expected_map = reference.backbone.forward_features(images)
        expected = reference(images)
    assert fmap.shape == expected_map.shape == (3, 32, 12, 8)
    np.testing.assert_allclose(fmap.numpy(), expected_map.numpy(), atol=1e-4)
    np.testing.assert_allclose(vectors.numpy(), expected.numpy(), atol=1e-4)
    assert fast.dim == 16 and fast.preprocess == reference.preprocess


def test_one_pass_int8_is_quantised_like_the_single_output_model():
    """The calibrated int8 one-pass graph embeds as the int8 single-output graph does (the
    same network, calibration and kept-fp32 ends), and its map is close to fp32's."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from isolated import in_child, run_in_child

    if not in_child():
        return run_in_child(f"{__file__}::test_one_pass_int8_is_quantised_like_the_single_output_model")
    calibration = random_batch(24)
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    single = optimize_for_inference(tiny_model(), mode="openvino_int8", threads=1, calibration=calibration)
    both = optimize_for_inference(tiny_model(), mode="openvino_int8", threads=1, calibration=calibration, feature_map=(32, 32))
    with torch.inference_mode():
        vectors, fmap = both(images)
        reference_map = tiny_model().backbone.forward_features(images)
        assert (vectors * single(images)).sum(1).min().item() > 0.999
    cosine = torch.nn.functional.cosine_similarity(fmap.flatten(1), reference_map.flatten(1))
    assert cosine.min().item() > 0.98 and (fmap - reference_map).abs().max().item() > 1e-5  # really quantised


def test_one_pass_rejects_a_bad_input_size():
    with pytest.raises(ValueError, match="input_size"):
        optimize_for_inference(tiny_model(), mode="eager", feature_map=(0, 32))
