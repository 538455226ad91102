"""Recipe ``toy-sd-heads/unet``: the head-caption prior of FaceDNeRF's diffusion term.

FaceDNeRF (arXiv:2306.00783, §3.2) distils Stable Diffusion's score of "a person with …"
into the face. The world's toy-sd never sees a head (head words are kept out of its
grammar, :mod:`dreamlift.world.captions`), so this model is toy-sd's recipe on head renders:
the same VAE (frozen, copied), a tokenizer of the world's words plus the head words, its own
text encoder and UNet.

The data are training heads (never the held-out seeds) at EG3D's poses and random SH light,
each with its hair style and colour, glasses, hat and beard redrawn from the whole palette:
the seeds alone give only natural hair colours and few hats, and an edit such as "blue hair"
needs a prior that has seen it. Each render is seen with two captions: the whole
:func:`~dreamlift.world.captions.head_caption` of the drawn head and a partial one
(:func:`partial_caption`), because edit prompts name one feature, not the whole head.
Each item depends only on (spec, index), so the cache renders in resumable
chunks and the captions are recomputed without rendering.

Evaluation: samples of captions the training set never drew (a separate seed), judged by
``toy-parts`` (:mod:`dreamlift.metrics.head_attributes`): the share whose glasses, hat, beard
and hair colour are what the caption asked for.

Time: the cache (8,000 renders) ≈ 17 min at 1 thread, once; the UNet ≈ 0.33 s a step at 1
thread (the same sizes as toy-sd's).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from dreamlift.errors import DataError
from dreamlift.world.assets import COLOURS
from dreamlift.world.captions import (
    head_caption,
    head_features,
    head_vocabulary,
    join_head_features,
)
from dreamlift.world.head_datasets import HeadDataset, HeadDatasetConfig
from dreamlift.world.heads import HAIR_STYLES, HeadParams, head_cameras, head_params, with_overrides
from dreamlift.world.heads_geometry import render_head
from dreamlift.world.lighting import Lighting
from dreamlift.zoo.recipes.sd import SDConfig, SDRecipe
from dreamlift.zoo.tokenizer import caption_words
from dreamlift.zoo.trainer import TrainerConfig


@dataclass(frozen=True)
class HeadCaptionSpec:
    """The captioned head renders the prior learns from."""

    items: int = 8000
    resolution: int = 64
    seed: int = 1
    chunk: int = 500
    supersample: int = 2

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def attribute_overrides(rng: random.Random) -> dict[str, object]:
    """Hair style and colour, glasses, hat and beard, each drawn over the whole palette."""
    palette = tuple(COLOURS)
    return {
        "hair": rng.choice(HAIR_STYLES),
        "hair_colour": rng.choice(palette),
        "glasses": rng.random() < 0.35,
        "glasses_colour": rng.choice(palette),
        "hat": rng.random() < 0.3,
        "hat_colour": rng.choice(palette),
        "beard": rng.random() < 0.3,
        "beard_colour": rng.choice(palette),
    }


def item_head(spec: HeadCaptionSpec, index: int) -> tuple[HeadParams, float, float, tuple]:
    """(head, yaw, pitch, SH light) of item ``index``: a function of (spec, index) alone."""
    dataset = HeadDataset(HeadDatasetConfig(resolution=spec.resolution, seed=spec.seed), 1)
    head, yaw, pitch, sh = dataset.draw(index)
    rng = random.Random(spec.seed * 999_983 + index)
    return with_overrides(head_params(head), attribute_overrides(rng)), yaw, pitch, sh


def item_caption(spec: HeadCaptionSpec, index: int) -> str:
    return head_caption(item_head(spec, index)[0])


def partial_caption(params: HeadParams, rng: random.Random) -> str:
    """A caption naming some of the head's features, some without their colour or style
    ("a person with glasses", "a person with blue hair and a hat"): what users write, and
    what FaceDNeRF's prompts are. Each feature is kept with probability 1/2 (at least one),
    each colour or style word with probability 1/2."""

    features = head_features(params, optional=lambda word: rng.random() < 0.5)
    kept = [f for f in features if rng.random() < 0.5] or [rng.choice(features)]
    return join_head_features(kept)


def item_partial_caption(spec: HeadCaptionSpec, index: int) -> str:
    """Item ``index``'s partial caption (a function of (spec, index) alone)."""
    rng = random.Random(spec.seed * 7_927 + index)
    return partial_caption(item_head(spec, index)[0], rng)


