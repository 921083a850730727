"""The pipeline's parameters: one typed model, loadable from a YAML or JSON file."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from street2shop.cleaning.dedup import DedupParams
from street2shop.cleaning.noise import NoiseParams
from street2shop.crawler.core import CrawlParams
from street2shop.models.mining import MineParams
from street2shop.models.training import TrainParams
from street2shop.retrieval.evaluation import EvaluateParams
from street2shop.retrieval.index import IndexParams
from street2shop.tasks.promote import PromoteParams


class PipelineConfig(BaseModel):
    """Everything a pipeline run needs besides the artifact store's home."""

    crawl: CrawlParams
    #: the labelling team's good/noise labels of review photos (CSV or Parquet)
    labels_path: str
    #: the demo shop's ground truth (item_id -> design_id), to measure merge quality
    truth_items_csv: str | None = None
    noise: NoiseParams = Field(default_factory=NoiseParams)
    dedup: DedupParams = Field(default_factory=DedupParams)
    train: TrainParams = Field(default_factory=TrainParams)
    #: offline re-mining rounds after the first (online-mining) training round
    rounds: int = Field(default=1, ge=0)
    mine: MineParams = Field(default_factory=MineParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    index: IndexParams = Field(default_factory=IndexParams)
    #: when a new index replaces the served one
    promote: PromoteParams = Field(default_factory=PromoteParams)

    @classmethod
    def from_file(cls, path: str | Path) -> "PipelineConfig":
        text = Path(path).read_text()
        return cls.model_validate(yaml.safe_load(text))

    def to_file(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))
