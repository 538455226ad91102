"""CLIP-based scores: similarity, direction similarity, R-precision and zero-shot attributes.

:class:`ClipScorer` wraps a transformers ``CLIPModel`` and its tokenizer, loaded from a folder
or a zoo name (``toy-clip`` by default). A real CLIP folder works as well: the image
normalisation and input size are read from the folder (``preprocessor_config.json`` and the
vision config), so the same scores can be computed with either model.

Images are (B, H, W, 3) or (B, 3, H, W), float in [0, 1] or uint8. Embeddings are unit
vectors, so every similarity is a cosine in [-1, 1].
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamlift.errors import DataError, ModelError

DEFAULT_MEAN = (0.5, 0.5, 0.5)  # toy-clip's normalisation (see zoo.recipes.clip.pixel_values)
DEFAULT_STD = (0.5, 0.5, 0.5)
CHUNK = 256


def resolve_clip_folder(name_or_path: str | Path) -> Path:
    """An existing folder as is; otherwise a zoo name (ModelError naming the train command)."""
    from dreamlift.zoo.registry import model_folder

    folder = model_folder(name_or_path)
    if not folder.is_dir():
        raise ModelError(f"CLIP model folder not found: {folder}")
    return folder


def as_channels_first(images: Tensor) -> Tensor:
    """(B, H, W, 3) or (B, 3, H, W), uint8 or float → float (B, 3, H, W) in [0, 1]."""
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or 3 not in (images.shape[1], images.shape[-1]):
        raise DataError(f"images must be (B, H, W, 3) or (B, 3, H, W), got {tuple(images.shape)}")
    if images.shape[1] != 3:
        images = images.permute(0, 3, 1, 2)
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    return images.float()


def _features(out: object) -> Tensor:
    """transformers 5 may return a model output instead of a tensor from get_*_features."""
    return out if isinstance(out, Tensor) else out.pooler_output  # type: ignore[attr-defined]


def _normalisation(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    config = folder / "preprocessor_config.json"
    if not config.is_file():
        return DEFAULT_MEAN, DEFAULT_STD
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        raise ModelError(f"unreadable {config}") from None
    if not isinstance(data, dict):
        raise ModelError(f"malformed {config}: not a JSON object")
    return tuple(data.get("image_mean", DEFAULT_MEAN)), tuple(data.get("image_std", DEFAULT_STD))


class ClipScorer:
    """A frozen CLIP model with the scores 3D-generation papers report."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: object,
        mean: Sequence[float] = DEFAULT_MEAN,
        std: Sequence[float] = DEFAULT_STD,
        folder: Path | None = None,
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.folder = folder
        self.device = next(model.parameters()).device
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.image_size = int(model.config.vision_config.image_size)
        positions = int(model.config.text_config.max_position_embeddings)
        # Real CLIP tokenizers say 77; never let padding overflow the position embeddings.
        self.max_length = min(int(getattr(tokenizer, "model_max_length", positions)), positions)

    @classmethod
    def load(cls, name_or_path: str | Path = "toy-clip", device: str = "cpu") -> ClipScorer:
        """Load a CLIP folder (transformers layout, safetensors) or a zoo name, offline.

        A malformed folder is a one-line ModelError; anything else the loaders raise (out of
        memory, a bug) propagates (:func:`~dreamlift.priors.loading.model_load_errors`).
        """
        from transformers import CLIPModel, CLIPTokenizer

        from dreamlift.priors.loading import check_json_objects, model_load_errors
        from dreamlift.zoo.recipes.common import quiet_libraries

        folder = resolve_clip_folder(name_or_path)
        if not any(folder.glob("*.safetensors")):
            raise ModelError(f"no CLIP weights (*.safetensors) in {folder}")
        check_json_objects(folder)
        mean, std = _normalisation(folder)
        with quiet_libraries(), model_load_errors(f"CLIP from {folder}"):
            model = CLIPModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
            tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        return cls(model.to(device), tokenizer, mean, std, folder)

    # ------------------------------------------------------------------ embeddings
    def pixel_values(self, images: Tensor) -> Tensor:
        """Images → the model's input: resized to its image size and normalised.

        Non-square images are centre-cropped first, as CLIP's processor does.
        """
        x = as_channels_first(images).to(self.device)
        h, w = x.shape[-2:]
        if h != w:
            s = min(h, w)
            top, left = (h - s) // 2, (w - s) // 2
            x = x[..., top : top + s, left : left + s]
        if x.shape[-1] != self.image_size:
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bicubic", antialias=True
            ).clamp(0, 1)
        return (x - self.mean) / self.std

    def image_embeddings(self, images: Tensor) -> Tensor:
        """(B, D) unit image embeddings; differentiable in the images when grad is enabled."""
        pixels = self.pixel_values(images)
        out = [
            _features(self.model.get_image_features(pixel_values=pixels[i : i + CHUNK]))
            for i in range(0, len(pixels), CHUNK)
        ]
        return F.normalize(torch.cat(out).float(), dim=-1)

    def text_embeddings(self, texts: str | Sequence[str]) -> Tensor:
        """(B, D) unit text embeddings (padded to the tokenizer's length, as in training)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = self.tokenizer(
            texts,
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        with torch.no_grad():
            out = _features(self.model.get_text_features(input_ids=ids))
        return F.normalize(out.float(), dim=-1)

    # ------------------------------------------------------------------ scores
    def clip_similarity(self, images: Tensor, texts: str | Sequence[str]) -> Tensor:
        """(B,) cosine between each image and its text (one text is shared by all images)."""
        with torch.no_grad():
            img = self.image_embeddings(images)
            txt = self.text_embeddings(_per_image(texts, len(img)))
        return (img * txt).sum(-1)

    def clip_direction_similarity(
        self,
        src_images: Tensor,
        dst_images: Tensor,
        src_texts: str | Sequence[str],
        dst_texts: str | Sequence[str],
    ) -> Tensor:
        """(B,) cosine between the image-embedding change and the text-embedding change.

        The directional CLIP score of StyleGAN-NADA and InstructPix2Pix: did the edit move
        the image the way the caption change says, independently of where it started?
        """
        if src_images.shape[0] != dst_images.shape[0]:
            raise DataError(f"{src_images.shape[0]} source but {dst_images.shape[0]} edited images")
        b = src_images.shape[0]
        with torch.no_grad():
            d_img = self.image_embeddings(dst_images) - self.image_embeddings(src_images)
            d_txt = self.text_embeddings(_per_image(dst_texts, b)) - self.text_embeddings(
                _per_image(src_texts, b)
            )
        return F.cosine_similarity(d_img, d_txt, dim=-1, eps=1e-8)

    def r_precision(
        self,
        images: Tensor,
        true_texts: Sequence[str],
        distractor_texts: Sequence[str] | Sequence[Sequence[str]],
    ) -> float:
        """Fraction of images whose true caption scores strictly above every distractor.

        ``distractor_texts`` is one list shared by all images or one list per image; a
        distractor equal to the image's true caption is dropped. Ties count as misses, so a
        model that cannot tell captions apart scores 0, not 1.
        """
        true_texts = list(true_texts)
        if len(true_texts) != images.shape[0]:
            raise DataError(f"{images.shape[0]} images but {len(true_texts)} true captions")
        shared = all(isinstance(d, str) for d in distractor_texts)
        per_image = (
            [list(distractor_texts)] * len(true_texts)  # type: ignore[list-item]
            if shared
            else [list(d) for d in distractor_texts]
        )
        if len(per_image) != len(true_texts):
            raise DataError(f"{len(true_texts)} images but {len(per_image)} distractor lists")
        vocab = list(dict.fromkeys([*true_texts, *(t for d in per_image for t in d)]))
        where = {t: i for i, t in enumerate(vocab)}
        with torch.no_grad():
            sims = self.image_embeddings(images) @ self.text_embeddings(vocab).T
        hits = 0
        for row, truth, distractors in zip(sims, true_texts, per_image, strict=True):
            others = [where[d] for d in distractors if d != truth]
            if not others or row[where[truth]] > row[others].max():
                hits += 1
        return hits / max(len(true_texts), 1)

    def classify(self, images: Tensor, attribute: str) -> list[str]:
        """Zero-shot "shape", "colour" or "view" of each image (the world's single objects).

        Reuses :func:`dreamlift.zoo.recipes.clip.zero_shot`, which normalises with mean 0.5
        and std 0.5; images are mapped so that its normalisation yields this model's.
        """
        from dreamlift.zoo.recipes.clip import zero_shot

        x = self.pixel_values(images) * 0.5 + 0.5
        return zero_shot(self.model, _Tokenizer(self.tokenizer, self.max_length), x, attribute)


class _Tokenizer:
    """The scorer's tokenizer with ``model_max_length`` capped like :class:`ClipScorer`'s."""

    def __init__(self, tokenizer: object, max_length: int) -> None:
        self._tokenizer = tokenizer
        self.model_max_length = max_length

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self._tokenizer(*args, **kwargs)  # type: ignore[operator]


def _per_image(texts: str | Sequence[str], batch: int) -> list[str]:
    texts = [texts] * batch if isinstance(texts, str) else list(texts)
    if len(texts) == 1 and batch > 1:
        texts = texts * batch
    if len(texts) != batch:
        raise DataError(f"{batch} images but {len(texts)} texts")
    return texts
