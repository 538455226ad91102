"""Recipe ``toy-clip``: a contrastive image–text model of the world (transformers ``CLIPModel``).

Used by the metrics (CLIP similarity, direction similarity, R-precision) and to judge toy-sd's
samples. Vision: ViT on 64×64 with 8×8 patches; text: the caption grammar's word-level
tokenizer; both width 128, projected to 128. Symmetric InfoNCE with CLIP's learnable
temperature, on full captions with view words. A batch of 128 holds many identical captions
(there are only 216 single-object captions), so the targets are soft: an image's positives
are all items with its caption — plain one-hot InfoNCE would push identical captions apart.

Images are normalised with mean 0.5, std 0.5 (``CLIPImageProcessorPil`` saved alongside,
or :func:`pixel_values`). Zero-shot: :func:`zero_shot` scores every "a {colour} {shape},
{view} view" caption and marginalises over the other attributes.

Time: measured 0.80 s/step at batch 128 on 1 thread (CPU shared); 2 threads ≈ 0.5 s. The fast
1,500 steps ≈ 20 min at 1 thread, ≈ 13 min at 2 (the render cache is toy-sd's). After 40
steps colour was already 83 % zero-shot; whether 1,500 reach the view bar (80 %) is unmeasured
— the view can only be read from the shading of symmetric shapes; resume with more
``--steps`` if ``zoo.json`` says it falls short.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamlift.errors import ModelError
from dreamlift.world.assets import COLOURS, Description
from dreamlift.world.captions import parse
from dreamlift.world.datasets import DatasetConfig
from dreamlift.world.shapes import SHAPES
from dreamlift.zoo.data import CacheSpec, RenderCache
from dreamlift.zoo.heldout import HELDOUT_PAIRS, eval_dataset, training_dataset
from dreamlift.zoo.recipes.common import batch_indices, export_folder, renders, training_subset
from dreamlift.zoo.tiny import clip_text_config
from dreamlift.zoo.tokenizer import caption_words, reuse_or_build_tokenizer
from dreamlift.zoo.trainer import TrainerConfig

ZERO_SHOT_VIEWS = ("front", "side", "back")
ATTRIBUTES = ("shape", "colour", "view")


@dataclass(frozen=True)
class CLIPConfig:
    """Sizes and data of toy-clip. Bar: zero-shot on 500 held-out renders — shape ≥ 95 %,
    colour ≥ 95 %, view (front/side/back) ≥ 80 %."""

    image_size: int = 64
    patch: int = 8
    vision_width: int = 128
    vision_layers: int = 4
    text_width: int = 128
    text_layers: int = 2
    heads: int = 4
    projection: int = 128
    max_length: int = 20
    batch: int = 128
    renders: int = 16384
    eval_renders: int = 500
    dataset: DatasetConfig = field(default_factory=training_dataset)
    train: TrainerConfig = TrainerConfig(
        steps=1500, lr=5e-4, weight_decay=0.1, warmup=100, betas=(0.9, 0.98), checkpoint_every=100
    )

    @classmethod
    def tiny(cls, steps: int = 2) -> CLIPConfig:
        return cls(
            vision_width=16,
            vision_layers=1,
            text_width=16,
            text_layers=1,
            heads=2,
            projection=16,
            batch=8,
            renders=16,
            eval_renders=8,
            dataset=training_dataset(supersample=1),
            train=TrainerConfig.tiny(steps),
        )


def build_clip(cfg: CLIPConfig, vocab_size: int) -> nn.Module:
    from transformers import CLIPConfig as HFConfig
    from transformers import CLIPModel, CLIPVisionConfig

    text = clip_text_config(
        vocab_size, cfg.text_width, cfg.text_layers, cfg.heads, cfg.max_length, cfg.projection
    )
    vision = CLIPVisionConfig(
        hidden_size=cfg.vision_width,
        intermediate_size=4 * cfg.vision_width,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch,
        projection_dim=cfg.projection,
    )
    return CLIPModel(
        HFConfig(
            text_config=text.to_dict(),
            vision_config=vision.to_dict(),
            projection_dim=cfg.projection,
        )
    )


def pixel_values(images: Tensor) -> Tensor:
    """(B, 3, H, W) in [0, 1] → toy-clip's input (mean 0.5, std 0.5)."""
    return (images.float() - 0.5) / 0.5


def load_clip(folder: Path) -> tuple[nn.Module, object]:
    """toy-clip's model (eval mode) and tokenizer from its folder."""
    from transformers import CLIPModel, CLIPTokenizer

    folder = Path(folder)
    if not (folder / "model.safetensors").exists():
        raise ModelError(
            f"no toy-clip weights in {folder}", "train them: dreamlift zoo train toy-clip"
        )
    model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
    return model, CLIPTokenizer.from_pretrained(folder, local_files_only=True)


def _labels(attribute: str) -> tuple[str, ...]:
    return {"shape": tuple(SHAPES), "colour": tuple(COLOURS), "view": ZERO_SHOT_VIEWS}[attribute]


