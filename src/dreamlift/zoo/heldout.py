"""What the zoo's models never see in training, so that generalisation can be measured.

Every training dataset of the zoo goes through :func:`training_dataset`, which excludes the
held-out colour–shape pairs (as single objects) and the held-out compositions; the trainers
additionally drop any cached item whose caption mentions a held-out pair inside a
composition (:func:`mentions_heldout`), so no held-out pair appears in any training caption.
Evaluation sets use :func:`eval_dataset`: another seed, held-out pairs included.
"""

from __future__ import annotations

from dataclasses import replace

from dreamlift.world.captions import caption, parse
from dreamlift.world.datasets import DatasetConfig

# One pair per shape (and distinct colours), so each shape and colour is still seen in training
# with other partners: the pairs test recombination, not unseen words.
HELDOUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "cone"),
    ("blue", "torus"),
    ("green", "cube"),
    ("yellow", "cylinder"),
    ("purple", "sphere"),
    ("orange", "pyramid"),
)

# Canonical captions (without view). None uses a held-out pair, so they test composition alone.
HELDOUT_COMPOSITIONS: tuple[str, ...] = (
    "a red cube with a blue sphere on top",
    "a green cone next to a yellow torus",
    "a white cylinder, a black pyramid and a pink cube",
)

# Seeds of the evaluation sets: far from any training seed, so no render repeats.
EVAL_SEED = 900_001


def training_dataset(base: DatasetConfig | None = None, **overrides: object) -> DatasetConfig:
    """``base`` (default ``DatasetConfig()``) with the held-out pairs and compositions excluded."""
    cfg = replace(base or DatasetConfig(), **overrides)  # type: ignore[arg-type]
    return replace(
        cfg,
        exclude_pairs=tuple(dict.fromkeys((*cfg.exclude_pairs, *HELDOUT_PAIRS))),
        exclude_captions=tuple(dict.fromkeys((*cfg.exclude_captions, *HELDOUT_COMPOSITIONS))),
    )


def eval_dataset(base: DatasetConfig | None = None, **overrides: object) -> DatasetConfig:
    """An evaluation set: ``base`` with the evaluation seed and no exclusions, so held-out
    pairs and compositions are drawn (a training config may be passed as ``base``)."""
    return replace(  # type: ignore[arg-type]
        base or DatasetConfig(), seed=EVAL_SEED, exclude_pairs=(), exclude_captions=(), **overrides
    )


def mentions_heldout(text: str) -> bool:
    """Whether a caption names a held-out pair (anywhere) or is a held-out composition."""
    desc = parse(text)
    if any((o.colour, o.shape) in HELDOUT_PAIRS for o in desc.objects):
        return True
    return caption(replace(desc, view=None)) in HELDOUT_COMPOSITIONS
