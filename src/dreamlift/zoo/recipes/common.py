"""Helpers every recipe shares: training renders, atomic folder export, ``zoo.json`` records."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from dreamlift.zoo.data import CacheSpec, RenderCache, build_cache, load_cache
from dreamlift.zoo.heldout import mentions_heldout

ZOO_JSON = "zoo.json"


def renders(spec: CacheSpec, root: Path, quiet: bool = False) -> RenderCache:
    """The render cache of ``spec`` under ``root/renders/<hash>`` (built on first use).

    Recipes with the same dataset share one cache (the VAE, toy-sd and toy-clip do).
    """
    key = hashlib.sha256(spec.to_json().encode()).hexdigest()[:12]
    folder = build_cache(spec, root / "renders" / key, quiet=quiet)
    return load_cache(folder)


def training_subset(cache: RenderCache) -> Tensor:
    """Indices of the cached items whose captions name no held-out pair or composition."""
    keep = [i for i, c in enumerate(cache.captions) if not mentions_heldout(c)]
    return torch.tensor(keep, dtype=torch.long)


def batch_indices(pool: Tensor, batch: int, gen: torch.Generator) -> Tensor:
    """``batch`` random entries of ``pool`` (with replacement; only ``gen`` decides)."""
    return pool[torch.randint(len(pool), (batch,), generator=gen)]


def images_to_model(images_uint8: Tensor) -> Tensor:
    """uint8 (B,3,H,W) → float in [-1, 1], SD's image range."""
    return images_uint8.float() / 127.5 - 1.0


def export_folder(dest: Path, write: Callable[[Path], None]) -> Path:
    """Write a folder with ``write(tmp)`` and swap it in for ``dest`` (keeping ``zoo.json``).

    A crash leaves either the old folder or the new one in place, plus at most a stray
    ``.tmp-*`` sibling, never a half-written model.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        old_json = dest / ZOO_JSON
        if old_json.exists() and not (tmp / ZOO_JSON).exists():
            shutil.copy2(old_json, tmp / ZOO_JSON)
        for file in tmp.rglob("*"):  # safetensors writes 0600; installed models must be readable
            if file.is_file():
                if file.suffix == ".json":
                    _drop_local_paths(file)
                file.chmod(0o644)
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        if dest.exists():
            dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _drop_local_paths(config: Path) -> None:
    """Remove ``_name_or_path``: diffusers records where a part was loaded from, which for a
    re-saved part is this machine's path — meaningless (and leaky) in a shipped model."""
    try:
        values = json.loads(config.read_text())
    except ValueError:
        return
    if isinstance(values, dict) and "_name_or_path" in values:
        del values["_name_or_path"]
        config.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")


def load_exported_unet(unet: torch.nn.Module, folder: Path, model: str) -> None:
    """Load the UNet a model's ``unet`` stage exported into ``folder/unet`` into ``unet``: where
    a later stage of that model starts. A one-line error says which stage to run first when
    there is none, or when its weights do not fit ``unet``."""
    from safetensors.torch import load_file

    from dreamlift.errors import ModelError

    unet_dir = folder / "unet"
    weights = unet_dir / "diffusion_pytorch_model.safetensors"
    how = f"train it first: dreamlift zoo train {model} --stage unet"
    if not weights.exists():
        raise ModelError(f"no exported {model} UNet in {unet_dir}", how)
    try:
        unet.load_state_dict(load_file(str(weights)))
    except RuntimeError:  # missing, unexpected or differently sized weights
        raise ModelError(
            f"the UNet in {unet_dir} has other sizes than this recipe's", how
        ) from None


def read_zoo_json(folder: Path) -> dict:
    path = Path(folder) / ZOO_JSON
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {}


def record_stage(folder: Path, name: str, stage: str, **fields: object) -> dict:
    """Merge ``fields`` into ``zoo.json``'s record of ``stage`` (and refresh the totals)."""
    data = read_zoo_json(folder)
    data["name"] = name
    stages = data.setdefault("stages", {})
    stages.setdefault(stage, {}).update(fields)
    stages[stage]["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
    data["training_steps"] = {k: v.get("steps") for k, v in stages.items()}
    data["figures"] = {
        f"{k}.{fig}": val for k, v in stages.items() for fig, val in v.get("figures", {}).items()
    }
    path = Path(folder) / ZOO_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(ZOO_JSON + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return data


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Hide diffusers' and transformers' per-file progress bars (they flood background logs)."""
    from diffusers.utils import logging as dl
    from transformers.utils import logging as tl

    was = tl.is_progress_bar_enabled(), dl.is_progress_bar_enabled()
    tl.disable_progress_bar()
    dl.disable_progress_bar()
    try:
        yield
    finally:
        if was[0]:
            tl.enable_progress_bar()
        if was[1]:
            dl.enable_progress_bar()


def parameter_count(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())
