"""Negative controls of the ground-truth scores: the world's true render of a *wrong* asset,
scored against a caption, must be judged wrong, and the caption's own asset right.

    .venv/bin/python benchmarks/negative_controls.py [--threads 1]

Prints the tables of docs/scores.md and writes benchmarks/results/negative_controls.json.
``tests/test_negative_controls.py`` asserts the same verdicts against the world's ground
truth. A verdict is ``right`` or ``wrong``; a score is only asked about what it measures
(the silhouette IoU is colour-blind, and the free rotation of the alignment can turn two
side-by-side objects round), which the ``expected`` column marks with ``—``.

Verdicts: silhouette IoU after alignment ≥ ``SILHOUETTE_IOU_RIGHT``; shape ranking: the
described shape wins (:func:`~dreamlift.metrics.ground_truth.shape_ranking`); colour: the
lit surface is named the described colour (:mod:`dreamlift.metrics.colour`); caption: every
object's shape and colour and the relation (:mod:`dreamlift.metrics.composition`); handles:
:func:`~dreamlift.methods.handles.scores.edit_verdicts`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dreamlift.cameras import Cameras
from dreamlift.metrics.colour import colour_ranking
from dreamlift.metrics.composition import score_caption
from dreamlift.metrics.ground_truth import (
    GroundTruthSettings,
    RenderFn,
    asset_renderer,
    ground_truth_scores,
    result_hull,
    shape_ranking,
)
from dreamlift.utils.process import configure_process
from dreamlift.world import asset_from_caption, layout, parse
from dreamlift.world.assets import Asset, Description, ObjectSpec, Part

SILHOUETTE_IOU_RIGHT = 0.9
"""Aligned silhouette IoU of a right shape. The world's shapes reach at most 0.88 against each
other (docs/scores.md), the true asset 1."""

RESULTS = Path(__file__).resolve().parent / "results" / "negative_controls.json"


@dataclass(frozen=True)
class Control:
    """An asset scored against ``caption``; ``asset`` None is an empty field. ``wrong`` names
    the scores whose question the control changes (they must say wrong); the others are
    reported, not judged."""

    caption: str
    name: str
    asset: Asset | None
    wrong: frozenset[str]


ALL = frozenset({"silhouette_iou", "shape", "colour", "caption"})
GEOMETRY = frozenset({"silhouette_iou", "shape", "caption"})


def _objects(caption: str, *objects: tuple[str, str]) -> Asset:
    desc = parse(caption)
    return layout(replace(desc, objects=tuple(ObjectSpec(c, s) for c, s in objects)))


def _one_missing(caption: str, keep: int) -> Asset:
    full = asset_from_caption(caption)
    return Asset((full.parts[keep],))


def grey_blob() -> Asset:
    return Asset((Part("sphere", "grey", (0.0, 0.0, 0.0), 1.2),))


def controls() -> list[Control]:
    single = "a red cube"
    next_to = "a pink pyramid next to a cyan torus"
    on_top = "an orange cone on top of a white cube"
    rows = [
        Control(single, "true asset", asset_from_caption(single), frozenset()),
        Control(single, "another shape (red cone)", _objects(single, ("red", "cone")), GEOMETRY),
        Control(
            single,
            "another colour (brown cube)",
            _objects(single, ("brown", "cube")),
            frozenset({"colour", "caption"}),
        ),
        Control(single, "empty field", None, ALL),
        Control(single, "grey blob", grey_blob(), ALL),
        Control(next_to, "true asset", asset_from_caption(next_to), frozenset()),
        Control(
            next_to,
            "two pink pyramids",
            _objects(next_to, ("pink", "pyramid"), ("pink", "pyramid")),
            GEOMETRY,
        ),
        Control(
            next_to,
            "swapped (torus left)",
            _objects(next_to, ("cyan", "torus"), ("pink", "pyramid")),
            frozenset({"caption"}),
        ),
        Control(next_to, "one missing (no torus)", _one_missing(next_to, 0), GEOMETRY),
        Control(
            next_to,
            "another colour (blue torus)",
            _objects(next_to, ("pink", "pyramid"), ("blue", "torus")),
            frozenset({"caption"}),
        ),
        Control(next_to, "empty field", None, GEOMETRY),
        Control(next_to, "grey blob", grey_blob(), GEOMETRY),
        Control(on_top, "true asset", asset_from_caption(on_top), frozenset()),
        Control(
            on_top,
            "cone on a grey cylinder",
            _objects(on_top, ("grey", "cylinder"), ("orange", "cone")),
            frozenset({"caption"}),
        ),
        Control(
            on_top,
            "swapped (cube on the cone)",
            _objects(on_top, ("orange", "cone"), ("white", "cube")),
            GEOMETRY,
        ),
        Control(on_top, "one missing (no cone)", _one_missing(on_top, 0), GEOMETRY),
        Control(
            on_top,
            "another shape (sphere on top)",
            _objects(on_top, ("white", "cube"), ("orange", "sphere")),
            frozenset({"caption"}),
        ),
        Control(on_top, "empty field", None, GEOMETRY),
        Control(on_top, "grey blob", grey_blob(), GEOMETRY),
    ]
    return rows


def empty_renderer(cameras: Cameras) -> dict[str, Tensor]:
    """An empty field: white, transparent, no depth."""
    b, h, w = len(cameras), cameras.height, cameras.width
    return {
        "rgb": torch.ones(b, h, w, 3),
        "opacity": torch.zeros(b, h, w, 1),
        "depth": torch.zeros(b, h, w, 1),
    }


def renderer(control: Control) -> RenderFn:
    return empty_renderer if control.asset is None else asset_renderer(control.asset)


def judge(control: Control, settings: GroundTruthSettings | None = None) -> dict[str, Any]:
    """Every applicable score of ``control`` with its verdict (True: right)."""
    settings = settings or GroundTruthSettings()
    desc: Description = parse(control.caption)
    fn = renderer(control)
    truth = asset_from_caption(control.caption)
    hull = result_hull(fn, settings)  # carved once for both scorers
    iou = float(ground_truth_scores(fn, truth, settings, hull=hull)["silhouette_iou"] or 0.0)
    out: dict[str, Any] = {"silhouette_iou": (iou, iou >= SILHOUETTE_IOU_RIGHT)}
    if len(desc.objects) == 1:
        ranking = shape_ranking(fn, desc, settings, hull=hull)
        seen = max(ranking["ious"].values()) > 0  # type: ignore[union-attr]
        out["shape"] = (ranking["winner"] if seen else "–", bool(ranking["described_wins"]))
        colour = colour_ranking(fn, desc, settings)
        out["colour"] = (
            colour["colour_named"] or colour["colour_verdict"],
            bool(colour["colour_correct"]),
        )
    caption = score_caption(fn, desc, settings)
    looks = " / ".join(str(o["looks_like"]) for o in caption["objects"])
    out["caption"] = (looks, bool(caption["caption_correct"]))
    return out


def handles_controls() -> list[tuple[str, Any, Any]]:
    """(name, result image, expected verdicts) for a world scene edit; see
    ``tests/test_negative_controls.py``."""
    from dreamlift.methods.handles.scene import scene_case
    from dreamlift.methods.handles.transform import Transform3D
    from dreamlift.world import RenderSettings, render

    case = scene_case("a red cube next to a blue sphere", 0, Transform3D(translate=(-0.5, 0, 0)))

    def rendered(asset: Asset) -> Tensor:
        return render(asset, case.cameras, RenderSettings(supersample=2))["rgb"][0]

    target = case.target_asset
    missing = replace(target, parts=target.parts[1:])
    recoloured = target.with_part(0, replace(target.parts[0], colour="green"))
    grey_background = torch.where(
        case.target_mask[..., None], case.target_image, torch.full_like(case.target_image, 0.5)
    )
    rows = [
        ("true edit", case.target_image, {"object_right": True, "background_right": True}),
        ("input, unedited", case.image, {"object_right": False}),
        ("object missing", rendered(missing), {"object_right": False}),
        ("object another colour (green)", rendered(recoloured), {"object_right": False}),
        (
            "empty image",
            torch.ones_like(case.image),
            {"object_right": False, "background_right": False},
        ),
        ("grey background", grey_background, {"background_right": False}),
    ]
    return [(name, (case, image), expected) for name, image, expected in rows]


def judge_edit(case: Any, image: Tensor) -> dict[str, Any]:
    from types import SimpleNamespace

    from dreamlift.methods.handles.scores import edit_verdicts, score_edit

    result = SimpleNamespace(image=image, reconstruction=None, mask=case.target_mask)
    scores = score_edit(result, case)  # type: ignore[arg-type]
    return {**scores, **edit_verdicts(scores)}


def _cell(value: Any, right: bool, expected_wrong: bool | None) -> str:
    shown = f"{value:.3f}" if isinstance(value, float) else str(value)
    verdict = "right" if right else "**wrong**"
    return f"{shown}: {verdict}" + (" (—)" if expected_wrong is None else "")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    configure_process()
    torch.set_num_threads(args.threads)
    rows = []
    print("| caption | control | silhouette IoU | shape ranking | colour | caption verdict |")
    print("|---|---|---|---|---|---|")
    for control in controls():
        t = time.perf_counter()
        scores = judge(control)
        seconds = time.perf_counter() - t
        cells = []
        for key in ("silhouette_iou", "shape", "colour", "caption"):
            if key not in scores:
                cells.append("n/a")
                continue
            value, right = scores[key]
            applies = key in control.wrong or not control.wrong
            cells.append(_cell(value, right, True if applies else None))
        print(f"| {control.caption} | {control.name} | " + " | ".join(cells) + " |")
        rows.append({"caption": control.caption, "control": control.name, "seconds": seconds,
                     **{k: list(v) for k, v in scores.items()}})  # fmt: skip
    print("\n| edit control | object IoU | object | background PSNR | background |")
    print("|---|---|---|---|---|")
    for name, (case, image), _ in handles_controls():
        s = judge_edit(case, image)
        print(
            f"| {name} | {s['object_iou']:.3f} | {'right' if s['object_right'] else '**wrong**'} "
            f"| {s['background_psnr']:.1f} | {'right' if s['background_right'] else '**wrong**'} |"
        )
        rows.append({"edit_control": name, **s})
    RESULTS.write_text(json.dumps({"rows": rows}, indent=1))
    return {"rows": rows}


if __name__ == "__main__":
    main()