@torch.no_grad()
def zero_shot(model: nn.Module, tokenizer, images: Tensor, attribute: str) -> list[str]:
    """Predicted ``attribute`` ("shape", "colour" or "view") of each image in [0, 1].

    Scores all colour × shape × view captions of single objects and sums the softmax over
    the attributes not asked for, so the prediction uses the captions the model was
    trained on.
    """
    if attribute not in ATTRIBUTES:
        raise ValueError(f"attribute must be one of {ATTRIBUTES}, got {attribute!r}")
    colours, shapes = tuple(COLOURS), tuple(SHAPES)
    prompts = [
        f"{'an' if c[0] in 'aeiou' else 'a'} {c} {s}, {v} view"
        for c in colours
        for s in shapes
        for v in ZERO_SHOT_VIEWS
    ]
    ids = tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    text = F.normalize(_as_tensor(model.get_text_features(input_ids=ids)), dim=-1)
    probs = []
    for i in range(0, len(images), 256):
        img = _as_tensor(model.get_image_features(pixel_values=pixel_values(images[i : i + 256])))
        logits = model.logit_scale.exp() * F.normalize(img, dim=-1) @ text.T
        probs.append(logits.softmax(-1).view(-1, len(colours), len(shapes), len(ZERO_SHOT_VIEWS)))
    p = torch.cat(probs)
    axis = {"colour": (2, 3), "shape": (1, 3), "view": (1, 2)}[attribute]
    labels = _labels(attribute)
    return [labels[int(k)] for k in p.sum(dim=axis).argmax(-1)]


def _attribute(desc: Description, attribute: str) -> str | None:
    obj = desc.objects[0]
    return {"shape": obj.shape, "colour": obj.colour, "view": desc.view}[attribute]


def _as_tensor(out) -> Tensor:
    """transformers 5 may return a model output instead of a tensor from get_*_features."""
    return out if isinstance(out, Tensor) else out.pooler_output


class CLIPRecipe:
    """Stage ``clip`` of toy-clip: trains the model, exports ``models/toy-clip``."""

    model = "toy-clip"
    stage = "clip"
    kind = "zoo/toy-clip/clip"

    def __init__(self, config: CLIPConfig, folder: Path, data_root: Path, quiet: bool = False):
        self.config = config
        self.train = config.train
        self.folder = Path(folder)
        self.data_root = Path(data_root)
        self.quiet = quiet
        self.tokenizer = reuse_or_build_tokenizer(
            caption_words(), self.data_root / f"tokenizer-{config.max_length}", config.max_length
        )
        self.clip = build_clip(config, len(self.tokenizer))
        self.cache: RenderCache | None = None

    def prepare(self) -> None:
        cfg = self.config
        self.cache = renders(CacheSpec(cfg.dataset, cfg.renders), self.data_root, self.quiet)
        self.pool = training_subset(self.cache)
        unique = sorted(set(self.cache.captions))
        where = {c: i for i, c in enumerate(unique)}
        self.caption_id = torch.tensor([where[c] for c in self.cache.captions])
        self.unique_tokens = self.tokenizer(
            unique,
            padding="max_length",
            max_length=cfg.max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids

    def modules(self) -> dict[str, nn.Module]:
        return {"clip": self.clip}

    def loss(self, step: int, gen: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        assert self.cache is not None, "call prepare() first"
        idx = batch_indices(self.pool, self.config.batch, gen)
        cap = self.caption_id[idx]
        pixels = pixel_values(self.cache.images(idx))
        img = _as_tensor(self.clip.get_image_features(pixel_values=pixels))
        txt = _as_tensor(self.clip.get_text_features(input_ids=self.unique_tokens[cap]))
        scale = self.clip.logit_scale.clamp(max=4.6052).exp()  # CLIP caps it at 100
        logits = scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
        same = (cap[:, None] == cap[None, :]).float()
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        acc = (same.gather(1, logits.argmax(1, keepdim=True))).mean()
        return loss, {"temperature": float(1 / scale.detach()), "batch_acc": float(acc)}

    def export(self, modules: dict[str, nn.Module]) -> Path:
        from transformers import CLIPImageProcessorPil

        size = self.config.image_size
        processor = CLIPImageProcessorPil(
            size={"shortest_edge": size},
            crop_size={"height": size, "width": size},
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
        )

        def write(tmp: Path) -> None:
            modules["clip"].save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            processor.save_pretrained(tmp)

        return export_folder(self.folder, write)

    def evaluate(self) -> dict[str, float]:
        """Zero-shot accuracies on held-out single-object renders (held-out pairs included)."""
        model, tokenizer = load_clip(self.folder)
        spec = CacheSpec(
            eval_dataset(self.config.dataset, kinds={"single": 1.0}), self.config.eval_renders
        )
        held = renders(spec, self.data_root, self.quiet)
        truth = [parse(c) for c in held.captions]
        images = held.images(torch.arange(len(held)))
        figures: dict[str, float] = {}
        pair_held = torch.tensor(
            [(d.objects[0].colour, d.objects[0].shape) in HELDOUT_PAIRS for d in truth]
        )
        for attribute in ATTRIBUTES:
            found = zero_shot(model, tokenizer, images, attribute)
            want = [_attribute(d, attribute) for d in truth]
            ok = torch.tensor([f == w for f, w in zip(found, want, strict=True)]).float()
            figures[f"{attribute}_accuracy"] = round(float(ok.mean()), 4)
            if pair_held.any():
                held_ok = float(ok[pair_held].mean())
                figures[f"heldout_pair_{attribute}_accuracy"] = round(held_ok, 4)
        figures["eval_renders"] = float(len(held))
        return figures
