"""Faster CPU inference for a trained embedder, chosen by name.

:func:`optimize_for_inference` turns an :class:`~street2shop.models.embedder.Embedder` into a
module with the same contract (``forward(images) -> unit-norm (B, dim)``, ``dim``,
``preprocess``, ``config``), so :func:`~street2shop.models.embed.embed_images`, evaluation and
the API use it unchanged. Modes, in the registry :data:`MODES`:

- ``eager``: the model itself, in eval mode (the fp32 reference).
- ``channels_last``: NHWC weights and inputs; oneDNN's convolutions prefer that layout.
- ``compile``: ``torch.compile`` (Inductor) on channels-last. Needs a C compiler; the first
  batch of every new shape compiles for minutes on two cores, so it suits long-lived servers.
- ``onnx``: the network exported to ONNX and run by ONNX Runtime's CPU provider (fused
  conv+bias+activation kernels, no Python per layer); embeddings equal to fp32 eager up to
  float rounding.
- ``openvino``: the same ONNX graph compiled by OpenVINO's CPU plugin (fp32). One stream
  using the whole thread budget by default (a lone caller's batch finishes soonest);
  ``streams=N`` splits the threads into N streams that N callers use at once (a server).
- ``openvino_bf16``: the same graph with bf16 kernels, on CPUs that have them (AMX or
  AVX512-BF16; elsewhere the mode is unavailable). Embeddings differ from fp32 by bf16
  rounding, which GeM's power amplifies (min cosine to fp32 0.97 on the demo's trained
  model): check retrieval with ``bench/embed.py --home`` as for int8.
- ``openvino_int8``: that graph quantised to int8 by NNCF post-training static quantisation
  (vision transformers with NNCF's transformer scheme; see :func:`int8_kept_in_fp32`)
  (per-channel symmetric weights, per-tensor activations), calibrated on photos the caller
  passes (``calibration=``, training-split photos only: never evaluation queries). Kept in
  fp32: the first convolution (raw pixels), the last one (the feature map GeM pools, where a
  rounding error is raised to the power p) and everything after it (pooling, projection,
  normalisation). Weights use 7 of 8 bits everywhere (NNCF's ``OverflowFix.ENABLE``): CPUs
  without VNNI (AVX2 only) multiply u8 x s8 pairs into saturating int16 sums,
  which otherwise overflow and cost accuracy. Quantisation is a one-off of a minute or two
  on two cores (statistics over the calibration photos), so it suits an export step; NNCF is
  imported only by this mode. Unlike the fp32 modes its embeddings are *not* equal to
  eager's (int8 rounding accumulates over ~30 layers): check retrieval, not just speed, with
  ``bench/embed.py --home`` before serving it.

One pass for the learned localiser: ``optimize_for_inference(..., feature_map=(h, w))``
builds the same mode around :class:`DescriptorAndMap`, whose one forward pass of a photo
resized to ``(h, w)`` returns both the embedding and the backbone's feature map (the map the
:class:`~street2shop.models.localise.BoxHead` reads): an ONNX / OpenVINO graph with two
outputs, quantised (int8) like the single-output one.

Both OpenVINO modes need the ``openvino`` package (``openvino_int8`` also ``nncf``).
``bench/embed.py`` measures every mode side by side, with top-1/top-20 through the evaluate
stage's path. The fp32 modes pin fp32 kernels: OpenVINO would otherwise switch to bf16
by itself on a CPU with AMX, and the served embeddings would depend on the machine.

The optional backends (``onnxruntime``, ``openvino``, ``nncf``, a working ``torch.compile``)
may be missing: the mode then raises :class:`BackendUnavailableError` saying what to install,
or, when the caller passes ``fallback="eager"`` (say), logs a warning and builds the
fallback mode.
"""

from __future__ import annotations

import io
import json
import logging
import queue
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from street2shop.models.embedder import Embedder
from street2shop.registry import Registry

log = logging.getLogger(__name__)


class BackendUnavailableError(RuntimeError):
    """The library an inference mode needs is not installed or does not work here."""


class _SourceMetadata:
    """``dim``, ``preprocess`` and ``config`` of the embedder a wrapper runs (its ``source``)."""

    @property
    def dim(self) -> int:
        return self.source.dim

    @property
    def preprocess(self):
        return self.source.preprocess

    @property
    def config(self):
        return self.source.config


