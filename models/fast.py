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
  conv+bias+activation kernels, no Python per layer). The fastest here
  (``bench/embed.py``), with embeddings equal to fp32 eager up to float rounding.

int8 quantisation is deliberately not a mode: in a one-off trial, ONNX Runtime's static QDQ
quantisation of EfficientNet-Lite0 (per-channel, calibrated on real photos) gained little
over fp32 ONNX on this AVX2 CPU (no VNNI) and moved embeddings far from fp32 (minimum cosine
well below the 0.99 retrieval needs). bf16 needs AVX512-BF16 or AMX, which this CPU lacks.

The optional backends (``onnxruntime``, a working ``torch.compile``) may be missing: the
mode then raises :class:`BackendUnavailableError` saying what to install, or, when the
caller passes ``fallback="eager"`` (say), logs a warning and builds the fallback mode.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable

import torch
from torch import nn

from street2shop.models.embedder import Embedder

log = logging.getLogger(__name__)


class BackendUnavailableError(RuntimeError):
    """The library an inference mode needs is not installed or does not work here."""


class InferenceEmbedder(nn.Module):
    """An embedder behind a faster runner: same inputs, outputs and metadata as the original.

    ``runner`` maps a float32 image batch ``(B, 3, S, S)`` to embeddings ``(B, dim)`` on the
    CPU; inputs on another device are moved to the CPU. ``dim``, ``preprocess`` and ``config``
    are read from the original embedder, which is deliberately *not* a submodule: callers
    such as ``embed_images`` call ``.to(device, memory_format=...)`` on whatever model they
    get, and that must not convert the weights a runner was built around (channels-last
    layout, a compiled graph) or move them off the CPU. Hence ``.to()`` is a no-op here.
    """

    def __init__(self, source: Embedder, runner: Callable[[torch.Tensor], torch.Tensor], mode: str) -> None:
        super().__init__()
        object.__setattr__(self, "source", source.eval())  # outside the module tree, see above
        self._runner = runner
        self.mode = mode
        self.train(False)

    @property
    def dim(self) -> int:
        return self.source.dim

    @property
    def preprocess(self):
        return self.source.preprocess

    @property
    def config(self):
        return self.source.config

    def train(self, mode: bool = True) -> InferenceEmbedder:
        # An inference runner has frozen weights and BatchNorm statistics: never train it.
        if mode:
            raise RuntimeError(f"an inference embedder (mode {self.mode!r}) cannot be put in training mode")
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._runner(images.to("cpu"))

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


# --------------------------------------------------------------------------- modes

ModeFactory = Callable[[Embedder, int | None], nn.Module]
MODES: dict[str, ModeFactory] = {}


def register_mode(name: str) -> Callable[[ModeFactory], ModeFactory]:
    def decorator(fn: ModeFactory) -> ModeFactory:
        if name in MODES:
            raise ValueError(f"inference mode {name!r} is already registered")
        MODES[name] = fn
        return fn

    return decorator


def list_modes() -> list[str]:
    return sorted(MODES)


@register_mode("eager")
def _eager(model: Embedder, threads: int | None) -> nn.Module:
    return model.eval()


@register_mode("channels_last")
def _channels_last(model: Embedder, threads: int | None) -> nn.Module:
    model = model.eval().to(memory_format=torch.channels_last)

    def run(images: torch.Tensor) -> torch.Tensor:
        return model(images.contiguous(memory_format=torch.channels_last))

    return InferenceEmbedder(model, run, "channels_last")


@register_mode("compile")
def _compile(model: Embedder, threads: int | None) -> nn.Module:
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


def export_onnx(model: Embedder, opset: int = 17) -> bytes:
    """The embedder as an ONNX model (bytes) with a dynamic batch axis, exported on CPU.

    The TorchScript-based exporter (``dynamo=False``) is used because it needs no extra
    packages (the dynamo exporter needs ``onnxscript``) and traces timm's "same" padding fine.
    """
    size = model.preprocess.image_size
    example = torch.zeros(2, 3, size, size)
    buffer = io.BytesIO()
    cpu_model = model.eval().cpu()
    with warnings.catch_warnings():
        # The exporter warns that the TorchScript path is deprecated; it is the one that
        # needs nothing beyond torch, so the warning is expected noise here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            cpu_model,
            (example,),
            buffer,
            input_names=["images"],
            output_names=["embeddings"],
            dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return buffer.getvalue()


@register_mode("onnx")
def _onnx(model: Embedder, threads: int | None) -> nn.Module:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailableError(
            "mode 'onnx' needs ONNX Runtime: pip install onnxruntime (or use mode 'eager')"
        ) from exc
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Share the machine's cores the way torch is told to (torch.set_num_threads), so the
    # DataLoader's decoding workers are not starved by a second thread pool.
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(export_onnx(model), options, providers=["CPUExecutionProvider"])

    def run(images: torch.Tensor) -> torch.Tensor:
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        (vectors,) = session.run(["embeddings"], {"images": array})
        return torch.from_numpy(vectors)

    return InferenceEmbedder(model, run, "onnx")


def optimize_for_inference(
    model: Embedder,
    mode: str = "onnx",
    threads: int | None = None,
    fallback: str | None = None,
) -> nn.Module:
    """``model`` behind the CPU inference path ``mode`` (see :data:`MODES`).

    ``threads``: intra-op threads for backends with their own pool (ONNX Runtime); default
    ``torch.get_num_threads()``. ``fallback``: the mode to use, with a warning, when
    ``mode``'s backend is unavailable; ``None`` raises :class:`BackendUnavailableError`.
    The model's weights are shared, not copied: do not train it afterwards.
    """
    for name in (mode, fallback):
        if name is not None and name not in MODES:
            raise ValueError(f"unknown inference mode {name!r}; choose one of {list_modes()}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    try:
        return MODES[mode](model, threads)
    except BackendUnavailableError as exc:
        if fallback is None or fallback == mode:
            raise
        log.warning("inference mode %r unavailable (%s); using %r", mode, exc, fallback)
        return MODES[fallback](model, threads)
