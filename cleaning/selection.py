"""Which photos each use sees: one place for the rules, shared by training, mining, evaluation.

* Training uses shop photos of train-split items and street photos that are clean: a
  human label wins where there is one, the noise filter's ``keep`` decides elsewhere.
* Validation and test queries are street photos of that split that a human labelled
  ``good`` (labelled clean, not merely predicted clean); unlabelled photos fall back to the
  filter's ``keep`` only when no labels exist for that split at all.
* The gallery is every shop photo of the whole catalogue (a bigger gallery is harder).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc


def annotate(
    images: pa.Table,
    items: pa.Table,
    groups: pa.Table,
    splits: pa.Table,
    noise_scores: pa.Table | None = None,
    noise_labels: pa.Table | None = None,
) -> pa.Table:
    """``images`` plus the item's ``product_id``, ``category`` and ``colour``, its ``group_id``
    and ``split``, the noise filter's ``keep`` (shop photos are always kept) and the human
    ``label`` (null where unlabelled)."""
    con = duckdb.connect()
    con.register("images", images)
    con.register("items", items.select(["item_id", "product_id", "category", "colour"]))
    con.register("groups", groups)
    con.register("splits", splits)
    scores = noise_scores if noise_scores is not None else pa.table({"image_id": pa.array([], pa.string()), "keep": pa.array([], pa.bool_())})
    labels = noise_labels if noise_labels is not None else pa.table({"image_id": pa.array([], pa.string()), "label": pa.array([], pa.string())})
    con.register("scores", scores.select(["image_id", "keep"]))
    con.register("labels", labels.select(["image_id", "label"]))
    out = con.sql(
        """
        SELECT i.*, it.product_id, it.category, it.colour, g.group_id, s.split,
               CASE WHEN i.role = 'shop' THEN TRUE ELSE coalesce(sc.keep, TRUE) END AS keep,
               l.label
        FROM images i
        JOIN items it USING (item_id)
        JOIN groups g USING (item_id)
        JOIN splits s USING (group_id)
        LEFT JOIN (SELECT DISTINCT image_id, keep FROM scores) sc USING (image_id)
        LEFT JOIN (SELECT DISTINCT image_id, label FROM labels) l USING (image_id)
        ORDER BY i.item_id, i.role, i.image_id
        """
    ).to_arrow_table()
    con.close()
    return out


def _where(table: pa.Table, sql: str) -> pa.Table:
    con = duckdb.connect()
    con.register("t", table)
    out = con.sql(f"SELECT * FROM t WHERE {sql} ORDER BY item_id, role, image_id").to_arrow_table()
    con.close()
    return out


def training_images(annotated: pa.Table) -> pa.Table:
    return _where(annotated, "split = 'train' AND (role = 'shop' OR coalesce(label = 'good', keep))")


def query_images(annotated: pa.Table, split: str) -> pa.Table:
    """Street photos of ``split`` used as evaluation queries."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}")
    street = _where(annotated, f"split = '{split}' AND role = 'street'")
    labelled = street.filter(pc.is_valid(street.column("label")))
    if labelled.num_rows:
        return _where(street, "label = 'good'")
    return _where(street, "keep")


def gallery_images(annotated: pa.Table) -> pa.Table:
    return _where(annotated, "role = 'shop'")
