"""The names every layer shares: stages, their artifacts, the files inside a version.

One home for each constant, so a stage's task, the flow that calls it, the service that
loads its output and the CLI that lists it cannot drift apart. Changing a name here changes
where artifacts live: a stage name or an artifact name is part of every stored path.
"""

from __future__ import annotations

# ---- stages, in pipeline order ---------------------------------------------------------
CRAWL = "crawl"
NOISE = "noise"
DEDUP = "dedup"
TRAIN = "train"
MINE = "mine"
EVALUATE = "evaluate"
INDEX = "index"

#: The pipeline's stages in the order they run (``street2shop run --stage``, ``status``).
STAGE_ORDER: tuple[str, ...] = (CRAWL, NOISE, DEDUP, TRAIN, MINE, EVALUATE, INDEX)

#: The crawl's alternative: a labelled dataset (publishes the same ``items`` and ``images``).
SOURCE = "source"

#: Stages outside the pipeline that publish into the same store.
CATALOG = "catalog"  # an imported product feed (``street2shop index --catalog``)
CATALOG_EMBED = "catalog_embed"  # its embeddings
IMPORT = "import"  # an imported checkpoint file
EMBED_CHUNK = "embed_chunk"  # one chunk of a catalogue embedded on Dask

# ---- artifacts (the <name> in artifacts/<stage>/<name>/) -------------------------------
ITEMS = "items"
IMAGES = "images"
CRAWL_REJECTS = "crawl_rejects"
NOISE_SCORES = "noise_scores"
NOISE_LABELS = "noise_labels"
NOISE_MODEL = "noise_model"
GROUPS = "groups"
SPLITS = "splits"
CHECKPOINT = "checkpoint"
TRAIN_LOG = "train_log"
TRIPLETS = "triplets"
METRICS = "metrics"
EMBEDDINGS = "embeddings"
INDEX_IDS = "index_ids"

# ---- files inside a version folder -----------------------------------------------------
CHECKPOINT_FILE = "model.pt"  # of train/checkpoint (and import/checkpoint)
INDEX_FILE = "index.faiss"  # of index/index_ids
REPORT_FILE = "report.html"  # of evaluate/metrics
SERVING_FILE = "serving.json"  # of evaluate/checkpoint: which model is served, how queries are localised

# ---- folders of the store's home beside artifacts/ -------------------------------------
PROMOTIONS_DIR = "promotions"  # the append-only promotion log
