"""What is served, rebuilt from the store: the served checkpoint at the served precision and
the served query localisation, as the evaluate stage scored them (``serving.json``).

``street2shop eval`` runs this, so it scores what ``/search`` runs; a service can build its
model and learned localiser the same way (:func:`served_runner`, :func:`served_search`).
The calibrated int8 precision is rebuilt from the training photos ``serving.json`` names
(the same pixels give the same int8 network); a learned localisation is loaded from the
localise stage's artifact that ``serving.json`` names.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from street2shop.models.embedder import Embedder
from street2shop.models.fast import list_modes, optimize_for_inference
from street2shop.models.localise import create_localiser, load_localiser
from street2shop.models.onepass import OPTIONS, OnePassSearch, one_pass_search
from street2shop.retrieval.evaluation import LEARNED, LocaliseParams
from street2shop.storage.images import open_image
from street2shop.storage.names import IMAGES, LOCALISE, LOCALISER, LOCALISER_FILE
from street2shop.storage.store import ArtifactNotFound, ArtifactRef, ArtifactStore

#: the precision a checkpoint runs in when serving.json names none (the evaluate stage's reference)
DEFAULT_MODE = "openvino"


def served_mode(serving: dict, override: str | None = None) -> str:
    """The precision to run: ``override``, else the served one, else OpenVINO fp32."""
    mode = override or serving.get("inference_mode", DEFAULT_MODE)
    if mode not in list_modes():
        raise ValueError(f"unknown inference mode {mode!r}; choose one of {', '.join(list_modes())}")
    return mode


def calibration_of(store: ArtifactStore, checkpoint: ArtifactRef, serving: dict, model: Embedder) -> torch.Tensor:
    """The preprocessed photos the served int8 precision was calibrated on: the training
    photos ``serving.json`` names, read from the images the evaluation used."""
    wanted = serving.get("calibration") or []
    images = next((ref for ref in store.manifest(checkpoint).inputs if ref.name == IMAGES), None)
    if not wanted or images is None:
        raise ArtifactNotFound(f"{checkpoint}: a quantised precision needs the evaluate stage's calibration photos (serving.json has none)")
    table = store.read_table(images, columns=["image_id", "path"])
    path_of = dict(zip(table.column("image_id").to_pylist(), table.column("path").to_pylist()))
    missing = [i for i in wanted if i not in path_of]
    if missing:
        raise ArtifactNotFound(f"{len(missing)} calibration photo(s) are not in {images}, e.g. {missing[0]}")
    return pixels_of(model, store.blobs.resolve_many([path_of[i] for i in wanted]))


def pixels_of(model: Embedder, paths: Sequence) -> torch.Tensor:
    return torch.stack([model.preprocess(open_image(p)) for p in paths])


def served_runner(model: Embedder, mode: str, calibration: torch.Tensor | None = None) -> nn.Module:
    """``model`` in ``mode`` (eager where the backend is missing); int8 needs ``calibration``."""
    if "int8" in mode and calibration is None:
        raise ValueError(f"mode {mode!r} needs calibration photos")
    return optimize_for_inference(model, mode, fallback="eager", calibration=calibration)


def check_localisation(localise: LocaliseParams) -> None:
    """A localisation that cannot be built fails here, in one line naming what would be valid."""
    if localise.learned:
        unknown = sorted(set(localise.options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} of localiser {LEARNED!r}; known: {', '.join(OPTIONS)}")
        return
    try:
        create_localiser(localise.name, **localise.options)
    except TypeError as exc:  # an option the localiser does not take
        raise ValueError(f"localiser {localise.name!r}: {exc}") from None


def localiser_ref(store: ArtifactStore, localise: LocaliseParams) -> ArtifactRef:
    """The localise stage's artifact a learned localisation reads: the one it names, else the newest."""
    if localise.localiser is None:
        return store.latest(LOCALISE, LOCALISER)
    stage_name, _, version = localise.localiser.partition("@")
    stage, _, name = stage_name.partition("/")
    return ArtifactRef(stage=stage, name=name, version=version)


def served_search(
    store: ArtifactStore, localise: LocaliseParams, model: Embedder, mode: str, runner: nn.Module,
    calibration: torch.Tensor | None = None,
) -> OnePassSearch | None:
    """The learned localisation's one-pass search on ``model`` in ``mode`` (``runner``: its plain
    runner, reused for the box crops); ``None`` for the other localisations."""
    if not localise.learned:
        return None
    head, meta = load_localiser(store.file(localiser_ref(store, localise), LOCALISER_FILE))
    return one_pass_search(model, mode, head, meta, calibration=calibration, crops_runner=runner, **localise.options)


__all__ = ["DEFAULT_MODE", "calibration_of", "check_localisation", "localiser_ref", "served_mode", "served_runner", "served_search"]
