"""Prompts of ``dreamlift generate``: world captions for toy priors, view templates.

A toy prior knows only the world's caption grammar, so its prompt (and negative prompt) must
be a caption of that grammar; a real prior takes any text, with DreamFusion-style view words.
"""

from __future__ import annotations

import dataclasses
import re

from dreamlift.errors import CaptionError
from dreamlift.methods.common.priors import check_prompt
from dreamlift.methods.generate.config import GenerateConfig
from dreamlift.priors import PREFIX_TEMPLATE, SUFFIX_TEMPLATE, DiffusionPrior
from dreamlift.world import caption, parse
from dreamlift.world.assets import Description
from dreamlift.zoo.tokenizer import uses_world_vocabulary


def world_description(prompt: str) -> Description | None:
    try:
        return parse(prompt)
    except CaptionError:
        return None


def resolve_prompt(cfg: GenerateConfig, prior: DiffusionPrior) -> tuple[str, str]:
    """(view-free prompt, view template). A toy prior needs a caption of the world's grammar
    (a CaptionError lists the vocabulary) and a negative prompt within its words."""
    desc = check_prompt(cfg.prompt, prior)
    toy = uses_world_vocabulary(prior.tokenizer)
    template = cfg.view_template or (SUFFIX_TEMPLATE if toy else PREFIX_TEMPLATE)
    if not toy:
        return cfg.prompt.strip(), template
    assert desc is not None  # a toy prior's prompt parsed, or check_prompt raised
    vocab = prior.tokenizer.get_vocab()
    negative = cfg.guidance_config().negative_prompt
    unknown = [w for w in re.findall(r"[a-z]+", negative.lower()) if f"{w}</w>" not in vocab]
    if unknown:
        raise CaptionError(
            f"the negative prompt has words the prior does not know: {', '.join(unknown)}",
            'pass --negative "" (or words of the caption grammar) for a toy prior',
        )
    return caption(dataclasses.replace(desc, view=None)), template
