"""Where a generate iteration's time goes: the prior's modules timed by hooks, and the split
of the loop's step time into render, VAE, UNet, optimiser and densification."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from dreamlift.priors import DiffusionPrior
from dreamlift.utils.timing import SectionTimer

PRIOR_PARTS = ("unet", "vae_encode", "vae_backward", "vae_decode")
"""The prior's own work in the iteration split (the text encoder is cached after step 0)."""
SPLIT_PARTS = (
    "render_forward",
    "render_backward",
    *PRIOR_PARTS,
    "text_encoder",
    "optimizer",
    "densify",
)


def timing_prior(timer: SectionTimer, prior: DiffusionPrior) -> AbstractContextManager[None]:
    """A context timing every call of the prior's UNet, VAE encoder and decoder, and text
    encoder into ``timer`` (forward hooks, removed on exit)."""
    vae = prior.vae
    modules = {"unet": prior.unet_call, "text_encoder": prior.text_encoder}
    if hasattr(vae, "encoder") and hasattr(vae, "decoder"):
        modules.update(vae_encode=vae.encoder, vae_decode=vae.decoder)
    return timer.modules(modules)


def iteration_split(loop: dict[str, float], sections: dict[str, float]) -> dict[str, Any]:
    """Where an iteration's time went: seconds and fractions of the loop's step time per
    part (``other``: guidance bookkeeping, regularisers, logging), and the prior's share."""
    total = loop.get("step_s", 0.0)
    seconds = {k: sections.get(k, 0.0) for k in SPLIT_PARTS}
    seconds.update(optimizer=loop.get("optimizer_s", 0.0), densify=loop.get("densify_s", 0.0))
    seconds["other"] = max(total - sum(seconds.values()), 0.0)
    fractions = {k: v / total if total > 0 else 0.0 for k, v in seconds.items()}
    return {
        "seconds": seconds,
        "fractions": fractions,
        "prior_fraction": sum(fractions[k] for k in PRIOR_PARTS),
        "step_s": total,
    }
