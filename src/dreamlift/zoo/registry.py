"""The zoo's names → folders inside the package, with completeness checks and a listing.

Models live in ``src/dreamlift/zoo/models/<name>/`` (``$DREAMLIFT_ZOO_DIR/<name>`` when that
is set, e.g. to train into a scratch folder). Each folder holds the model in its library's
standard layout (safetensors) plus ``zoo.json``, written by the trainer: steps per stage and
quality figures. This module imports nothing heavy: the priors loader calls :func:`resolve`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from dreamlift.errors import ModelError

PACKAGE_MODELS = Path(__file__).parent / "models"
_SD_FILES = (
    "model_index.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/model.safetensors",
    "tokenizer/tokenizer_config.json",
    "scheduler/scheduler_config.json",
)


@dataclass(frozen=True)
class ZooEntry:
    """One model: what it is, which recipe stages train it (in order), which files make it whole."""

    name: str
    description: str
    stages: tuple[str, ...]
    required: tuple[str, ...]
    recipe: str  # module holding the recipe code


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry(
            "toy-sd",
            "latent text-to-image model of world renders (VAE 64×64→16×16×4, CLIP text, UNet)",
            ("vae", "decoder", "scene-decoder", "unet"),
            _SD_FILES,
            "dreamlift.zoo.recipes.sd",
        ),
        ZooEntry(
            "toy-sd-depth",
            "toy-sd with SD2-depth conditioning (5-channel UNet; shares toy-sd's VAE and text)",
            ("unet", "refine"),
            (*_SD_FILES, "depth_estimator/model.safetensors"),
            "dreamlift.zoo.recipes.sd",
        ),
        ZooEntry(
            "toy-sd-camera",
            "toy-sd told each view's camera (camera embedding on the text states; shares "
            "toy-sd's VAE and text)",
            ("unet",),
            (*_SD_FILES, "camera/model.safetensors"),
            "dreamlift.zoo.recipes.camera",
        ),
        ZooEntry(
            "toy-mvdream",
            "toy-sd as a multi-view prior (MVDream's design: 4 views denoised together, "
            "self-attention across them, camera MLP on the timestep embedding)",
            ("unet",),
            (*_SD_FILES, "multiview.json"),
            "dreamlift.zoo.recipes.mvdream",
        ),
        ZooEntry(
            "toy-sd-heads",
            'toy-sd trained on captioned world heads ("a person with …"): FaceDNeRF\'s '
            "diffusion prior (toy-sd's VAE encoder, a decoder fine-tuned on heads; its own "
            "head-word tokenizer, text and UNet)",
            ("unet", "decoder"),
            _SD_FILES,
            "dreamlift.zoo.recipes.head_prior",
        ),
        ZooEntry(
            "toy-clip",
            "contrastive image–text model of world renders (metrics, sample judging)",
            ("clip",),
            ("config.json", "model.safetensors", "tokenizer_config.json"),
            "dreamlift.zoo.recipes.clip",
        ),
        ZooEntry(
            "toy-eg3d",
            "tri-plane generator of world heads (EG3D's design: w/W+ → tri-planes → MLP → "
            "volume rendering), with the training heads' latents",
            ("generator", "anneal", "refine", "vary", "polish"),
            ("config.json", "model.safetensors", "latents.safetensors"),
            "dreamlift.zoo.recipes.eg3d",
        ),
        *(
            ZooEntry(
                name,
                description,
                ("net",),
                ("config.json", "model.safetensors"),
                "dreamlift.zoo.recipes.head_nets",
            )
            for name, description in (
                ("toy-pose", "head image → camera yaw and pitch (BlendNeRF's pose encoder)"),
                ("toy-parts", "head image → part label per pixel (BiSeNet's role)"),
                ("toy-light", "grey head image → its 9 SH light coefficients (DPR's role)"),
                ("toy-id", "head image → identity embedding (ArcFace's role)"),
            )
        ),
    )
}


def models_root() -> Path:
    env = os.environ.get("DREAMLIFT_ZOO_DIR")
    return Path(env).expanduser() if env else PACKAGE_MODELS


def entry(name: str) -> ZooEntry:
    if name not in ZOO:
        raise ModelError(f"unknown zoo model {name!r}", f"known: {', '.join(ZOO)}")
    return ZOO[name]


def model_dir(name: str) -> Path:
    """The folder of ``name`` (whether or not it is trained yet)."""
    return models_root() / entry(name).name


def missing_files(name: str) -> list[str]:
    folder = model_dir(name)
    return [f for f in entry(name).required if not (folder / f).is_file()]


def resolve(name: str) -> Path:
    """The folder of a trained zoo model; ModelError naming the train command otherwise."""
    if name not in ZOO:
        raise ModelError(
            f"unknown model {name!r}: no such folder and not a zoo name",
            f"zoo models: {', '.join(ZOO)}; or pass a diffusers folder",
        )
    missing = missing_files(name)
    if missing:
        state = "not trained" if not model_dir(name).exists() else f"incomplete ({missing[0]})"
        raise ModelError(
            f"zoo model {name!r} is {state} in {model_dir(name)}",
            f"train it with `dreamlift zoo train {name}`",
        )
    return model_dir(name)


def model_folder(name_or_path: str | Path) -> Path:
    """The folder a ``--prior`` / ``--generator`` / ``--judge`` value names: a path (a ``Path``,
    an existing one, or text with a separator or a leading ``.`` / ``~``) as it is, existing
    or not (its loader says what is missing), otherwise a zoo name (:func:`resolve`)."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    looks_like_path = any(sep in text for sep in ("/", "\\")) or text.startswith((".", "~"))
    if isinstance(name_or_path, Path) or path.exists() or looks_like_path:
        return path
    return resolve(text)


@dataclass(frozen=True)
class ZooRow:
    name: str
    description: str
    trained: bool
    parameters: int
    size_bytes: int
    training_steps: dict[str, int | None]
    figures: dict[str, float]


def _safetensors_parameters(path: Path) -> int:
    """Element count from a safetensors header, without loading the tensors."""
    with path.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    total = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        count = 1
        for d in info["shape"]:
            count *= d
        total += count
    return total


def list_models() -> list[ZooRow]:
    """One row per zoo entry: parameters, size on disk, training steps and quality figures."""
    rows = []
    for e in ZOO.values():
        folder = models_root() / e.name
        files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
        weights = [p for p in files if p.suffix == ".safetensors"]
        info: dict = {}
        if (folder / "zoo.json").is_file():
            try:
                info = json.loads((folder / "zoo.json").read_text())
            except ValueError:
                info = {}
        rows.append(
            ZooRow(
                name=e.name,
                description=e.description,
                trained=not missing_files(e.name),
                parameters=sum(_safetensors_parameters(p) for p in weights),
                size_bytes=sum(p.stat().st_size for p in files),
                training_steps=dict(info.get("training_steps", {})),
                figures=dict(info.get("figures", {})),
            )
        )
    return rows
