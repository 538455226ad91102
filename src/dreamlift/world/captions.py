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
description and ``caption(parse(c))`` normalises any accepted caption. Head captions
('a person with red hair and glasses') have a grammar of their own: :func:`parse_head`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from dreamlift.errors import CaptionError
from dreamlift.world.assets import COLOURS, Description, ObjectSpec
from dreamlift.world.heads import HeadParams
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


# Heads ---------------------------------------------------------------------------------------
#
#     head     := "a person" [" with " features] [", " VIEW " view"]
#     features := feature | feature (", " feature)* " and " feature
#     feature  := [LENGTH] COLOUR " hair" | COLOUR " hair in a bun" | "no hair"
#               | [COLOUR] " glasses" | ("a" | "an") [COLOUR] (" hat" | " beard")
#     LENGTH   := "short" | "long"
#
# Head words are kept out of :func:`vocabulary`, whose words are the toy priors' tokens.

HEAD_WORDS = ("person", "no", "hair", "short", "long", "in", "bun", "glasses", "hat", "beard")


def head_vocabulary() -> dict[str, tuple[str, ...]]:
    """The words head captions add to the grammar, by role."""
    return {"head": HEAD_WORDS, "head structure": ("a", "an", "with", "and", "view")}


@dataclass(frozen=True)
class HeadDescription:
    """What a head caption says: head attributes (name, value) and the view word."""

    attributes: tuple[tuple[str, str], ...] = ()
    view: str | None = None


def _head_hint() -> str:
    return (
        f"colours: {', '.join(COLOURS)}; e.g. 'a person with long red hair and glasses', "
        "'a person with no hair, a blue hat and a beard, side view'"
    )


def is_head_caption(text: str) -> bool:
    """Whether a caption describes a head (starts with 'a person')."""
    return re.match(r"a person\b", " ".join(text.strip().lower().split())) is not None


def _head_feature(text: str, whole: str) -> tuple[tuple[str, str], ...]:
    colours = "|".join(COLOURS)
    if text == "no hair":
        return (("hair", "none"),)
    if m := re.fullmatch(rf"(?:(short|long) )?({colours}) hair", text):
        return ((("hair", m.group(1)),) if m.group(1) else ()) + (("hair_colour", m.group(2)),)
    if m := re.fullmatch(rf"({colours}) hair in an? bun", text):
        return ("hair", "bun"), ("hair_colour", m.group(1))
    if m := re.fullmatch(rf"(?:({colours}) )?glasses", text):
        return (("glasses", "yes"),) + ((("glasses_colour", m.group(1)),) if m.group(1) else ())
    if m := re.fullmatch(rf"an? (?:({colours}) )?(hat|beard)", text):
        part, colour = m.group(2), m.group(1)
        return ((part, "yes"),) + (((f"{part}_colour", colour),) if colour else ())
    raise CaptionError(f"cannot read {text!r} in {whole!r} as a head feature", _head_hint())


def parse_head(text: str) -> HeadDescription:
    """Parse a head caption into a :class:`HeadDescription`; raises :class:`CaptionError`."""
    whole = text
    text = " ".join(text.strip().lower().rstrip(".").split())
    known = {*COLOURS, *VIEWS, *(w for words in head_vocabulary().values() for w in words)}
    unknown = [w for w in re.findall(r"[a-z0-9']+|[^\sa-z0-9,]", text) if w not in known]
    if unknown:
        listed = ", ".join(dict.fromkeys(unknown))
        raise CaptionError(f"unknown word(s) in head caption: {listed}", _head_hint())
    view = None
    if m := re.fullmatch(r"(.*), (\w+) view", text):
        text, view = m.group(1), m.group(2)
        if view not in VIEWS:
            raise CaptionError(f"unknown view {view!r} in {whole!r}", _head_hint())
    if text == "a person":
        return HeadDescription((), view)
    m = re.fullmatch(r"a person with (.+)", text)
    if not m:
        raise CaptionError(f"cannot read {whole!r} as 'a person with ...'", _head_hint())
    attributes: dict[str, str] = {}
    for feature in re.split(r",? and |, ", m.group(1)):
        for name, value in _head_feature(feature, whole):
            if name in attributes and attributes[name] != value:
                raise CaptionError(f"{whole!r} says two things about {name}", _head_hint())
            attributes[name] = value
    return HeadDescription(tuple(attributes.items()), view)


def head_overrides(desc: HeadDescription, hair: str) -> dict[str, str]:
    """The attribute changes a head description asks of a head whose hair style is ``hair``:
    a hair colour without a style gives a bald head short hair."""
    attributes = dict(desc.attributes)
    if "hair_colour" in attributes and "hair" not in attributes and hair == "none":
        attributes["hair"] = "short"
    return attributes


def head_caption(params: HeadParams, view: str | None = None) -> str:
    """The canonical caption of a head's visible attributes (hair, glasses, hat, beard)."""
    return join_head_features(head_features(params), view)


def head_features(params: HeadParams, optional: Callable[[str], bool] | None = None) -> list[str]:
    """The caption phrases of a head's features, hair first ("short red hair", "glasses",
    "a blue hat"). ``optional(word)`` decides whether each word a phrase can go without (the
    hair's style, the glasses', hat's and beard's colour) is said; default: all are."""

    def say(word: str) -> str:
        return f"{word} " if optional is None or optional(word) else ""

    def article(phrase: str) -> str:
        return "an" if phrase[0] in "aeiou" else "a"

    if params.hair == "none":
        features = ["no hair"]
    elif params.hair == "bun":
        features = [f"{params.hair_colour} hair in a bun"]
    else:
        features = [f"{say(params.hair)}{params.hair_colour} hair"]
    if params.glasses:
        features.append(f"{say(params.glasses_colour)}glasses")
    for part in ("hat", "beard"):
        if getattr(params, part):
            phrase = f"{say(getattr(params, f'{part}_colour'))}{part}"
            features.append(f"{article(phrase)} {phrase}")
    return features


def join_head_features(features: list[str], view: str | None = None) -> str:
    """'a person with A, B and C' (plus ', V view'): the frame every head caption shares."""
    if not features:
        text = "a person"
    elif len(features) == 1:
        text = f"a person with {features[0]}"
    else:
        text = f"a person with {', '.join(features[:-1])} and {features[-1]}"
    return f"{text}, {view} view" if view else text
