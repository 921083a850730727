"""An evaluated version's HTML report, rebuilt from its published artifacts alone.

The ranking is recomputed from the version's ``embeddings`` (the trained model's vectors)
through the one evaluation path, so no model is loaded; ``street2shop report`` calls
:func:`write_report`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from street2shop.cleaning.selection import gallery_images, query_images
from street2shop.retrieval.evaluation import score_vectors
from street2shop.retrieval.report import ReportData, build_report_data, render_report
from street2shop.storage.names import EMBEDDINGS
from street2shop.storage.schemas import vectors_matrix
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.tasks.data import DataRefs, load_annotated


def report_from_store(store: ArtifactStore, metrics_ref: ArtifactRef, seed: int = 0) -> ReportData:
    """The report data of an evaluated ``metrics`` version."""
    manifest = store.manifest(metrics_ref)
    by_name = {r.name: r for r in manifest.inputs}
    data_refs = DataRefs(**{name: by_name[name] for name in DataRefs.model_fields})
    split = manifest.params.get("split", "test")
    ks = manifest.params.get("ks", [1, 5, 10, 20])
    annotated = load_annotated(store, data_refs)
    vectors = vectors_for(store, metrics_ref.model_copy(update={"name": EMBEDDINGS}), annotated, split)
    report = score_vectors(vectors["queries"], vectors["gallery"], annotated, split, ks)
    title = f"street2shop evaluation {metrics_ref.version}"
    return build_report_data(title, store.read_table(metrics_ref), annotated, split, report, vectors, seed=seed, figures=manifest.metrics)


def vectors_for(store: ArtifactStore, embeddings_ref: ArtifactRef, annotated: pa.Table, split: str) -> dict[str, np.ndarray]:
    """The published vectors of ``gallery_images`` and ``query_images`` in their row order."""
    emb = store.read_table(embeddings_ref)
    matrix = vectors_matrix(emb)
    row_of = {image_id: i for i, image_id in enumerate(emb.column("image_id").to_pylist())}
    out = {}
    for key, table in (("gallery", gallery_images(annotated)), ("queries", query_images(annotated, split))):
        ids = table.column("image_id").to_pylist()
        missing = [i for i in ids if i not in row_of]
        if missing:
            raise ValueError(f"{embeddings_ref} lacks {len(missing)} {key} vector(s), e.g. {missing[0]}")
        out[key] = matrix[[row_of[i] for i in ids]]
    return out


def write_report(store: ArtifactStore, metrics_ref: ArtifactRef, out_path: str | Path) -> Path:
    """Render the report of an evaluated ``metrics`` version to ``out_path``."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(render_report(report_from_store(store, metrics_ref)), encoding="utf-8")
    return out_path
