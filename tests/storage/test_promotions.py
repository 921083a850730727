"""The promotion log (street2shop.storage.promotions): append-only, and shared through the store."""

from __future__ import annotations

import pytest

from promotion_testing import publish_model
from street2shop.storage.promotions import PromotionDecision, append_decision, promotion_log
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.promote import promote


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(tmp_path)


def test_log_records_are_never_overwritten(store) -> None:
    idx = publish_model(store, 0.5, "a")
    d = promote(store, idx)
    again = PromotionDecision.model_validate(d.model_dump() | {"promoted": False, "reason": "tampered"})
    with pytest.raises(FileExistsError):
        append_decision(store, again)  # same timestamp and version: same file name
    assert promotion_log(store) == [d]
    assert not list((store.home / "promotions").glob(".tmp-*"))
