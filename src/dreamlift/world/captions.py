"""The caption grammar: captions ↔ descriptions, with a round trip.

Grammar (case-insensitive, a trailing period is ignored)::

    caption  := scene [", " VIEW " view"]
    scene    := object
              | object " with " object " on top"      (bottom, then top)
              | object " on top of " object           (top, then bottom)
              | object " next to " object             (left, then right, seen from the front)
              | object ", " object " and " object     (three in a row, left to right)
    object   := ("a" | "an") COLOUR SHAPE

:func:`caption` prints the canonical form, so ``parse(caption(d)) == d`` for every
description and ``caption(parse(c))`` normalises any accepted caption.
"""

from __future__ import annotations

import re

from dreamlift.errors import CaptionError
from dreamlift.world.assets import COLOURS, Description, ObjectSpec
from dreamlift.world.shapes import SHAPES

VIEWS = ("front", "side", "back", "overhead")
STRUCTURE_WORDS = ("a", "an", "with", "on", "top", "of", "next", "to", "and", "view")


def vocabulary() -> dict[str, tuple[str, ...]]:
    """Every word a caption may use, by role (for error messages and tokenisers)."""
    return {
        "colours": tuple(COLOURS),
        "shapes": tuple(SHAPES),
        "views": VIEWS,
        "structure": STRUCTURE_WORDS,
    }


def _vocab_hint() -> str:
    v = vocabulary()
    return (
        f"colours: {', '.join(v['colours'])}; shapes: {', '.join(v['shapes'])}; "
        f"views: {', '.join(v['views'])}; e.g. 'a red cube with a blue sphere on top, side view'"
    )


def _check_words(text: str) -> None:
    known = {w for words in vocabulary().values() for w in words}
    unknown = [w for w in re.findall(r"[a-z0-9']+|[^\sa-z0-9,]", text) if w not in known]
    if unknown:
        listed = ", ".join(dict.fromkeys(unknown))
        raise CaptionError(f"unknown word(s) in caption: {listed}", _vocab_hint())


def _parse_object(text: str, whole: str) -> ObjectSpec:
    words = text.split()
    if len(words) != 3 or words[0] not in ("a", "an"):
        raise CaptionError(
            f"cannot read {text!r} in {whole!r} as an object like 'a red cube'", _vocab_hint()
        )
    _, colour, shape = words
    if colour not in COLOURS or shape not in SHAPES:
        raise CaptionError(f"{text!r} in {whole!r} must be 'a <colour> <shape>'", _vocab_hint())
    return ObjectSpec(colour, shape)


def parse(text: str) -> Description:
    """Parse a caption into a :class:`Description`; raises :class:`CaptionError`."""
    whole = text
    text = " ".join(text.strip().lower().rstrip(".").split())
    if not text:
        raise CaptionError("the caption is empty", _vocab_hint())
    _check_words(text)
    view = None
    m = re.fullmatch(r"(.*), (\w+) view", text)
    if m:
        text, view = m.group(1), m.group(2)
        if view not in VIEWS:
            raise CaptionError(f"unknown view {view!r} in {whole!r}", _vocab_hint())
    patterns: list[tuple[str, str, bool]] = [
        (r"(.+) with (.+) on top", "on_top", False),
        (r"(.+) on top of (.+)", "on_top", True),
        (r"(.+) next to (.+)", "next_to", False),
        (r"(.+), (.+) and (.+)", "next_to", False),
    ]
    for pattern, relation, reverse in patterns:
        m = re.fullmatch(pattern, text)
        if m:
            objects = tuple(_parse_object(g, whole) for g in m.groups())
            return Description(objects[::-1] if reverse else objects, relation, view)
    return Description((_parse_object(text, whole),), "single", view)


def _article(obj: ObjectSpec) -> str:
    return f"{'an' if obj.colour[0] in 'aeiou' else 'a'} {obj.colour} {obj.shape}"


def caption(desc: Description, view: str | None = None) -> str:
    """The canonical caption of a description (``view`` overrides the description's)."""
    objs = [_article(o) for o in desc.objects]
    if desc.relation == "single":
        text = objs[0]
    elif desc.relation == "on_top":
        text = f"{objs[0]} with {objs[1]} on top"
    elif len(objs) == 2:
        text = f"{objs[0]} next to {objs[1]}"
    else:
        text = f"{objs[0]}, {objs[1]} and {objs[2]}"
    view = view if view is not None else desc.view
    return f"{text}, {view} view" if view else text
