"""``box=`` parsing: fractions of the photo, four finite numbers, inside it, with an area."""

from __future__ import annotations

import pytest

from street2shop.service.regions import BadRegion, check_box, parse_box


def test_a_box_is_four_fractions() -> None:
    assert parse_box("0.1, 0.2,0.75 ,1") == (0.1, 0.2, 0.75, 1.0)
    assert parse_box("0,0,1,1") == (0.0, 0.0, 1.0, 1.0)
    assert check_box((0.25, 0.5, 0.5, 0.75)) == (0.25, 0.5, 0.5, 0.75)


@pytest.mark.parametrize(
    "text, words",
    [
        ("0,0,1.0001,1", "outside the photo"),
        ("0,-1e-9,1,1", "outside the photo"),
        ("0.3,0.3,0.3,0.4", "no area"),
        ("0.3,0.5,0.4,0.4", "no area"),
        ("0,0,nan,1", "NaN or infinite"),
        ("-inf,0,1,1", "NaN or infinite"),
        ("0;0;1;1", "has 1 value(s)"),
        ("0,0,1,", "not four numbers"),
        ("0x1,0,1,1", "not four numbers"),
        ("0.1,0.1,0.105,0.9", "thinner than"),
    ],
)
def test_a_bad_box_says_what_is_wrong_and_what_is_valid(text, words) -> None:
    with pytest.raises(BadRegion) as caught:
        parse_box(text)
    message = str(caught.value)
    assert words in message and "\n" not in message
    assert "x0,y0,x1,y1" in message or "larger box" in message
