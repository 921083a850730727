"""Crawl stage task: walk the shop, publish ``items``, ``images``, ``outfits``, ``snaps``, ``snap_items`` and ``crawl_rejects``.

The crawl's input is a live shop, so its version is derived from what it found: an
unchanged shop gives the same tables, hence the same version, and publishes nothing new.
The outfits and the lookbook (``snaps``, ``snap_items``) join that content only when the shop
has some, so a shop without them keeps the version it always had.
"""

from __future__ import annotations

import hashlib

from prefect import task
from prefect.cache_policies import NO_CACHE

from street2shop.crawler.core import CrawlParams, RobotsDisallowed, crawl
from street2shop.storage.names import CRAWL, ITEMS
from street2shop.storage.store import ArtifactStore, content_version
from street2shop.storage.stages import STAGES_BY_NAME
from street2shop.tasks.stage import StageResult, report_to_prefect, run_stage

STAGE = CRAWL
CODE_VERSION = "1"
OUTPUTS = STAGES_BY_NAME[STAGE].outputs  # as storage/stages.py declares them


def crawl_state_key(params: CrawlParams) -> str:
    """One resumable crawl journal per shop and adapter."""
    return hashlib.sha256(f"{params.base_url}|{params.adapter}".encode()).hexdigest()[:16]


def run_crawl(store: ArtifactStore, params: CrawlParams) -> StageResult:
    previous = None
    items_ref, images_ref = store.latest_or_none(STAGE, "items"), store.latest_or_none(STAGE, "images")
    if items_ref and images_ref:
        previous = (store.read_table(items_ref), store.read_table(images_ref))
    result = crawl(params, store.blobs, store.work_dir(STAGE, crawl_state_key(params)), previous=previous)
    tables = {"items": result.items, "images": result.images, "crawl_rejects": result.rejects, "outfits": result.outfits,
              "snaps": result.snaps, "snap_items": result.snap_items}
    # Rejects describe one pass (an incremental pass does not revisit old pages), so the
    # version is what was found: items and images, and the outfits when there are some.
    content = {"items": result.items, "images": result.images}
    for name in ("outfits", "snaps", "snap_items"):
        if tables[name].num_rows:
            content[name] = tables[name]
    version = content_version(content, extra={"code": CODE_VERSION})

    def compute(writers) -> None:
        for name, table in tables.items():
            writers[name].write_table(table)
        writers[ITEMS].metrics.update(
            {
                "items": result.items.num_rows,
                "images": result.images.num_rows,
                "rejected": result.rejects.num_rows,
                **{k: v for k, v in result.stats.items() if isinstance(v, (int, float, str))},
            }
        )

    # Params that do not change what was crawled (speed knobs) stay out of the version.
    return run_stage(store, STAGE, CODE_VERSION, OUTPUTS, compute, params=params, version=version)


def worth_retrying(task, task_run, state) -> bool:
    """Retry a failed crawl unless the shop said no: robots.txt forbidding the crawl does not
    change in 30 s, so retrying it would only delay the error."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - no result to look at: let the retry policy decide
        return True
    return not isinstance(error, RobotsDisallowed)


@task(name="crawl", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=worth_retrying)
def crawl_task(home: str, params: CrawlParams) -> StageResult:
    result = run_crawl(ArtifactStore(home), params)
    report_to_prefect(result, "crawl")
    return result
