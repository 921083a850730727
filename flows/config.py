"""The pipeline's parameters: one typed model, loadable from a YAML or JSON file.

Each stage's section is built from its entry in ``storage/stages.py`` (its ``section`` and its
``params`` model): a section whose stage runs only when it is set (``needs``) is optional,
any other has its model's defaults. What no stage declares (where the photos come from, the
labels, the rounds, the promotion) is written here.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, create_model, model_validator

from street2shop.crawler.core import CrawlParams
from street2shop.models.recipes import recipe_of
from street2shop.storage.names import CRAWL, SOURCE
from street2shop.storage.stages import STAGES
from street2shop.tasks.promote import PromoteParams
from street2shop.tasks.source import SourceParams


class PipelineSettings(BaseModel):
    """The fields of :class:`PipelineConfig` that no stage's entry declares.

    The photos come from a crawl (``crawl``) or a labelled dataset (``source``): exactly one.
    """

    crawl: CrawlParams | None = None
    source: SourceParams | None = None
    #: the labelling team's good/noise labels of review photos (CSV or Parquet); None: no
    #: noise filter, every street photo is kept (a curated dataset)
    labels_path: str | None = None
    #: the demo shop's ground truth (item_id -> design_id), to measure merge quality
    truth_items_csv: str | None = None
    #: the demo shop's true garment box of each customer photo, to score the localiser by
    truth_boxes_csv: str | None = None
    #: offline re-mining rounds after the first (online-mining) training round
    rounds: int = Field(default=1, ge=0)
    #: when a new index replaces the served one
    promote: PromoteParams = Field(default_factory=PromoteParams)

    @model_validator(mode="after")
    def _one_source(self) -> PipelineSettings:
        if (self.crawl is None) == (self.source is None):
            raise ValueError("give exactly one of crawl (a shop to crawl) and source (a labelled dataset)")
        return self

    @model_validator(mode="after")
    def _one_input_spec(self) -> PipelineSettings:
        """A recipe that trains on the views' cached descriptors needs the photos seen the same
        way by the views, the training and the localised search: one field that disagrees
        with its twin is named, with the twin."""
        if not recipe_of(self.train).uses_views:
            return self
        twins = [(f"views.{f}", getattr(self.views, f), f"train.{f}", getattr(self.train, f)) for f in ("backbone", "pretrained", "resize")]
        if self.train.image_size is not None:  # None: the backbone's own size
            twins.append(("views.image_size", self.views.image_size, "train.image_size", self.train.image_size))
        localise = self.evaluate.localise
        if localise.name == "multicrop":  # street photos searched as the crops the head trained on
            for option, field in (("scales", "crop_scales"), ("positions", "crop_positions")):
                if option in localise.options:
                    twins.append((f"evaluate.localise.options.{option}", localise.options[option], f"views.{field}", getattr(self.views, field)))
        for a, va, b, vb in twins:
            if va != vb:
                raise ValueError(f"{a}={va!r} and {b}={vb!r} disagree: recipe {self.train.recipe!r} trains on the views' "
                                 f"descriptors, so give both the same value")
        return self

    @property
    def photos_stage(self) -> str:
        """The stage that publishes ``items`` and ``images``."""
        return CRAWL if self.crawl is not None else SOURCE

    @classmethod
    def from_file(cls, path: str | Path) -> PipelineSettings:
        text = Path(path).read_text()
        return cls.model_validate(yaml.safe_load(text))

    def to_file(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))


def _params_model(dotted: str) -> type[BaseModel]:
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


def _stage_sections() -> dict[str, tuple]:
    """``section -> (type, default)`` of every declared stage with a section of its own."""
    sections: dict[str, tuple] = {}
    for stage in STAGES:
        if "." in stage.section or stage.section in PipelineSettings.model_fields or stage.section in sections:
            continue  # inside another section, written above, or shared by the stages of one side model
        model = _params_model(stage.params)
        optional = stage.needs == stage.section
        sections[stage.section] = (model | None, None) if optional else (model, Field(default_factory=model))
    return sections


#: Everything a pipeline run needs besides the artifact store's home: :class:`PipelineSettings`
#: and a section per declared stage (``noise``, ``dedup``, ``views``, ``train``, ``mine``,
#: ``evaluate``, ``index``; ``outfits`` and ``looks``, None: not run).
PipelineConfig = create_model("PipelineConfig", __base__=PipelineSettings, __module__=__name__,
                              __doc__="Everything a pipeline run needs besides the artifact store's home.",
                              **_stage_sections())