def build_caption_cache(spec: HeadCaptionSpec, root: Path, quiet: bool = False) -> Tensor:
    """The spec's renders (N, 3, H, W) uint8, rendered by chunk under
    ``root/head-captions/<key>/`` (an interrupted build resumes at its first missing chunk)."""
    folder = Path(root) / "head-captions" / spec.key()
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for c, start in enumerate(range(0, spec.items, spec.chunk)):
        path = folder / f"chunk_{c:04d}.safetensors"
        if not path.exists():
            stop = min(spec.items, start + spec.chunk)
            chunk = []
            for i in range(start, stop):
                params, yaw, pitch, sh = item_head(spec, i)
                cams = head_cameras(yaw, pitch, spec.resolution)
                rgb = render_head(params, cams, Lighting(sh=sh), supersample=spec.supersample)
                chunk.append((rgb["rgb"][0].permute(2, 0, 1) * 255).round().to(torch.uint8))
            tmp = path.with_suffix(".tmp")
            save_file({"image": torch.stack(chunk).contiguous()}, str(tmp))
            tmp.replace(path)
            if not quiet:
                print(f"captioned heads: {stop}/{spec.items}", flush=True)
        try:
            images.append(load_file(str(path))["image"])
        except Exception as exc:  # noqa: BLE001 - any unreadable chunk is rebuilt by deleting it
            raise DataError(
                f"head caption cache {path} is unreadable ({exc})", "delete it"
            ) from None
    return torch.cat(images)


def head_prior_words() -> list[str]:
    """The world's caption words and the head words: the prior reads both grammars."""
    head = [w for group in head_vocabulary().values() for w in group]
    return list(dict.fromkeys([*caption_words(), *head]))


@dataclass(frozen=True)
class HeadPriorConfig(SDConfig):
    max_length: int = 24  # longest head caption: 17 words and commas, with BOS/EOS 19
    data: HeadCaptionSpec = field(default_factory=HeadCaptionSpec)
    eval_seed: int = 99
    eval_samples: int = 48
    train: TrainerConfig = TrainerConfig(steps=5000, lr=1e-3, warmup=200, checkpoint_every=250)

    @classmethod
    def tiny_heads(cls, steps: int = 2) -> HeadPriorConfig:
        tiny = SDConfig.tiny(steps=steps)
        return cls(
            unet_channels=tiny.unet_channels,
            unet_groups=tiny.unet_groups,
            attention_head_dim=tiny.attention_head_dim,
            text_width=tiny.text_width,
            text_heads=tiny.text_heads,
            batch=4,
            data=HeadCaptionSpec(items=8, resolution=64, chunk=4, supersample=1),
            eval_samples=2,
            eval_steps=2,
            train=tiny.train,
        )


