"""The pipeline's parameters: one typed model, loadable from a YAML or JSON file."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, Field, model_validator

from street2shop.cleaning.dedup import DedupParams
from street2shop.cleaning.noise import NoiseParams
from street2shop.crawler.core import CrawlParams
from street2shop.models.mining import MineParams
from street2shop.models.recipes import recipe_of
from street2shop.models.training import TrainParams
from street2shop.models.views import ViewParams
from street2shop.retrieval.evaluation import EvaluateParams
from street2shop.retrieval.index import IndexParams
from street2shop.storage.names import CRAWL, SOURCE
from street2shop.tasks.looks import LooksConfig
from street2shop.tasks.outfits import OutfitConfig
from street2shop.tasks.promote import PromoteParams
from street2shop.tasks.source import SourceParams


class PipelineConfig(BaseModel):
    """Everything a pipeline run needs besides the artifact store's home.

    The photos come from a crawl (``crawl``) or a labelled dataset (``source``): exactly one.
    """

    crawl: CrawlParams | None = None
    source: SourceParams | None = None
    #: the labelling team's good/noise labels of review photos (CSV or Parquet); None: no
    #: noise filter, every street photo is kept (a curated dataset)
    labels_path: str | None = None
    #: the demo shop's ground truth (item_id -> design_id), to measure merge quality
    truth_items_csv: str | None = None
    noise: NoiseParams = Field(default_factory=NoiseParams)
    dedup: DedupParams = Field(default_factory=DedupParams)
    #: the cached views a head trains on (used when ``train.recipe`` is "head")
    views: ViewParams = Field(default_factory=ViewParams)
    train: TrainParams = Field(default_factory=TrainParams)
    #: offline re-mining rounds after the first (online-mining) training round
    rounds: int = Field(default=1, ge=0)
    mine: MineParams = Field(default_factory=MineParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    index: IndexParams = Field(default_factory=IndexParams)
    #: when a new index replaces the served one
    promote: PromoteParams = Field(default_factory=PromoteParams)
    #: outfit compatibility ("complete the look") from the shop's outfits; None: not run
    outfits: OutfitConfig | None = None
    #: shop the look from the shop's lookbook posts; None: not run
    looks: LooksConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> PipelineConfig:
        if (self.crawl is None) == (self.source is None):
            raise ValueError("give exactly one of crawl (a shop to crawl) and source (a labelled dataset)")
        return self

    @model_validator(mode="after")
    def _one_input_spec(self) -> PipelineConfig:
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
    def from_file(cls, path: str | Path) -> PipelineConfig:
        text = Path(path).read_text()
        return cls.model_validate(yaml.safe_load(text))

    def to_file(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))
