"""street2shop.models: the embedder, from photos to unit-norm retrieval vectors.

Pure code, no orchestration or storage paths. Modules, in pipeline order:

- ``backbones``: trunks by name (``tiny``, ``efficientnet_lite0`` default, torchvision nets,
  any timm model as ``timm:<model>``, open_clip image towers as ``open_clip:<arch>``).
- ``pooling``: GeM / SPoC / MAC, ``cls`` (the backbone's own pooled vector) and combined
  global descriptors (``"gem+mac+spoc"``).
- ``preprocess``: the resize/normalise recipe each backbone declares and checkpoints carry.
- ``embedder``: ``build_embedder``, ``pretrained_features``, ``save_checkpoint``, ``load_embedder``.
- ``losses``: pytorch-metric-learning losses and miners by name.
- ``data``: image dataset and P x K (shop/street) batch sampler.
- ``training``: ``TrainParams`` and ``train_embedder`` (seeded, resumable).
- ``embed``: ``embed_images``, the one batch-inference path.
- ``mining``: ``MineParams`` and ``mine_semi_hard`` (offline triplet rounds).
"""
