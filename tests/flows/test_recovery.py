"""Recovery: after a stage fails (an exception, or the process killed), re-running the
pipeline redoes only that stage and those after it, and no half-written version is ever
visible. One tiny pipeline run is shared by the whole module; each failure after it
changes one parameter so that the failing stage has new work to do.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import street2shop.flows.stages as stage_flows
import street2shop.tasks.crawl as crawl_module
from street2shop.flows.demo import TINY, demo_config, serving_demo_shop
from street2shop.flows.config import PipelineConfig
from street2shop.flows.pipeline import PipelineResult, pipeline
from street2shop.storage.store import MANIFEST, ArtifactRef, ArtifactStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

ALL = ["crawl", "noise", "dedup", "views", "train[0]", "mine[1]", "train[1]", "localise", "evaluate", "index"]
CRAWL_KILLED_AFTER = 20  # images


class Injected(RuntimeError):
    """The failure the tests inject."""


def fail(*args, **kwargs):
    raise Injected("injected failure")


@dataclass
class Demo:
    home: Path
    cfg: PipelineConfig
    first: PipelineResult
    after_crawl_failure: list[str]  # version folders visible after the failed crawl

    @property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.home)


def version_folders(store: ArtifactStore) -> list[Path]:
    return sorted(store.root.glob("*/*/version=*")) if store.root.exists() else []


def assert_only_complete_versions(store: ArtifactStore) -> None:
    folders = version_folders(store)
    assert all((f / MANIFEST).exists() for f in folders), [str(f) for f in folders if not (f / MANIFEST).exists()]
    assert len(store.manifests()) == len(folders)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    store = ArtifactStore(home)
    with serving_demo_shop(home, TINY) as (shop_dir, url):
        cfg = demo_config(shop_dir, url, TINY, progress=False)
        # The crawl dies after CRAWL_KILLED_AFTER images: its task retries would recover on
        # their own (that is what they are for), so they are off to see the pipeline fail.
        fetched = []

        def dies_after_some_images(params, blobs, state_dir, previous=None):
            def after_fetch(kind: str, url: str) -> None:
                fetched.append(kind)
                if fetched.count("image") >= CRAWL_KILLED_AFTER:
                    raise Injected(f"crawl killed after {CRAWL_KILLED_AFTER} images")

            return real_crawl(params, blobs, state_dir, previous=previous, after_fetch=after_fetch)

        real_crawl = crawl_module.crawl
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(crawl_module, "crawl", dies_after_some_images)
            mp.setattr(stage_flows, "crawl_task", stage_flows.crawl_task.with_options(retries=0))
            with pytest.raises(Injected):
                pipeline(str(home), cfg)
        after_crawl_failure = [str(p) for p in version_folders(store)]
        first = pipeline(str(home), cfg)
        yield Demo(home, cfg, first, after_crawl_failure)


def versions(result: PipelineResult) -> dict[str, str]:
    return {s["label"]: s["version"] for s in result.stages}


def test_killed_crawl_publishes_nothing_and_the_rerun_resumes_it(demo) -> None:
    assert demo.after_crawl_failure == []
    assert demo.first.ran == ALL
    crawl = demo.first.stage("crawl")["metrics"]
    assert crawl["resumed"] == 1
    assert crawl["images_from_journal"] >= CRAWL_KILLED_AFTER
    assert_only_complete_versions(demo.store)


def test_failed_training_round_reruns_from_that_round(demo, monkeypatch) -> None:
    cfg = demo.cfg.model_copy(update={"mine": demo.cfg.mine.model_copy(update={"per_anchor": 3})})
    trains_before = len(demo.store.manifests("train"))
    # train[0] is published for these inputs and skipped; mine[1] runs, train[1] fails
    monkeypatch.setattr("street2shop.tasks.train.train_embedder", fail)
    with pytest.raises(Injected):
        pipeline(str(demo.home), cfg)
    assert len(demo.store.manifests("train")) == trains_before
    assert not list((demo.store.root / "train").glob("*/.tmp-*"))
    assert_only_complete_versions(demo.store)

    monkeypatch.undo()
    again = pipeline(str(demo.home), cfg)
    assert again.ran == ["train[1]", "evaluate", "index"]
    before, after = versions(demo.first), versions(again)
    assert all(after[s] == before[s] for s in ["crawl", "noise", "dedup", "views", "train[0]"])
    assert after["mine[1]"] != before["mine[1]"]  # published by the failed run, reused now
    assert len(demo.store.manifests("train", "checkpoint")) == trains_before // 2 + 1
    assert_only_complete_versions(demo.store)


def test_failed_index_build_reruns_only_the_index(demo, monkeypatch) -> None:
    cfg = demo.cfg.model_copy(update={"index": demo.cfg.index.model_copy(update={"recall_k": 10})})
    monkeypatch.setattr("street2shop.tasks.index.build_index", fail)
    with pytest.raises(Injected):
        pipeline(str(demo.home), cfg)
    assert_only_complete_versions(demo.store)
    monkeypatch.undo()
    again = pipeline(str(demo.home), cfg)
    assert again.ran == ["index"]
    assert {k: v for k, v in versions(again).items() if k != "index"} == {k: v for k, v in versions(demo.first).items() if k != "index"}
    assert again.stage("index")["metrics"]["recall@10_vs_exact"] == pytest.approx(1.0)  # Flat: exact


_KILLED_CHILD = """
import os, signal, sys
import street2shop.tasks.index as index_task
from street2shop.storage.store import ArtifactRef, ArtifactStore

real_save = index_task.save_index

def save_then_die(index, path):
    real_save(index, path)  # the version's folder now holds a file, but no manifest yet
    os.kill(os.getpid(), signal.SIGKILL)

index_task.save_index = save_then_die
refs = [ArtifactRef.model_validate_json(a) for a in sys.argv[2:5]]
index_task.run_build_index(ArtifactStore(sys.argv[1]), *refs, index_task.IndexParams.model_validate_json(sys.argv[5]))
"""


def test_sigkilled_index_build_leaves_no_visible_version(demo) -> None:
    store, first = demo.store, versions(demo.first)
    cfg = demo.cfg.model_copy(update={"index": demo.cfg.index.model_copy(update={"recall_k": 5})})
    inputs = [
        ArtifactRef(stage="evaluate", name="embeddings", version=first["evaluate"]),
        ArtifactRef(stage="crawl", name="images", version=first["crawl"]),
        ArtifactRef(stage="train", name="checkpoint", version=first["train[1]"]),
    ]
    served = store.latest("index", "index_ids")
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_CHILD, str(demo.home), *[r.model_dump_json() for r in inputs], cfg.index.model_dump_json()],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    leftovers = list((store.root / "index" / "index_ids").glob(".tmp-*"))
    assert len(leftovers) == 1 and (leftovers[0] / "index.faiss").exists()
    assert_only_complete_versions(store)  # the temp folder is not a version
    assert store.latest("index", "index_ids") == served

    assert store.clean_temporary() == 1
    again = pipeline(str(demo.home), cfg)
    assert again.ran == ["index"]
    assert json.loads((store.version_dir(store.latest("index", "index_ids")) / MANIFEST).read_text())["params"]["recall_k"] == 5
    assert_only_complete_versions(store)
