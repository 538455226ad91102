"""The cases of benchmarks/handles.py: seeded world scenes and edits whose truth the world
renders, redrawn until the edited object is in frame and mostly visible (module doc there)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from dreamlift.errors import DreamliftError
from dreamlift.methods.handles import SceneCase, Transform3D, scene_case
from dreamlift.world.assets import COLOURS
from dreamlift.world.shapes import SHAPES
from dreamlift.zoo.heldout import HELDOUT_COMPOSITIONS, HELDOUT_PAIRS

KINDS = ("translate", "rotate", "scale")
PALETTE = tuple(c for c in COLOURS if c not in ("white", "grey"))
MIN_COLOUR_DISTANCE = 0.5  # RGB distance between the two objects of a scene
MIN_OBJECT_FRACTION = 0.02  # of the image, for the input object
MIN_VISIBLE = 0.5  # of the expected area (input area × scale²), for the true edited object


@dataclass(frozen=True)
class CaseSpec:
    """One edit of the benchmark: a world caption, the object to move, the transform."""

    scene: str
    object_index: int
    kind: str
    label: str
    transform: Transform3D


def _object(rng: random.Random, colours: list[str]) -> tuple[str, str]:
    while True:
        colour, shape = rng.choice(colours), rng.choice(sorted(SHAPES))
        if (colour, shape) not in HELDOUT_PAIRS:
            return colour, shape


def _article(colour: str, shape: str) -> str:
    return f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {shape}"


def draw_scene(rng: random.Random) -> str:
    """A single object, or two side by side in clearly different colours."""
    first = _object(rng, list(PALETTE))
    if rng.random() < 0.5:
        return _article(*first)
    far = [c for c in PALETTE if math.dist(COLOURS[c], COLOURS[first[0]]) >= MIN_COLOUR_DISTANCE]
    while True:
        text = f"{_article(*first)} next to {_article(*_object(rng, far))}"
        if text not in HELDOUT_COMPOSITIONS:
            return text


def draw_transform(
    rng: random.Random, kind: str, object_index: int, pair: bool
) -> tuple[str, Transform3D]:
    """(label, transform) of ``kind`` in the scene's handle frame (y up, z to the camera)."""
    if kind == "translate":
        if rng.random() < 0.5:
            sign = (-1.0 if object_index == 0 else 1.0) if pair else rng.choice((-1.0, 1.0))
            x = sign * rng.choice((0.25, 0.3, 0.35))
            return f"translate x {x:+.2f}", Transform3D(translate=(x, 0.0, 0.0))
        z = rng.choice((0.3, -0.3, -0.45))
        return f"translate z {z:+.2f}", Transform3D(translate=(0.0, 0.0, z))
    if kind == "rotate":
        angle = rng.choice((-45.0, -30.0, 30.0, 45.0))
        return f"rotate y {angle:+.0f}", Transform3D(angle_deg=angle)
    scale = rng.choice((0.8, 1.25))
    return f"scale {scale:g}", Transform3D(scale=scale)


def usable(case: SceneCase, scale: float) -> bool:
    """The object is big enough, and its true edit is inside the frame and mostly visible."""
    h, w = case.mask.shape
    target = case.target_mask
    border = bool(target[0].any() or target[-1].any() or target[:, 0].any() or target[:, -1].any())
    expected = float(case.mask.sum()) * scale**2
    return (
        float(case.mask.sum()) >= MIN_OBJECT_FRACTION * h * w
        and not border
        and float(target.sum()) >= MIN_VISIBLE * expected
    )


def build_cases(n: int, resolution: int, seed: int = 0) -> list[tuple[CaseSpec, SceneCase]]:
    """``n`` cases cycling through the kinds; unusable draws are redrawn (deterministic)."""
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        for _ in range(100):
            scene = draw_scene(rng)
            pair = " next to " in scene
            index = rng.randrange(2) if pair else 0
            spec = CaseSpec(scene, index, kind, *draw_transform(rng, kind, index, pair))
            try:
                case = scene_case(scene, index, spec.transform, resolution)
            except DreamliftError:
                continue
            if usable(case, spec.transform.scale):
                cases.append((spec, case))
                break
        else:
            raise RuntimeError(f"no usable {kind} case in 100 draws")
    return cases
