"""The shared mechanics of a stage: derive the version, skip if published, else compute and publish.

Every stage task is ``run_stage(...)`` around a pure core function. That one mechanism is
what makes a re-run with nothing changed skip every stage, a changed parameter re-run
only that stage and those after it, and a failed stage re-run alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from street2shop.storage.faults import fault_point
from street2shop.storage.stages import STAGES_BY_NAME
from street2shop.storage.store import ArtifactRef, ArtifactStore, VersionWriter, version_id

log = logging.getLogger("street2shop")

#: DataLoader worker processes inside Prefect tasks. Forked workers die at shutdown under
#: Prefect's run context ("worker exited unexpectedly with exit code 1"; reproduced with a
#: bare TensorDataset), and spawn/forkserver workers cost seconds each to start, so stage
#: tasks decode in the main process; the model's intra-op threads still use both cores.
LOADER_WORKERS = 0


@dataclass
class StageResult:
    """What a stage task returns: small references, never data."""

    stage: str
    version: str
    refs: dict[str, ArtifactRef]
    skipped: bool
    metrics: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> ArtifactRef:
        return self.refs[name]


def run_stage(
    store: ArtifactStore,
    stage: str,
    code_version: str,
    outputs: Sequence[str],
    compute: Callable[[dict[str, VersionWriter]], None],
    *,
    inputs: Mapping[str, ArtifactRef] | None = None,
    params: Any = None,
    version: str | None = None,
) -> StageResult:
    """Publish ``outputs`` of ``stage`` for these inputs and params, unless already published.

    ``compute(writers)`` fills one :class:`VersionWriter` per output; it runs only when
    some output of this version is missing. ``version`` overrides the derived id (for
    stages that version by content, like the crawl).
    """
    inputs = dict(inputs or {})
    version = version or version_id(stage, code_version, inputs, params)
    refs = {name: ArtifactRef(stage=stage, name=name, version=version) for name in outputs}
    if all(store.exists(r) for r in refs.values()):
        metrics = store.manifest(refs[outputs[0]]).metrics
        log.info("%s: version %s already published, skipping", stage, version)
        fault_point(stage, "skip", version)
        return StageResult(stage, version, refs, skipped=True, metrics=metrics)
    # fault_point: where the reliability suite kills or fails a stage (storage/faults.py)
    with store.publish(stage, outputs, version, inputs=inputs, params=params, code_version=code_version) as writers:
        fault_point(stage, "compute", version)
        compute(writers)
        fault_point(stage, "computed", version)
    metrics = store.manifest(refs[outputs[0]]).metrics
    log.info("%s: published version %s", stage, version)
    fault_point(stage, "published", version)
    return StageResult(stage, version, refs, skipped=False, metrics=metrics)


def report_to_prefect(result: StageResult, title: str | None = None) -> StageResult:
    """Show a stage's key figures as a markdown artifact in the Prefect UI (when in a run);
    returns ``result``."""
    try:
        from prefect.artifacts import create_markdown_artifact
        from prefect.context import get_run_context

        get_run_context()
    except Exception:  # not inside a Prefect run (plain call from a test or the CLI)
        return result
    lines = [
        f"### {title or result.stage}: version `{result.version}`" + (" (reused)" if result.skipped else ""),
        "",
        "| figure | value |",
        "| --- | --- |",
    ]
    # the figures the stage declares (storage/stages.py) first, then the rest by name
    declared = STAGES_BY_NAME[result.stage].figures if result.stage in STAGES_BY_NAME else ()
    for key, value in sorted(result.metrics.items(), key=lambda kv: (kv[0] not in declared, kv[0])):
        if isinstance(value, float):
            value = f"{value:.4g}"
        if not isinstance(value, (dict, list)):
            lines.append(f"| {key} | {value} |")
    key = f"{result.stage}-figures".replace("_", "-")
    create_markdown_artifact(markdown="\n".join(lines), key=key, description=f"{result.stage} key figures")
    return result
