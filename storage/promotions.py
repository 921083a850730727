"""The promotion log: which index version the API serves, and every decision that led there.

A pipeline run publishes a new index version whenever its inputs changed, but the API must
not move to a model that is worse than the one it serves; the promotion rule
(:mod:`street2shop.tasks.promote`) decides, and every decision (promoted or not, with its
reason) is appended here, one JSON record each, written create-only and never replaced::

    <home>/promotions/<decided_at>-<index_version>.json

What is served is derived, never stored: the newest record that promoted something
(:func:`served_index`). Rolling back is therefore another record, and the log is the audit
trail the nightly run leaves behind.

On a store at an fsspec URL (``s3://...``) the records live on the remote, under the same
key, so a search service on another machine sees a promotion as soon as it is written; the
local mirror caches records already read (a record never changes).
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from street2shop.storage.names import CHECKPOINT, EVALUATE, INDEX, INDEX_IDS, PROMOTIONS_DIR, SERVING_FILE, TRAIN
from street2shop.storage.store import ArtifactNotFound, ArtifactRef, ArtifactStore


class PromotionDecision(BaseModel):
    """One record of the promotion log: what was decided about a candidate index, and why."""

    promoted: bool
    reason: str
    candidate: ArtifactRef
    metric: str
    value: float
    margin: float
    #: what was served when the decision was taken (None: nothing yet)
    previous: ArtifactRef | None = None
    previous_value: float | None = None
    decided_at: str


def record_name(decision: PromotionDecision) -> str:
    """The record's file name: a fixed-width UTC timestamp first, so name order is time order."""
    stamp = datetime.fromisoformat(decision.decided_at).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{decision.candidate.version}.json"


def append_decision(store: ArtifactStore, decision: PromotionDecision) -> str:
    """Add ``decision`` to the log; returns its key (``promotions/<name>``).

    Create-only: a record is never replaced (a second record of the same instant and
    candidate is an error, not an overwrite).
    """
    name = record_name(decision)
    key = f"{PROMOTIONS_DIR}/{name}"
    data = decision.model_dump_json(indent=2).encode()
    if store.remote is not None:
        if not store.remote.create(key, data):
            raise FileExistsError(f"promotion record {key} already exists in {store.location}")
    _write_local(store.home / PROMOTIONS_DIR, name, data)
    return key


def _write_local(folder: Path, name: str, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # a hard link publishes the complete file atomically and, unlike rename, refuses
        # to replace an existing record: the log is append-only
        os.link(tmp, final)
    finally:
        os.unlink(tmp)


def promotion_log(store: ArtifactStore) -> list[PromotionDecision]:
    """Every decision taken on this store, oldest first."""
    folder = store.home / PROMOTIONS_DIR
    if store.remote is not None:
        keys = store.remote.glob(f"{PROMOTIONS_DIR}/*.json")
        missing = [k for k in keys if not (store.home / k).exists()]
        for key, data in store.remote.cat(missing).items():
            _cache(folder, key.rsplit("/", 1)[-1], data)
        names = [k.rsplit("/", 1)[-1] for k in keys]
    elif folder.exists():
        names = sorted(p.name for p in folder.glob("*.json"))
    else:
        names = []
    return [PromotionDecision.model_validate_json((folder / name).read_bytes()) for name in sorted(names)]


def _cache(folder: Path, name: str, data: bytes) -> None:
    try:
        _write_local(folder, name, data)
    except FileExistsError:  # another reader cached it meanwhile
        pass


def current_promotion(store: ArtifactStore) -> PromotionDecision | None:
    """The newest decision that promoted a version: what the API serves."""
    promoted = [d for d in promotion_log(store) if d.promoted]
    return promoted[-1] if promoted else None


def served_index(store: ArtifactStore) -> ArtifactRef | None:
    """The index version the API should load (None until a version has been promoted)."""
    current = current_promotion(store)
    return current.candidate if current else None


def latest_index(store: ArtifactStore) -> ArtifactRef:
    return store.latest(INDEX, INDEX_IDS)


def index_to_serve(store: ArtifactStore, version: str | None = None) -> ArtifactRef:
    """The named index version, or the one to serve: the promoted one, else the newest.

    A store that never ran the promotion step (a ``street2shop index --catalog`` store, a
    test) serves its newest index.
    """
    if version is None:
        return served_index(store) or latest_index(store)
    ref = ArtifactRef(stage=INDEX, name=INDEX_IDS, version=version)
    if not store.exists(ref):
        raise ArtifactNotFound(f"no published index version {version!r}")
    return ref


def served_checkpoint(store: ArtifactStore) -> ArtifactRef:
    """The checkpoint the served index was built with (what ``/search`` embeds photos with):
    the promoted index's, else the newest index's, else the newest evaluated (served) model,
    else the newest trained one."""
    try:
        index = index_to_serve(store)
    except ArtifactNotFound:
        return store.latest_or_none(EVALUATE, CHECKPOINT) or store.latest(TRAIN, CHECKPOINT)
    for ref in store.manifest(index).inputs:
        if ref.name == CHECKPOINT:
            return ref
    raise ArtifactNotFound(f"{index} records no checkpoint input; rebuild the index")


def serving_of(store: ArtifactStore, checkpoint: ArtifactRef) -> dict:
    """What the evaluate stage recorded about a served model (``serving.json``: which model,
    how street photos are localised), or ``{}`` for a checkpoint from elsewhere."""
    if SERVING_FILE not in store.manifest(checkpoint).files:
        return {}
    return json.loads(store.file(checkpoint, SERVING_FILE).read_text())


__all__ = [
    "PromotionDecision",
    "append_decision",
    "current_promotion",
    "index_to_serve",
    "latest_index",
    "promotion_log",
    "record_name",
    "served_checkpoint",
    "served_index",
    "serving_of",
]
