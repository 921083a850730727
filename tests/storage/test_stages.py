"""The one declaration of the pipeline's stages: every name it gives resolves, and the
pipeline, ``run --stage`` and ``status`` read it."""

from __future__ import annotations

import importlib
import inspect

import pytest

from street2shop.storage import names as N
from street2shop.storage.stages import KEY_FIGURES, STAGE_NAMES, STAGES, stage
from street2shop.storage.status import is_key_figure


def _resolve(dotted: str):
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("declared", STAGES, ids=[s.name for s in STAGES])
def test_each_stage_names_a_core_and_a_runner_that_exist(declared):
    core = _resolve(declared.core)
    assert callable(core) and declared.core.split(".")[1] in {"models", "cleaning", "retrieval", "crawler", "sources"}
    if declared.runner is None:  # the generic runner calls its task
        assert declared.task.startswith("street2shop.tasks.") and callable(_resolve(declared.task))
    else:
        runner = _resolve(declared.runner)
        assert list(inspect.signature(runner).parameters) == ["run"] and declared.runner.startswith("street2shop.flows.")


@pytest.mark.parametrize("declared", STAGES, ids=[s.name for s in STAGES])
def test_each_stage_params_section_is_a_config_field_of_its_declared_model(declared):
    from street2shop.flows.config import PipelineConfig

    params = _resolve(declared.params)
    head, _, rest = declared.section.partition(".")
    field = PipelineConfig.model_fields[head]
    section = [a for a in getattr(field.annotation, "__args__", (field.annotation,)) if a is not type(None)][0]
    if rest:
        section = section.model_fields[rest].annotation
    assert section is params
    if declared.needs is not None:
        assert declared.needs in PipelineConfig.model_fields and PipelineConfig.model_fields[declared.needs].default is None
    elif declared.name != N.CRAWL:  # (the crawl or a dataset source: the config's validator wants one)
        assert isinstance(getattr(PipelineConfig(source={"path": "photos.csv"}), head), params)  # its defaults


def test_inputs_are_published_by_declared_stages_before_it():
    seen: dict[str, set[str]] = {}
    for s in STAGES:
        for ref in s.inputs:
            producer, name = ref.split("/")
            # train reads mine's triplets of the round before (the train <-> mine loop)
            assert name in seen.get(producer, set()) or (s.name, producer) == (N.TRAIN, N.MINE), f"{s.name} reads {ref}"
        seen[s.name] = set(s.outputs)


def test_a_stage_output_is_checked_against_the_declaration():
    assert stage(N.DEDUP).output(N.SPLITS) == "splits"
    with pytest.raises(KeyError, match="stage 'dedup' publishes no 'split'; it declares groups, splits"):
        stage(N.DEDUP).output("split")


def test_status_shows_the_declared_figures_and_an_unknown_stage_is_one_line():
    assert is_key_figure("merge_recall") and "merge_recall" in stage(N.DEDUP).figures
    assert not is_key_figure("photos_per_s") and "photos_per_s" not in KEY_FIGURES
    assert STAGE_NAMES[:3] == (N.CRAWL, N.NOISE, N.DEDUP)
    with pytest.raises(KeyError, match="unknown stage 'dedupe'; one of crawl, noise, dedup"):
        stage("dedupe")


def test_the_docs_page_is_the_declaration():
    from pathlib import Path

    from street2shop.storage.stages import docs_page

    page = (Path(__file__).resolve().parents[2] / "docs" / "stages.md").read_text()
    assert page == docs_page(), "docs/stages.md is behind storage/stages.py: python -m street2shop.storage.stages > docs/stages.md"