class InferenceEmbedder(_SourceMetadata, nn.Module):
    """An embedder behind a faster runner: same inputs, outputs and metadata as the original.

    ``runner`` maps a float32 image batch ``(B, 3, S, S)`` to embeddings ``(B, dim)`` on the
    CPU; inputs on another device are moved to the CPU. ``dim``, ``preprocess`` and ``config``
    are read from the original embedder, which is deliberately *not* a submodule: callers
    such as ``embed_images`` call ``.to(device, memory_format=...)`` on whatever model they
    get, and that must not convert the weights a runner was built around (channels-last
    layout, a compiled graph) or move them off the CPU. Hence ``.to()`` is a no-op here.
    """

    def __init__(self, source: Embedder, runner: Callable[[torch.Tensor], torch.Tensor], mode: str, streams: int = 1) -> None:
        super().__init__()
        object.__setattr__(self, "source", source.eval())  # outside the module tree, see above
        self._runner = runner
        self.mode = mode
        #: how many forward passes may run at once (from different threads), each on its
        #: own share of the threads; 1 for runners that use every thread for one pass.
        self.streams = streams
        self.train(False)

    def train(self, mode: bool = True) -> InferenceEmbedder:
        # An inference runner has frozen weights and BatchNorm statistics: never train it.
        if mode:
            raise RuntimeError(f"an inference embedder (mode {self.mode!r}) cannot be put in training mode")
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._runner(images.to("cpu"))

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class DescriptorAndMap(_SourceMetadata, nn.Module):
    """An embedder whose forward pass returns ``(embeddings (B, dim), feature map (B, C, h, w))``:
    the descriptor and the backbone map it pools, from one pass of photos of ``input_size``
    (height, width), which may differ from the embedder's square (GeM pools any map size)."""

    output_names = ("embeddings", "feature_map")

    def __init__(self, embedder: Embedder, input_size: tuple[int, int]) -> None:
        super().__init__()
        if len(input_size) != 2 or min(input_size) < 1:
            raise ValueError(f"input_size must be (height, width) > 0, got {input_size}")
        fixed = getattr(embedder.backbone, "fixed_input_size", None)
        if fixed is not None and tuple(input_size) != (fixed, fixed):
            raise ValueError(f"this backbone takes {fixed}x{fixed} inputs only, not {input_size[0]}x{input_size[1]}")
        self.embedder = embedder.eval()
        self.input_size = (int(input_size[0]), int(input_size[1]))

    @property
    def source(self) -> Embedder:
        return self.embedder

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedder = self.embedder
        if embedder.head.reads_global:
            fmap, pooled = embedder.backbone.forward_pooled(x)
            vectors = embedder.head(fmap, pooled)
        else:
            fmap = embedder.backbone.forward_features(x)
            vectors = embedder.head(fmap)
        return torch.nn.functional.normalize(vectors, dim=-1), fmap


def _outputs(model: nn.Module) -> tuple[str, ...]:
    return tuple(getattr(model, "output_names", ("embeddings",)))


def _input_size(model: nn.Module) -> tuple[int, int]:
    size = model.preprocess.image_size
    return tuple(getattr(model, "input_size", (size, size)))


def _as_result(arrays: list[np.ndarray]) -> torch.Tensor | tuple[torch.Tensor, ...]:
    tensors = tuple(torch.from_numpy(a) for a in arrays)
    return tensors[0] if len(tensors) == 1 else tensors


# --------------------------------------------------------------------------- modes

@dataclass(frozen=True)
class BuildOptions:
    """What a mode may need beyond the model.

    ``threads``: intra-op threads for backends with their own pool. ``calibration``:
    preprocessed photos ``(N, 3, S, S)`` for modes that quantise (``None`` elsewhere).
    ``streams``: forward passes that may run at once, splitting ``threads`` between them
    (OpenVINO modes; the others run one pass at a time and report ``streams = 1``).
    """

    threads: int
    calibration: torch.Tensor | None = None
    streams: int = 1


ModeFactory = Callable[[Embedder, BuildOptions], nn.Module]
MODES: Registry[ModeFactory] = Registry("inference mode")
register_mode = MODES.register


def list_modes() -> list[str]:
    return MODES.names()


@register_mode("eager")
def _eager(model: Embedder, options: BuildOptions) -> nn.Module:
    return model.eval()


@register_mode("channels_last")
def _channels_last(model: Embedder, options: BuildOptions) -> nn.Module:
    model = model.eval().to(memory_format=torch.channels_last)

    def run(images: torch.Tensor) -> torch.Tensor:
        return model(images.contiguous(memory_format=torch.channels_last))

    return InferenceEmbedder(model, run, "channels_last")


