"""One step of several generate runs trained together (``generate --batch B``): each run
renders its own views, and the prior sees all of them in one guidance call.

The step of each run is :class:`~dreamlift.methods.generate.step.TextTo3D`'s; only the
guidance call is shared. The UNet, the VAE and the text encoder then run once on B runs'
views instead of B times on one run's, which is where a small prior's CPU time goes (a
toy UNet call costs 8.5 ms an asset alone and 4.0 ms in a batch of 4, docs/benchmarks.md).

What sharing changes, and what it does not:

- Every guidance averages its gradient over the views of its call (``grad / B``,
  :mod:`dreamlift.guidance.base`); the batch's guidance loss is multiplied by the number of
  runs in the call, so each run's views get the gradient a run of its own would give them.
- The guidance's random draws (SDS's t per view, ISM's one t, GE3D's nodes and noise) come
  from one generator of the batch, which :class:`~dreamlift.checkpointing.TwoPhaseCommit`
  checkpoints; cameras, backgrounds and flips stay each run's own. ISM's t and GE3D's
  trajectory nodes are one draw per call, so the runs of a batch share them step by step: a
  run trained in a batch is a different draw of the same schedule, not the same run
  (``benchmarks/batch.py`` measures the quality on the same captions).
- Perp-Neg and multi-view priors build a call's text from one view-free prompt, so they
  cannot mix captions; :func:`check_batchable` refuses them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dreamlift.errors import ConfigError
from dreamlift.guidance import GuidanceInput
from dreamlift.io.run import to_plain
from dreamlift.methods.generate.config import GenerateConfig
from dreamlift.methods.generate.step import StepParts, TextTo3D, two_stage_backward
from dreamlift.utils.timing import SectionTimer

BATCH_FIELDS_THAT_MAY_DIFFER = ("prompt",)
"""Settings in which the runs of one batch may differ (everything else drives a schedule
or the shared guidance call)."""


def check_batchable(configs: list[GenerateConfig]) -> None:
    """A :class:`ConfigError` unless ``configs`` can share guidance calls (read before any
    run folder is made; the prior's side is :func:`check_single_view`, once it is loaded)."""
    first = configs[0]
    guidance = first.guidance_config()
    perpneg = getattr(guidance, "perpneg", None)
    if perpneg is not None and perpneg.enabled:
        raise ConfigError(
            "--batch cannot use Perp-Neg: it builds a call's front, side and back prompts "
            "from one caption",
            "drop --batch, or set perpneg.enabled=false for the guidance",
        )
    shared = _shared_settings(first)
    for cfg in configs[1:]:
        own = _shared_settings(cfg)
        differ = sorted(k for k in shared if own.get(k) != shared[k])
        if differ:
            raise ConfigError(
                f"runs trained together must share every setting but the prompt; these "
                f"differ: {', '.join(differ)}"
            )


def check_single_view(num_views: int) -> None:
    """A :class:`ConfigError` for a multi-view prior (``num_views`` > 1)."""
    if num_views > 1:
        raise ConfigError(
            "--batch trains single-view runs together; a multi-view prior builds each call's "
            "text from one prompt",
            "drop --batch, or choose a single-view prior such as toy-sd-camera",
        )


def _shared_settings(cfg: GenerateConfig) -> dict:
    plain = to_plain(cfg)
    return {k: v for k, v in plain.items() if k not in BATCH_FIELDS_THAT_MAY_DIFFER}


class BatchTextTo3D:
    """``step(τ, active) -> (L, logs, renders)`` over the runs whose indices are ``active``:
    each run's :meth:`TextTo3D.views`, one guidance call on all their views, each run's
    field terms; L is their sum. All runs share ``timer`` (their TextTo3D's too) and the
    first run's guidance and guidance generator (all runs have the same config but the
    prompt; the caller makes every run hold that generator, so each checkpoints it)."""

    def __init__(self, runs: list[TextTo3D], timer: SectionTimer):
        self.runs, self.timer = runs, timer
        self.generator = runs[0].guidance_gen
        self.guidance = runs[0].guidance
        self.prior = runs[0].prior
        self._parts: StepParts | None = None

    def __call__(
        self, step: int, active: list[int]
    ) -> tuple[Tensor, list[dict[str, float]], list[dict[str, Tensor]]]:
        runs = [self.runs[k] for k in active]
        views = [run.views(step) for run in runs]
        images = [inp.images for inp, _ in views]
        assert all(x is not None for x in images)
        merged = GuidanceInput(
            images=torch.cat(images),  # type: ignore[arg-type]
            prompts=[p for inp, _ in views for p in (inp.prompts or [])],
            azimuths=torch.cat([inp.azimuths for inp, _ in views]),  # type: ignore[misc]
            elevations=torch.cat([inp.elevations for inp, _ in views]),  # type: ignore[misc]
            step=step,
            total_steps=runs[0].cfg.steps,
            generator=self.generator,
        )
        with self.timer.section("guidance"):
            losses = self.guidance(self.prior, merged)
        # The call averages over every run's views; each run's views get a run's own gradient.
        guidance_loss = runs[0].cfg.guidance_weight * len(runs) * sum(losses.values())
        loss = guidance_loss
        field_losses: list[Tensor | None] = []
        logs = []
        for run, (inp, out) in zip(runs, views, strict=True):
            terms = run.field_terms(inp.images, out)  # type: ignore[arg-type]
            field_loss = terms.total()
            field_losses.append(field_loss)
            if field_loss is not None:
                loss = loss + field_loss
            logs.append(run.logs(losses, self.guidance, terms, inp.images))  # type: ignore[arg-type]
        # The backward reaches each run's renders through the one concatenated tensor.
        self._parts = (loss, guidance_loss, images, field_losses)  # type: ignore[assignment]
        return loss, logs, [out for _, out in views]

    def backward(self, loss: Tensor) -> None:
        """``loss.backward()`` in the two timed stages of a run's own step."""
        parts, self._parts = self._parts, None
        two_stage_backward(self.timer, loss, parts)
