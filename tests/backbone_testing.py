"""Tiny models of each library backbone kind, saved to a folder the way a real checkpoint is
published, so the tests load them through exactly the path a real one takes (name -> files
-> ``create_model`` -> weights).

- a timm ViT (``vit_tiny_patch16_224`` shrunk: 32 wide, 2 blocks, 64 px) written by timm's
  ``save_for_hf`` (``config.json`` + ``model.safetensors``, what the hub holds), named
  ``timm:local-dir:<folder>``;
- an open_clip CLIP (a ViT tower 32 wide, 2 blocks, 64 px, and a one-layer text tower)
  described by an ``open_clip_config.json`` model config and its weights
  (``open_clip_pytorch_model.bin``), named ``open_clip:local-dir:<folder>``.

Weights are random under a fixed seed: the tests check that they arrive, not what they know.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SIZE = 64

OPEN_CLIP_CONFIG = {
    "model_cfg": {
        "embed_dim": 24,
        "vision_cfg": {"image_size": SIZE, "layers": 2, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
    },
    "preprocess_cfg": {"size": SIZE, "mean": [0.48, 0.46, 0.41], "std": [0.27, 0.26, 0.28], "interpolation": "bilinear"},
}


def save_tiny_timm_vit(folder: Path, seed: int = 0) -> str:
    """A tiny timm ViT saved for the hub in ``folder``; returns its backbone name."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(seed)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, embed_dim=32, depth=2, num_heads=2,
                              img_size=SIZE, num_classes=0)
    save_for_hf(model, folder, safe_serialization=True)
    return f"timm:local-dir:{folder}"


def save_tiny_open_clip(folder: Path, seed: int = 0) -> str:
    """A tiny open_clip model (config JSON + weights) in ``folder``; returns its backbone name."""
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(OPEN_CLIP_CONFIG))
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False, pretrained_text=False)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return f"open_clip:local-dir:{folder}"
