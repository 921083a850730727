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
VIEWS = "views"  # cached descriptors of training views (recipe "head")
LOCALISE = "localise"  # the garment localiser, learned from the training street photos
TRAIN = "train"
MINE = "mine"
EVALUATE = "evaluate"
INDEX = "index"

# (their order, what each reads and publishes: ``storage/stages.py``, the one declaration)

#: The crawl's alternative: a labelled dataset (publishes the same ``items`` and ``images``).
SOURCE = "source"

#: Outfit compatibility ("complete the look"), beside train <-> mine: frozen backbone features
#: of the photos, then models trained and scored on them; their own dataset source (Polyvore).
FEATURES = "features"
OUTFIT_TRAIN = "outfit_train"
OUTFIT_EVALUATE = "outfit_evaluate"
POLYVORE = "polyvore"
#: Shop the look: lookbook posts and the items linked to them, in one space.
LOOKS_TRAIN = "looks_train"
LOOKS_EVALUATE = "looks_evaluate"

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
LOCALISER = "localiser"  # of localise: the box head (LOCALISER_FILE) and its figures
PSEUDO_BOXES = "pseudo_boxes"  # of localise: image_id, box it was trained on
EMBEDDINGS = "embeddings"
INDEX_IDS = "index_ids"
OUTFITS = "outfits"  # of the crawl (and polyvore): outfit_id, item_id, type, position
PHOTO_FEATURES = "photo_features"  # of features: one frozen-backbone vector per photo
OUTFIT_SPLITS = "outfit_splits"  # of outfit_train (and polyvore: the data set's own)
OUTFIT_MODEL = "outfit_model"  # of outfit_train: the compatibility models (OUTFIT_MODEL_FILE)
OUTFIT_QUESTIONS = "outfit_questions"  # of outfit_evaluate (and polyvore): compatibility and FITB questions
OUTFIT_METRICS = "outfit_metrics"  # of outfit_evaluate
SNAPS = "snaps"  # of the crawl: lookbook posts (snap_id, photo, style, tags)
SNAP_ITEMS = "snap_items"  # of the crawl: the items each post links
LOOKS_MODEL = "looks_model"  # of looks_train: the CGD heads (LOOKS_MODEL_FILE)
LOOKS_SPLITS = "looks_splits"  # of looks_train: snap_id, split
LOOKS_METRICS = "looks_metrics"  # of looks_evaluate

# ---- files inside a version folder -----------------------------------------------------
CHECKPOINT_FILE = "model.pt"  # of train/checkpoint (and import/checkpoint)
INDEX_FILE = "index.faiss"  # of index/index_ids
REPORT_FILE = "report.html"  # of evaluate/metrics
LOCALISER_FILE = "localiser.pt"  # of localise/localiser: save_localiser / load_localiser
SERVING_FILE = "serving.json"  # of evaluate/checkpoint: which model is served, how queries are localised
OUTFIT_MODEL_FILE = "outfits.pt"  # of outfit_train/outfit_model
OUTFIT_REPORT_FILE = "outfits.html"  # of outfit_evaluate/outfit_metrics
LOOKS_MODEL_FILE = "looks.pt"  # of looks_train/looks_model
LOOKS_REPORT_FILE = "looks.html"  # of looks_evaluate/looks_metrics

# ---- folders of the store's home beside artifacts/ -------------------------------------
PROMOTIONS_DIR = "promotions"  # the append-only promotion log
