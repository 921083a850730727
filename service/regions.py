"""Which part of a shopper's photo ``/search`` searches: the ``box=`` parameter, checked.

A box is ``x0,y0,x1,y1`` in fractions of the photo's width and height (0 = left/top edge,
1 = right/bottom), the form the answers' ``garments`` give their boxes in, so a client can
send a garment's box back, or a rectangle the shopper drew. Anything else is refused with one
line that says what was wrong and what would be valid (the API answers it as a 422).
"""

from __future__ import annotations

import math

from street2shop.models.localise import Box

#: A box's sides must be at least this fraction of the photo's (a sliver is not a garment;
#: below a pixel or two of the decoded photo the crop would be empty).
MIN_SIDE = 0.01

VALID = "x0,y0,x1,y1: four numbers in [0, 1], fractions of the photo's width and height, with x0 < x1 and y0 < y1"


class BadRegion(ValueError):
    """A ``box`` or ``garment`` a search cannot use; the message is the client's answer."""


def parse_box(text: str) -> Box:
    """``"x0,y0,x1,y1"`` -> a :data:`Box`, or :class:`BadRegion` naming what is wrong."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise BadRegion(f"box={text!r} has {len(parts)} value(s); want {VALID}")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise BadRegion(f"box={text!r} is not four numbers; want {VALID}") from None
    return check_box(values)  # type: ignore[arg-type]


def check_box(box: Box) -> Box:
    """``box`` if a search can use it: finite, inside the photo, of positive area."""
    if len(box) != 4:
        raise BadRegion(f"box {box} has {len(box)} value(s); want {VALID}")
    x0, y0, x1, y1 = box
    if not all(math.isfinite(v) for v in box):
        raise BadRegion(f"box {_show(box)} holds a NaN or infinite value; want {VALID}")
    if min(box) < 0 or max(box) > 1:
        raise BadRegion(f"box {_show(box)} reaches outside the photo; want {VALID}")
    if x1 <= x0 or y1 <= y0:
        raise BadRegion(f"box {_show(box)} has no area (x1 <= x0 or y1 <= y0); want {VALID}")
    if x1 - x0 < MIN_SIDE or y1 - y0 < MIN_SIDE:
        raise BadRegion(f"box {_show(box)} is thinner than {MIN_SIDE} of the photo; want a larger box")
    return (float(x0), float(y0), float(x1), float(y1))


def _show(box: Box) -> str:
    return ",".join(f"{v:g}" for v in box)


__all__ = ["MIN_SIDE", "BadRegion", "check_box", "parse_box"]
