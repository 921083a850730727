"""The pipeline's last step: decide whether the new index replaces the served one.

A thin flow around :func:`street2shop.tasks.promote.promote`; the decision and its reason also go
to the Prefect UI as a markdown artifact, so a nightly run that kept the old model says
why.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from street2shop.storage.promotions import PromotionDecision
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.tasks.promote import PromoteParams, promote


def promotion_markdown(d: PromotionDecision) -> str:
    served = f"`{d.previous.version}` ({d.metric} = {d.previous_value:.4f})" if d.previous is not None else "nothing"
    return "\n".join(
        [
            f"### promotion: {'promoted' if d.promoted else 'NOT promoted'}",
            "",
            "| | |",
            "| --- | --- |",
            f"| candidate | `{d.candidate.version}` ({d.metric} = {d.value:.4f}) |",
            f"| served before | {served} |",
            f"| margin | {d.margin} |",
            f"| reason | {d.reason} |",
        ]
    )


@flow(name="promote", log_prints=True)
def promote_flow(home: str, index: ArtifactRef, params: PromoteParams | None = None) -> PromotionDecision:
    decision = promote(ArtifactStore(home), index, params)
    create_markdown_artifact(markdown=promotion_markdown(decision), key="promotion", description="promotion decision")
    print(f"index {index.version}: {'promoted' if decision.promoted else 'not promoted'} ({decision.reason})")
    return decision