class HeadPriorRecipe(SDRecipe):
    """Stage ``unet`` of toy-sd-heads; ``base`` is toy-sd's folder (the VAE)."""

    tokenizer_cache = "tokenizer-heads"

    def __init__(self, config: HeadPriorConfig, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(config, *args, **kwargs)
        self.config: HeadPriorConfig = config
        self.model = "toy-sd-heads"
        self.kind = "zoo/toy-sd-heads/unet"

    def vocabulary(self) -> list[str]:
        return head_prior_words()

    def prepare(self) -> None:
        """Render the cache, encode it once into latents, tokenise every caption."""
        spec = self.config.data
        images = build_caption_cache(spec, self.data_root, self.quiet)
        key = hashlib.sha256((spec.key() + self.vae_digest).encode()).hexdigest()[:12]
        path = self.data_root / f"head-latents-{key}.safetensors"
        if not path.exists():
            with torch.no_grad():
                latents = torch.cat(
                    [
                        self.vae.encode(images[i : i + 128].float() / 127.5 - 1).latent_dist.mean
                        for i in range(0, len(images), 128)
                    ]
                )
            save_file({"latents": latents.contiguous()}, str(path))
        latents = load_file(str(path))["latents"] * float(self.vae.config.scaling_factor)
        # Every render twice: with its whole caption and with a partial one.
        self.latents = torch.cat([latents, latents])
        captions = [item_caption(spec, i) for i in range(spec.items)]
        captions += [item_partial_caption(spec, i) for i in range(spec.items)]
        unique = sorted(set(captions))
        ids = self.tokenize(unique)
        where = {c: i for i, c in enumerate(unique)}
        self.tokens = ids[torch.tensor([where[c] for c in captions])]
        self.empty = self.tokenize([""])[0]
        self.pool = torch.arange(len(captions))

    def eval_heads(self) -> list[HeadParams]:
        return unseen_heads(self.config.eval_seed, self.config.eval_samples)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The share of samples whose parsed attributes match their caption (toy-parts)."""
        cfg = self.config
        return sample_agreement(
            self.folder, self.eval_heads(), cfg.eval_steps, cfg.eval_guidance, cfg.data.resolution
        )


def unseen_heads(seed: int, count: int) -> list[HeadParams]:
    """Heads the training set never drew: attributes from a separate seed."""
    spec = HeadCaptionSpec(items=count, seed=seed)
    return [item_head(spec, i)[0] for i in range(spec.items)]


def sample_agreement(
    folder: Path, heads: list[HeadParams], steps: int, guidance: float, resolution: int
) -> dict[str, float]:
    """Sample the prior in ``folder`` once per head's caption and read the samples with
    ``toy-parts``: the share whose glasses, hat, beard and hair colour are what the caption
    asked for (each, and all at once). Without toy-parts weights, nothing is measured."""
    from dreamlift.zoo.recipes.head_nets import HeadNet
    from dreamlift.zoo.recipes.sd import sample_text_to_image
    from dreamlift.zoo.registry import model_dir

    parts_dir = model_dir("toy-parts")
    if not (parts_dir / "model.safetensors").exists():
        return {}
    captions = [head_caption(h) for h in heads]
    images = sample_text_to_image(folder, captions, steps, guidance, resolution)
    return attribute_agreement(HeadNet.from_pretrained(parts_dir), heads, images)


def attribute_agreement(
    parts: nn.Module, heads: list[HeadParams], images: Tensor
) -> dict[str, float]:
    """The share of ``images`` whose attributes, read by the ``parts`` net (toy-parts), are
    the heads'."""
    from dreamlift.metrics.head_attributes import seen_attributes

    seen = seen_attributes(parts, images)
    checks = {
        "glasses": [s.glasses == h.glasses for s, h in zip(seen, heads, strict=True)],
        "hat": [s.hat == h.hat for s, h in zip(seen, heads, strict=True)],
        "beard": [s.beard == h.beard for s, h in zip(seen, heads, strict=True)],
        "hair_colour": [
            s.hair_colour == h.hair_colour
            for s, h in zip(seen, heads, strict=True)
            if h.hair != "none"
        ],
    }
    figures = {f"{k}_agreement": sum(v) / max(1, len(v)) for k, v in checks.items()}
    everything = [
        s.agrees(
            {
                "glasses": h.glasses,
                "hat": h.hat,
                "beard": h.beard,
                **({"hair_colour": h.hair_colour} if h.hair != "none" else {}),
            }
        )
        for s, h in zip(seen, heads, strict=True)
    ]
    figures["all_attributes_agreement"] = sum(everything) / len(everything)
    return {k: round(v, 4) for k, v in figures.items()}


__all__ = [
    "HeadCaptionSpec",
    "HeadPriorConfig",
    "HeadPriorRecipe",
    "attribute_agreement",
    "attribute_overrides",
    "build_caption_cache",
    "head_prior_words",
    "item_caption",
    "item_head",
    "item_partial_caption",
    "partial_caption",
    "sample_agreement",
    "unseen_heads",
]