@register_mode("compile")
def _compile(model: Embedder, options: BuildOptions) -> nn.Module:
    import shutil

    # Inductor's CPU backend writes and builds C++; without a compiler it fails at the first
    # batch, deep inside a request. Fail here, where the mode is chosen, instead.
    if not any(shutil.which(cc) for cc in ("cc", "gcc", "clang", "g++")):
        raise BackendUnavailableError("mode 'compile' needs a C/C++ compiler (gcc or clang) on PATH")
    if not hasattr(torch, "compile"):
        raise BackendUnavailableError(f"torch {torch.__version__} has no torch.compile")
    model = model.eval().to(memory_format=torch.channels_last)
    compiled = torch.compile(model, dynamic=False)

    def run(images: torch.Tensor) -> torch.Tensor:
        return compiled(images.contiguous(memory_format=torch.channels_last))

    return InferenceEmbedder(model, run, "compile")


@contextmanager
def _mha_fastpath(enabled: bool):
    """``nn.MultiheadAttention``'s fused inference kernel on or off for the block: an
    open_clip tower in eval mode under ``no_grad`` takes that kernel, which ONNX cannot
    express, so the export traces the plain attention instead (the same numbers)."""
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def export_onnx(model: Embedder, opset: int = 17) -> bytes:
    """The embedder as an ONNX model (bytes) with a dynamic batch axis, exported on CPU
    (a :class:`DescriptorAndMap`: two outputs, photos of its ``input_size``).

    The TorchScript-based exporter (``dynamo=False``) is used because it needs no extra
    packages (the dynamo exporter needs ``onnxscript``) and traces timm's "same" padding fine.
    """
    example = torch.zeros(2, 3, *_input_size(model))
    outputs = _outputs(model)
    buffer = io.BytesIO()
    cpu_model = model.eval().cpu()
    with warnings.catch_warnings(), _mha_fastpath(False):
        # The exporter warns that the TorchScript path is deprecated; it is the one that
        # needs nothing beyond torch, so the warning is expected noise here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # timm's shape checks, constant here
        torch.onnx.export(
            cpu_model,
            (example,),
            buffer,
            input_names=["images"],
            output_names=list(outputs),
            dynamic_axes={"images": {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return buffer.getvalue()


@register_mode("onnx")
def _onnx(model: Embedder, options: BuildOptions) -> nn.Module:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailableError(
            "mode 'onnx' needs ONNX Runtime: pip install onnxruntime (or use mode 'eager')"
        ) from exc
    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Share the machine's cores the way torch is told to (torch.set_num_threads), so the
    # DataLoader's decoding workers are not starved by a second thread pool.
    session_options.intra_op_num_threads = options.threads
    session_options.inter_op_num_threads = 1
    session = ort.InferenceSession(export_onnx(model), session_options, providers=["CPUExecutionProvider"])

    def run(images: torch.Tensor) -> torch.Tensor:
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return _as_result(session.run(list(_outputs(model)), {"images": array}))

    return InferenceEmbedder(model, run, "onnx")


def _import_openvino(mode: str):
    try:
        import openvino
    except ImportError as exc:
        raise BackendUnavailableError(
            f"mode {mode!r} needs OpenVINO: pip install openvino (or use mode 'onnx' or 'eager')"
        ) from exc
    return openvino


def openvino_model(model: Embedder):
    """The embedder as an (uncompiled) ``openvino.Model``, converted from its ONNX export.

    Going through ONNX rather than ``ov.convert_model(torch_module)`` keeps one traced graph
    for the ``onnx`` and OpenVINO modes, so they cannot disagree about the network.
    """
    ov = _import_openvino("openvino")
    with tempfile.TemporaryDirectory(prefix="street2shop-ov-") as folder:
        path = Path(folder) / "embedder.onnx"
        path.write_bytes(export_onnx(model))
        converted = ov.convert_model(path)
    return converted


def cpu_supports_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 natively here (AVX512-BF16 or AMX)."""
    try:
        ov = _import_openvino("openvino_bf16")
    except BackendUnavailableError:
        return False
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _openvino_runner(
    model: Embedder, network, options: BuildOptions, mode: str, precision: str = "f32"
) -> InferenceEmbedder:
    """``network`` (an ``openvino.Model``) compiled for the CPU behind ``model``'s contract.

    ``precision``: the floating-point precision of the CPU plugin's kernels. It is always
    set explicitly: left alone, OpenVINO silently picks bf16 on CPUs that have it (AMX,
    AVX512-BF16), so the "fp32" mode would give other embeddings on another machine.

    ``options.streams == 1``: one stream using every thread (the latency layout: a lone
    caller's batch finishes soonest). ``> 1``: that many streams sharing the threads (the
    throughput layout): concurrent callers, such as a server's batching threads, each run a
    pass on their own cores without synchronising with the others. That costs less CPU per
    photo; on a 2-core server its gain came and went from run to run
    (``bench/serve.py --streams 1,2``, README), on more cores it is OpenVINO's usual recipe.
    """
    ov = _import_openvino(mode)
    streams = options.streams
    if streams > options.threads:
        raise ValueError(f"streams ({streams}) cannot exceed threads ({options.threads}): each stream needs a thread")
    layout = (
        {"PERFORMANCE_HINT": "LATENCY"}
        if streams == 1
        else {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams}
    )
    compiled = ov.Core().compile_model(
        network,
        "CPU",
        {**layout, "INFERENCE_NUM_THREADS": options.threads, "INFERENCE_PRECISION_HINT": precision},
    )
    # An infer request owns its output buffers and is not thread-safe: one per stream, lent
    # to one caller at a time (with one stream this serialises runs, as the CPU is full).
    idle: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(streams):
        idle.put(compiled.create_infer_request())

    def run(images: torch.Tensor) -> torch.Tensor:
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        request = idle.get()
        try:
            # copy: the returned array is a view of the request's buffer, reused next call.
            result = request.infer({0: array})
            arrays = [result[i].copy() for i in range(len(_outputs(model)))]
        finally:
            idle.put(request)
        return _as_result(arrays)

    return InferenceEmbedder(model, run, mode, streams=streams)


@register_mode("openvino")
def _openvino(model: Embedder, options: BuildOptions) -> nn.Module:
    return _openvino_runner(model, openvino_model(model), options, "openvino")


@register_mode("openvino_bf16")
def _openvino_bf16(model: Embedder, options: BuildOptions) -> nn.Module:
    if not cpu_supports_bf16():
        raise BackendUnavailableError("mode 'openvino_bf16' needs a CPU with AMX or AVX512-BF16 (use mode 'openvino')")
    return _openvino_runner(model, openvino_model(model), options, "openvino_bf16", precision="bf16")


def quantize_openvino(model: Embedder, calibration: torch.Tensor):
    """``model`` as an int8 ``openvino.Model`` by NNCF post-training static quantisation.

    ``calibration``: preprocessed photos ``(N, 3, S, S)`` whose activation ranges set the
    int8 scales; a few hundred real training photos suffice. The first and last
    convolutions and the head stay fp32 (see the module docstring for why).
    """
    _import_openvino("openvino_int8")
    try:
        import importlib.util

        if importlib.util.find_spec("nncf") is None:
            raise ImportError("nncf")
    except ImportError as exc:
        raise BackendUnavailableError(
            "mode 'openvino_int8' needs NNCF to quantise: pip install nncf (or use mode 'openvino')"
        ) from exc
    size = model.preprocess.image_size
    if calibration.ndim != 4 or tuple(calibration.shape[1:]) != (3, size, size) or len(calibration) == 0:
        raise ValueError(
            f"calibration must be preprocessed photos of shape (N, 3, {size}, {size}) with N >= 1, "
            f"got {tuple(calibration.shape)}"
        )
    if _input_size(model) != (size, size):  # a one-pass network on photos of another size
        calibration = torch.nn.functional.interpolate(calibration, size=_input_size(model), mode="bilinear", align_corners=False)
    network = openvino_model(model)
    names, transformer = int8_kept_in_fp32(network)
    ov = _import_openvino("openvino_int8")
    # NNCF runs in a child process: importing it patches torch and other libraries for its
    # own backends, and a long-lived process that had quantised (a test session, the
    # pipeline) crashed in a later, unrelated import. The child reads the fp32 network and
    # the calibration photos from files and writes the int8 network back.
    with tempfile.TemporaryDirectory(prefix="street2shop-int8-") as folder:
        folder = Path(folder)
        ov.save_model(network, folder / "fp32.xml", compress_to_fp16=False)
        np.save(folder / "calibration.npy", calibration.detach().to("cpu", torch.float32).numpy())
        (folder / "options.json").write_text(json.dumps({"ignored": names, "transformer": transformer}))
        done = subprocess.run([sys.executable, "-c", _QUANTIZE_CHILD, str(folder)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"int8 quantisation failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
        return ov.Core().read_model(folder / "int8.xml")


def int8_kept_in_fp32(network) -> tuple[list[str], bool]:
    """``(names of the ops int8 quantisation leaves in fp32, whether the network is a transformer)``.

    A CNN keeps its first convolution (raw pixels) and everything from its last one on (the
    feature map the pooling reads, the head). A vision transformer (one convolution: the
    patch embedding, then attention and MLP matrix products) keeps the patch embedding and
    everything from its final normalisation on (the tokens the pooling reads, the head), and
    is quantised with NNCF's transformer scheme (``ModelType.TRANSFORMER``).
    """
    ops = network.get_ordered_ops()
    kinds = [op.get_type_name() for op in ops]
    convolutions = [i for i, kind in enumerate(kinds) if kind == "Convolution"]
    if not convolutions:
        raise ValueError("the network has no convolution to quantise")
    transformer = len(convolutions) == 1 and "MatMul" in kinds
    norms = [i for i, kind in enumerate(kinds) if kind == "MVN"]
    tail = norms[-1] if transformer and norms else convolutions[-1]
    kept = [ops[convolutions[0]], *ops[tail:]]
    return [op.get_friendly_name() for op in kept if op.get_type_name() not in ("Constant", "Result")], transformer


#: the child of :func:`quantize_openvino`: NNCF post-training quantisation of a saved network
_QUANTIZE_CHILD = """
import json, sys
from pathlib import Path
import numpy as np
import nncf
import openvino as ov
from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

folder = Path(sys.argv[1])
network = ov.Core().read_model(folder / "fp32.xml")
calibration = np.load(folder / "calibration.npy")
samples = [image[None] for image in calibration]
options = json.loads((folder / "options.json").read_text())
quantized = nncf.quantize(
    network,
    nncf.Dataset(samples),
    subset_size=len(samples),
    preset=nncf.QuantizationPreset.PERFORMANCE if not options["transformer"] else nncf.QuantizationPreset.MIXED,
    model_type=nncf.ModelType.TRANSFORMER if options["transformer"] else None,
    # names of ops NNCF would not quantise anyway (a ReduceMax, say) are fine to list
    ignored_scope=nncf.IgnoredScope(names=options["ignored"], validate=False),
    advanced_parameters=AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix.ENABLE),
)
ov.save_model(quantized, folder / "int8.xml", compress_to_fp16=False)
"""


@register_mode("openvino_int8")
def _openvino_int8(model: Embedder, options: BuildOptions) -> nn.Module:
    if options.calibration is None:
        raise ValueError(
            "mode 'openvino_int8' needs calibration photos: optimize_for_inference(..., "
            "calibration=<(N, 3, S, S) preprocessed training photos>)"
        )
    return _openvino_runner(model, quantize_openvino(model, options.calibration), options, "openvino_int8")


def optimize_for_inference(
    model: Embedder,
    mode: str = "onnx",
    threads: int | None = None,
    fallback: str | None = None,
    calibration: torch.Tensor | None = None,
    streams: int = 1,
    feature_map: tuple[int, int] | None = None,
) -> nn.Module:
    """``model`` behind the CPU inference path ``mode`` (see :data:`MODES`).

    ``threads``: intra-op threads for backends with their own pool (ONNX Runtime, OpenVINO);
    default ``torch.get_num_threads()``. ``fallback``: the mode to use, with a warning, when
    ``mode``'s backend is unavailable; ``None`` raises :class:`BackendUnavailableError`.
    ``calibration``: preprocessed training photos ``(N, 3, S, S)`` for quantising modes
    (``openvino_int8``); ignored by the others. ``streams``: forward passes that may run at
    once (OpenVINO modes; others run one at a time and say so with ``.streams == 1``).
    ``feature_map``: ``(height, width)`` of the photos for a one-pass runner, whose forward
    returns ``(embeddings, feature map)`` (:class:`DescriptorAndMap`) in any mode.
    The model's weights are shared, not copied: do not train it afterwards.
    """
    if feature_map is not None:
        model = DescriptorAndMap(model, feature_map)
    for name in (mode, fallback):
        if name is not None:
            MODES.get(name)  # an unknown name fails here, listing the modes
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if streams < 1:
        raise ValueError(f"streams must be >= 1, got {streams}")
    options = BuildOptions(threads=threads or torch.get_num_threads(), calibration=calibration, streams=streams)
    try:
        return MODES.get(mode)(model, options)
    except BackendUnavailableError as exc:
        if fallback is None or fallback == mode:
            raise
        log.warning("inference mode %r unavailable (%s); using %r", mode, exc, fallback)
        return MODES.get(fallback)(model, options)
