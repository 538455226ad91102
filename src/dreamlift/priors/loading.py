"""Find and load a diffusers folder (SD 1.x / 2.x / 2-depth layout), offline and safetensors only.

Real weights and the zoo's toy weights go through this one path, so the tests that load tiny
random pipelines also test the loading of real ones. Every user-caused failure (missing or
malformed folder, unknown zoo name, pickle-only weights) becomes a one-line ``ModelError``
naming the path; anything else a loader raises (out of memory, a bug) stays a traceback
(:func:`model_load_errors`).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from dreamlift.devices import resolve_device
from dreamlift.errors import ModelError
from dreamlift.priors.camera import CAMERA_FOLDER, CameraEmbedding, has_camera

# Read by huggingface_hub when it is first imported: nothing here may reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REQUIRED = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
WEIGHTED = ("unet", "vae", "text_encoder")
TRUSTED_LIBRARIES = ("diffusers", "transformers")
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")


@dataclass
class PriorComponents:
    """The loaded parts of a latent text-to-image model, frozen, on one device and dtype."""

    folder: Path
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: Any
    scheduler_config: dict[str, Any]
    device: torch.device
    dtype: torch.dtype
    camera: CameraEmbedding | None = None
    """The camera embedding of a camera-conditioned folder (``camera/``), else ``None``."""


def resolve_model(name_or_path: str | Path) -> Path:
    """A folder for ``name_or_path``: an existing path as is, otherwise a zoo name.

    Zoo names go through ``dreamlift.zoo.registry.resolve``; without a registry the error
    names the ``dreamlift zoo train`` command that would create the model.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if isinstance(name_or_path, Path) or path.exists() or _looks_like_path(text):
        return path
    try:
        registry = importlib.import_module("dreamlift.zoo.registry")
    except ModuleNotFoundError as exc:
        if exc.name not in ("dreamlift.zoo.registry", "dreamlift.zoo"):
            raise
        raise ModelError(
            f"unknown model {text!r}: no such folder and no zoo registry to resolve it",
            hint=f"train it with `dreamlift zoo train {text}` or pass a diffusers folder",
        ) from None
    return Path(registry.resolve(text))


def _looks_like_path(text: str) -> bool:
    return any(sep in text for sep in ("/", "\\")) or text.startswith((".", "~"))


