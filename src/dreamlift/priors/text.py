"""Prompt embeddings for classifier-free guidance, and view-dependent prompts.

A :class:`TextEmbeddings` carries both CFG branches together so that every guidance loss
and sampler gets the unconditional branch right by construction (empty prompt, negative
prompt, or a null-text-inversion embedding swapped in per step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from dreamlift.cameras import view_word

SUFFIX_TEMPLATE = "{prompt}, {view} view"
"""The world's captions: "a red cube, front view"."""

PREFIX_TEMPLATE = "{view} view of {prompt}"
"""DreamFusion-style view prompts for real SD: "front view of a red cube"."""


@dataclass
class TextEmbeddings:
    """Encoder hidden states of the conditional and unconditional CFG branches, (B, L, D)."""

    cond: Tensor
    uncond: Tensor

    def __post_init__(self) -> None:
        if self.cond.ndim != 3 or self.uncond.shape[1:] != self.cond.shape[1:]:
            raise ValueError(
                f"cond {tuple(self.cond.shape)} and uncond {tuple(self.uncond.shape)} must be "
                "(B, L, D) with the same L and D"
            )

    def __len__(self) -> int:
        return max(self.cond.shape[0], self.uncond.shape[0])

    def with_uncond(self, uncond: Tensor) -> TextEmbeddings:
        """The same prompt with another unconditional branch (e.g. a null-text embedding)."""
        return TextEmbeddings(self.cond, uncond.to(self.cond.dtype))

    def with_camera(self, offset: Tensor) -> TextEmbeddings:
        """Both branches shifted by a camera offset (B or 1, 1, D) (see ``priors.camera``)."""
        full = self.expand(max(len(self), offset.shape[0]))
        offset = offset.to(full.cond)
        return TextEmbeddings(full.cond + offset, full.uncond + offset)

    def expand(self, batch: int) -> TextEmbeddings:
        """Broadcast a batch-1 side to ``batch`` rows; other sizes must already match."""

        def grow(x: Tensor) -> Tensor:
            if x.shape[0] == batch:
                return x
            if x.shape[0] == 1:
                return x.expand(batch, -1, -1)
            raise ValueError(f"text batch {x.shape[0]} does not match latent batch {batch}")

        return TextEmbeddings(grow(self.cond), grow(self.uncond))

    def __getitem__(self, index: int | slice | Tensor) -> TextEmbeddings:
        if isinstance(index, int):
            index = slice(index, index + 1)
        full = self.expand(len(self))
        return TextEmbeddings(full.cond[index], full.uncond[index])

    @staticmethod
    def cat(items: Sequence[TextEmbeddings]) -> TextEmbeddings:
        """Concatenate along the batch."""
        items = [e.expand(len(e)) for e in items]
        return TextEmbeddings(
            torch.cat([e.cond for e in items]), torch.cat([e.uncond for e in items])
        )


def view_prompts(
    prompt: str,
    azimuth_deg: float | Sequence[float] | Tensor,
    elevation_deg: float | Sequence[float] | Tensor = 0.0,
    template: str = SUFFIX_TEMPLATE,
) -> list[str]:
    """One view-dependent prompt per camera: ``template`` filled with the prompt and view word.

    The view word (front / side / back / overhead) follows :func:`dreamlift.cameras.view_word`
    (DreamFusion's azimuth bands). ``template`` uses ``{prompt}`` and ``{view}``.
    """
    az = torch.as_tensor(azimuth_deg, dtype=torch.float64).reshape(-1)
    el = torch.as_tensor(elevation_deg, dtype=torch.float64).reshape(-1).expand(az.shape[0])
    prompt = prompt.strip()
    views = [view_word(float(a), float(e)) for a, e in zip(az, el, strict=True)]
    return [template.format(prompt=prompt, view=view) for view in views]


def encode_prompts(tokenizer, text_encoder, prompts: Sequence[str]) -> Tensor:
    """CLIP last hidden states of ``prompts``, padded to the tokenizer's max length.

    Matches ``StableDiffusionPipeline.encode_prompt`` (no clip-skip, attention mask only when
    the encoder's config asks for it), so samples agree with the stock pipeline.
    """
    tokens = tokenizer(
        list(prompts),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    device = text_encoder.device
    mask = None
    if getattr(text_encoder.config, "use_attention_mask", False):
        mask = tokens.attention_mask.to(device)
    with torch.no_grad():
        return text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]
