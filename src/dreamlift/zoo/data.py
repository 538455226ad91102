"""Render caches: world datasets rendered once into safetensors shards, for fast training.

Rendering an item costs ~10 ms, a training step of a toy model ~0.3 s for 64 items, so
trainers read renders from a cache instead of the renderer. A cache is a folder of shards
(``shard_00000.safetensors`` …) plus ``spec.json``; it is built shard by shard, so an
interrupted build resumes where it stopped, and items are identical to
``WorldDataset(config)[i]`` (the same deterministic draw).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import Progress
from safetensors.torch import load_file, save_file
from torch import Tensor

from dreamlift.errors import DataError
from dreamlift.io.run import to_plain
from dreamlift.world.datasets import DatasetConfig, WorldDataset

SHARD = 1024


@dataclass(frozen=True)
class CacheSpec:
    dataset: DatasetConfig
    length: int

    def to_json(self) -> str:
        return json.dumps(to_plain(dataclasses.asdict(self)), sort_keys=True)


def _shard_path(folder: Path, index: int) -> Path:
    return folder / f"shard_{index:05d}.safetensors"


def build_cache(spec: CacheSpec, folder: Path, quiet: bool = False) -> Path:
    """Render ``spec`` into ``folder`` (resumes a partial build; refuses a different spec)."""
    folder.mkdir(parents=True, exist_ok=True)
    spec_file = folder / "spec.json"
    if spec_file.exists() and spec_file.read_text() != spec.to_json():
        raise DataError(
            f"{folder} holds a render cache of another spec", "delete it or pick another folder"
        )
    spec_file.write_text(spec.to_json())
    dataset = WorldDataset(spec.dataset, spec.length)
    n_shards = -(-spec.length // SHARD)
    with Progress(disable=quiet) as progress:
        task = progress.add_task("rendering cache", total=spec.length)
        for s in range(n_shards):
            lo, hi = s * SHARD, min((s + 1) * SHARD, spec.length)
            path = _shard_path(folder, s)
            if path.exists():
                progress.advance(task, hi - lo)
                continue
            items = []
            for i in range(lo, hi):
                items.append(dataset[i])
                progress.advance(task)
            tensors = {
                "image": (torch.stack([x["image"] for x in items]) * 255 + 0.5).to(torch.uint8),
                "mask": (torch.stack([x["mask"] for x in items]) * 255 + 0.5).to(torch.uint8),
                "depth": torch.stack([x["depth"] for x in items]).to(torch.float16),
                "c2w": torch.stack([x["c2w"] for x in items]),
                "intrinsics": torch.stack([x["intrinsics"] for x in items]),
                "azimuth": torch.stack([x["azimuth"] for x in items]),
                "elevation": torch.stack([x["elevation"] for x in items]),
            }
            captions = json.dumps([x["caption"] for x in items])
            tmp = path.with_name(path.name + ".tmp")
            save_file(tensors, str(tmp), metadata={"captions": captions})
            tmp.replace(path)
    return folder


@dataclass
class RenderCache:
    """A whole cache in memory: images uint8 (N,3,H,W) and friends, captions by index."""

    image: Tensor
    mask: Tensor
    depth: Tensor
    c2w: Tensor
    intrinsics: Tensor
    azimuth: Tensor
    elevation: Tensor
    captions: list[str]

    def __len__(self) -> int:
        return self.image.shape[0]

    def images(self, index: Tensor) -> Tensor:
        """Float images in [0, 1] for a batch of indices."""
        return self.image[index].float() / 255.0


def load_cache(folder: Path) -> RenderCache:
    from safetensors import safe_open

    spec_file = folder / "spec.json"
    if not spec_file.exists():
        raise DataError(f"no render cache in {folder}")
    length = json.loads(spec_file.read_text())["length"]
    parts: dict[str, list[Tensor]] = {}
    captions: list[str] = []
    for s in range(-(-length // SHARD)):
        path = _shard_path(folder, s)
        if not path.exists():
            raise DataError(
                f"render cache {folder} is incomplete (missing {path.name})", "build it again"
            )
        for k, v in load_file(str(path)).items():
            parts.setdefault(k, []).append(v)
        with safe_open(str(path), framework="pt") as f:
            captions += json.loads(f.metadata()["captions"])
    return RenderCache(**{k: torch.cat(v) for k, v in parts.items()}, captions=captions)