def read_model_index(folder: Path, without: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check the folder's layout and return its ``model_index.json``; the components in
    ``without`` (given otherwise, e.g. a UNet from another checkpoint) are not checked."""
    if not folder.is_dir():
        raise ModelError(f"model folder not found: {folder}")
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise ModelError(f"not a diffusers model folder (no model_index.json): {folder}")
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"unreadable model_index.json in {folder}: {exc}") from None
    required = [name for name in REQUIRED if name not in without]
    missing = [name for name in required if not _declared(index.get(name))]
    if missing:
        raise ModelError(f"model_index.json in {folder} lacks component(s): {', '.join(missing)}")
    for name in WEIGHTED:
        if name not in without:
            _weights_variant(folder / name)
    for name in required:
        check_json_objects(folder / name)
    return index


def check_json_objects(folder: Path) -> None:
    """Every ``*.json`` directly in ``folder`` (configs, vocabularies, weight indexes) is a
    readable JSON object, else a ModelError: a library handed another JSON value fails with a
    TypeError, which :func:`model_load_errors` rightly leaves a traceback."""
    for file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"unreadable {file}: {_first_line(exc)}") from None
        if not isinstance(data, dict):
            raise ModelError(f"malformed {file}: not a JSON object")


def _declared(entry: Any) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and all(isinstance(e, str) for e in entry)


def _weights_variant(sub: Path) -> str | None:
    """The weights variant to ask for (``None`` or ``"fp16"``); raises when none is usable."""
    if not sub.is_dir():
        raise ModelError(f"missing component folder: {sub}")
    names = [p.name for p in sub.iterdir() if p.is_file()]
    safetensors = [n for n in names if n.endswith((".safetensors", ".safetensors.index.json"))]
    if not safetensors:
        if any(n.endswith(PICKLE_SUFFIXES) for n in names):
            raise ModelError(
                f"only non-safetensors weights in {sub}",
                hint="convert them to .safetensors; pickle files are never loaded",
            )
        raise ModelError(f"missing weights (*.safetensors) in {sub}")
    plain = [n for n in safetensors if ".fp16." not in n]
    return None if plain else "fp16"


_DTYPES = {
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """Half precision on CUDA by default (as SD is run), float32 on CPU (fp16 is slow there)."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}", hint=f"use one of {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def _component_class(folder: Path, name: str, entry: list[str]) -> Any:
    library, class_name = entry
    if library not in TRUSTED_LIBRARIES and not library.startswith("dreamlift"):
        raise ModelError(f"{name} in {folder} names an untrusted library {library!r}")
    try:
        return getattr(importlib.import_module(library), class_name)
    except (ImportError, AttributeError):
        raise ModelError(
            f"{name} in {folder} names an unknown class {library}.{class_name}"
        ) from None


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-file progress bar; the CLI shows its own progress."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


def _hub_config_errors() -> tuple[type[Exception], ...]:
    """huggingface_hub's config validation error (a bad value in config.json, transformers 5),
    where that version has it; imported here, after the offline switch above."""
    from huggingface_hub import errors as hub_errors

    strict = getattr(hub_errors, "StrictDataclassError", None)
    return (strict,) if strict is not None else ()


def _weights_mismatch(exc: RuntimeError) -> bool:
    """transformers reports weights that do not fit config.json as a bare RuntimeError (torch's
    ``load_state_dict`` too); its subclasses (out of memory, CUDA errors) never mean that."""
    text = str(exc)
    return type(exc) is RuntimeError and ("mismatched_sizes" in text or "size mismatch" in text)


@contextmanager
def model_load_errors(what: str) -> Iterator[None]:
    """Turn what diffusers, transformers and safetensors raise for a malformed folder into a
    one-line ``ModelError("cannot load <what>: …")``; anything else propagates unchanged.

    Malformed means: a file missing or unreadable (OSError, which the libraries also raise
    for invalid JSON and truncated diffusers weights), a config they reject (ValueError, e.g.
    weights whose shapes do not fit it; huggingface_hub's StrictDataclassError), safetensors'
    SafetensorError (truncated or garbled weights), transformers' size-mismatch RuntimeError.
    """
    try:
        yield
    except (OSError, ValueError, SafetensorError, RuntimeError, *_hub_config_errors()) as exc:
        if isinstance(exc, RuntimeError) and not _weights_mismatch(exc):
            raise
        detail = (
            "its weights do not fit its config.json (size mismatch)"
            if isinstance(exc, RuntimeError)
            else _first_line(exc)
        )
        raise ModelError(f"cannot load {what}: {detail}") from exc


def load_components(
    folder: Path,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    unet: torch.nn.Module | None = None,
) -> PriorComponents:
    """Load and freeze the five parts of a diffusers text-to-image folder.

    Components are loaded one by one (not through a pipeline class) so that SD 1.x, 2.x,
    2-depth and the zoo's folders share the code, and the depth estimator or safety checker a
    folder may carry is never loaded. The scheduler's config is kept; the prior always does
    DDIM with it, whatever scheduler class the folder names. A given ``unet`` (MVDream's,
    from its own checkpoint) replaces the folder's, which then need not exist.
    """
    folder = Path(folder)
    index = read_model_index(folder, without=("unet",) if unet is not None else ())
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    loaded: dict[str, Any] = {}
    if unet is not None:
        loaded["unet"] = unet.requires_grad_(False).eval().to(dev, dt)
    for name in ("unet", "vae", "text_encoder"):
        if name in loaded:
            continue
        cls = _component_class(folder, name, index[name])
        kwargs: dict[str, Any] = {"local_files_only": True, "use_safetensors": True}
        variant = _weights_variant(folder / name)
        if variant:
            kwargs["variant"] = variant
        # Loading straight into the dtype (rather than casting after) keeps the modules a
        # library marks as fp32-only in fp32, and avoids its warning.
        library = index[name][0]
        if library == "diffusers":
            kwargs["torch_dtype"] = dt
        elif library == "transformers":
            kwargs["dtype"] = dt
        with _quiet_transformers(), model_load_errors(f"{name} from {folder / name}"):
            model = cls.from_pretrained(folder / name, **kwargs)
        model.requires_grad_(False).eval()
        loaded[name] = model.to(dev) if library in TRUSTED_LIBRARIES else model.to(dev, dt)
    tok_cls = _component_class(folder, "tokenizer", index["tokenizer"])
    with model_load_errors(f"tokenizer from {folder / 'tokenizer'}"):
        tokenizer = tok_cls.from_pretrained(folder / "tokenizer", local_files_only=True)
    config_file = folder / "scheduler" / "scheduler_config.json"
    try:
        scheduler_config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        raise ModelError(f"missing or unreadable scheduler config: {config_file}") from None
    camera = None
    if has_camera(folder):
        camera = CameraEmbedding.load(folder / CAMERA_FOLDER).to(dev, dt)
    return PriorComponents(
        camera=camera,
        folder=folder,
        unet=loaded["unet"],
        vae=loaded["vae"],
        text_encoder=loaded["text_encoder"],
        tokenizer=tokenizer,
        scheduler_config=scheduler_config,
        device=dev,
        dtype=dt,
    )
