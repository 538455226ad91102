"""Priors and prompts: which zoo priors know only the world's captions, the prompt check,
and loading a prior with its prompt checked first."""

from __future__ import annotations

from pathlib import Path

import torch

from dreamlift.errors import CaptionError, DreamliftError
from dreamlift.priors import DiffusionPrior
from dreamlift.world import parse
from dreamlift.world.assets import Description
from dreamlift.zoo.tokenizer import uses_world_vocabulary

TOY_PRIORS = ("toy-sd", "toy-sd-depth", "toy-sd-camera", "toy-mvdream")
"""Zoo priors that know only the world's caption grammar."""


def check_prompt(prompt: str, prior: DiffusionPrior | None = None) -> Description | None:
    """The prompt's world description, or None when it is not a world caption.

    An empty prompt is a :class:`~dreamlift.errors.CaptionError`; so is any prompt of a toy
    prior (its tokenizer is the world's vocabulary) that does not follow the caption grammar,
    whose error lists the vocabulary, rather than words silently becoming unknown tokens.
    """
    if not prompt.strip():
        raise CaptionError("the prompt is empty", "give one, e.g. 'a red cube'")
    if prior is not None and uses_world_vocabulary(prior.tokenizer):
        return parse(prompt)
    try:
        return parse(prompt)
    except CaptionError:
        return None


def is_multiview_prior(prior: str | Path | DiffusionPrior) -> bool:
    """Whether ``prior`` (a zoo name, a folder or a loaded prior) denoises groups of views,
    read from its folder without loading it; a name that does not resolve is not (loading
    it reports why)."""
    if isinstance(prior, DiffusionPrior):
        return prior.num_views > 1
    from dreamlift.priors.loading import resolve_model
    from dreamlift.priors.multiview import is_multiview_folder

    try:
        return is_multiview_folder(resolve_model(prior))
    except DreamliftError:
        return False


def guidance_for_prior(prior: str | Path, given: str | None, default: str) -> str:
    """The guidance asked for, else MV-SDS for a multi-view prior (the only guidance that
    denoises its groups of views), else ``default``."""
    if given is not None:
        return given
    return "mvsds" if is_multiview_prior(prior) else default


def load_prior(
    prior: str | Path | DiffusionPrior,
    device: str | torch.device = "auto",
    prompt: str | None = None,
) -> DiffusionPrior:
    """The prior (a loaded one as it is). A toy prior's ``prompt`` is checked before it
    loads, so a bad caption is reported before a missing model."""
    if isinstance(prior, DiffusionPrior):
        return prior
    if prompt is not None:
        check_prompt(prompt)
        if str(prior) in TOY_PRIORS:
            parse(prompt)
    return DiffusionPrior.load(prior, device=device)
