"""Build-index stage task: a FAISS index of every shop photo of the catalogue.

The factory string (``auto`` picks exact search for small catalogues) and the index's
recall@20 against exact search on the test queries are recorded in the manifest. The
checkpoint that made the vectors is an input, so the API loads the model the index was
built with.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from street2shop.retrieval.index import IndexParams, build_index, recall_at_k_vs_exact, resolve_factory, save_index
from street2shop.storage.names import INDEX, INDEX_FILE, INDEX_IDS
from street2shop.storage.schemas import vectors_matrix
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.storage.stages import STAGES_BY_NAME
from street2shop.tasks.stage import StageResult, report_to_prefect, run_stage

STAGE = INDEX
CODE_VERSION = "1"
OUTPUTS = STAGES_BY_NAME[STAGE].outputs  # as storage/stages.py declares them


def run_build_index(
    store: ArtifactStore, embeddings: ArtifactRef, images: ArtifactRef, checkpoint: ArtifactRef, params: IndexParams
) -> StageResult:
    def compute(writers) -> None:
        emb = store.read_table(embeddings)
        imgs = store.read_table(images, columns=["image_id", "item_id", "role"])
        vec_of = dict(zip(emb.column("image_id").to_pylist(), range(emb.num_rows)))
        matrix = vectors_matrix(emb)
        shop = imgs.filter(pc.equal(imgs.column("role"), "shop")).sort_by([("item_id", "ascending"), ("image_id", "ascending")])
        shop_ids, shop_items = shop.column("image_id").to_pylist(), shop.column("item_id").to_pylist()
        missing = [i for i in shop_ids if i not in vec_of]
        if missing:
            raise ValueError(f"{len(missing)} shop photo(s) have no embedding (e.g. {missing[0]}): evaluate and index used different data")
        vectors = matrix[[vec_of[i] for i in shop_ids]]
        factory = resolve_factory(len(vectors), vectors.shape[1], params.factory)
        index = build_index(vectors, factory, seed=params.seed)
        street = imgs.filter(pc.equal(imgs.column("role"), "street"))
        query_rows = [vec_of[i] for i in street.column("image_id").to_pylist() if i in vec_of]
        queries = matrix[query_rows] if query_rows else vectors[: min(len(vectors), 256)]
        recall = recall_at_k_vs_exact(index, vectors, queries, k=min(params.recall_k, len(vectors)))
        save_index(index, writers[INDEX_IDS].path(INDEX_FILE))
        writers[INDEX_IDS].write_table(
            pa.table({"row": pa.array(range(len(shop_ids)), pa.int64()), "image_id": shop_ids, "item_id": shop_items})
        )
        writers[INDEX_IDS].metrics.update(
            {"factory": factory, "vectors": len(vectors), "dim": int(vectors.shape[1]), f"recall@{params.recall_k}_vs_exact": recall}
        )

    inputs = {"embeddings": embeddings, "images": images, "checkpoint": checkpoint}
    return run_stage(store, STAGE, CODE_VERSION, OUTPUTS, compute, inputs=inputs, params=params)


@task(name="build-index", cache_policy=NO_CACHE)
def build_index_task(home: str, embeddings: ArtifactRef, images: ArtifactRef, checkpoint: ArtifactRef, params: IndexParams) -> StageResult:
    result = run_build_index(ArtifactStore(home), embeddings, images, checkpoint, params)
    report_to_prefect(result, "build index")
    return result
