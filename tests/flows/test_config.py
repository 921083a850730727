"""The pipeline config: one input spec for the stages that embed (views, train, the localised
search), and the training recipe chosen by name."""

from __future__ import annotations

import pytest

from street2shop.flows.config import PipelineConfig
from street2shop.flows.demo import TINY, demo_config
from street2shop.models.recipes import RECIPES, recipe_of
from street2shop.models.training import TrainParams


@pytest.fixture()
def demo(tmp_path) -> dict:
    return demo_config(tmp_path, "http://127.0.0.1:1", TINY, progress=False).model_dump(mode="json")


def test_the_demo_config_agrees_with_itself(demo):
    assert recipe_of(PipelineConfig.model_validate(demo).train).uses_views


@pytest.mark.parametrize(("section", "field", "value", "twin"), [
    ("views", "image_size", 80, "train.image_size=64"),
    ("train", "backbone", "efficientnet_lite0", "views.backbone='tiny'"),
    ("views", "resize", "squash", "train.resize="),
    ("views", "crop_scales", [0.5], "evaluate.localise.options.scales="),
])
def test_a_disagreement_names_both_fields(demo, section, field, value, twin):
    demo[section][field] = value
    with pytest.raises(ValueError, match="disagree") as err:
        PipelineConfig.model_validate(demo)
    message = str(err.value)
    assert f"{section}.{field}={value!r}" in message or f"{section}.{field}" in message
    assert twin in message


def test_a_fine_tune_recipe_trains_on_photos_so_views_may_differ(demo):
    demo["train"]["recipe"] = "fine_tune"
    demo["views"]["image_size"] = 80
    assert not recipe_of(PipelineConfig.model_validate(demo).train).uses_views


def test_recipes_losses_and_miners_are_the_registries_names():
    assert set(RECIPES.names()) == {"head", "fine_tune"}
    with pytest.raises(ValueError, match="'fine_tune' or 'head'"):
        TrainParams(recipe="heads")
    with pytest.raises(ValueError, match="'arcface', 'contrastive', 'softmax' or 'triplet'"):
        TrainParams(loss="tripplet")


def test_a_declared_stage_brings_its_section(monkeypatch):
    from street2shop.flows import config
    from street2shop.storage.stages import STAGES, Stage

    extra = (Stage("sharpen", "street2shop.models.localise:x", None, "sharpen", (), ("sharpened",), needs="sharpen",
                   params="street2shop.models.mining:MineParams"),
             Stage("tidy", "street2shop.models.localise:x", None, "tidy", (), ("tidied",), params="street2shop.retrieval.index:IndexParams"))
    monkeypatch.setattr(config, "STAGES", STAGES + extra)
    sections = config._stage_sections()
    assert list(sections)[-2:] == ["sharpen", "tidy"]
    assert sections["sharpen"][1] is None and sections["tidy"][1].default_factory().factory == "auto"
    assert [s for s in sections if s in ("crawl", "outfits.features")] == []  # written by hand, inside outfits
