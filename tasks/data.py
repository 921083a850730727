"""The clean-data references that train, mine and evaluate read, and how they are loaded."""

from __future__ import annotations

import pyarrow as pa

from street2shop.cleaning.selection import annotate
from street2shop.storage.store import ArtifactRef, ArtifactRefs, ArtifactStore, images_with_paths


class DataRefs(ArtifactRefs):
    """Which versions of the cleaned data a model stage uses (part of its version id)."""

    items: ArtifactRef
    images: ArtifactRef
    groups: ArtifactRef
    splits: ArtifactRef
    noise_scores: ArtifactRef
    noise_labels: ArtifactRef


def load_annotated(store: ArtifactStore, refs: DataRefs) -> pa.Table:
    """Every image with absolute path, item metadata, group, split, keep and label."""
    return annotate(
        images_with_paths(store, refs.images),
        store.read_table(refs.items),
        store.read_table(refs.groups),
        store.read_table(refs.splits),
        store.read_table(refs.noise_scores),
        store.read_table(refs.noise_labels),
    )
