"""Recipes ``toy-pose``, ``toy-parts``, ``toy-light`` and ``toy-id``: the face methods' helper
networks, each a small CNN trained on world head renders.

=========  ==================================  ====================================  =========
model      role (real system)                  output                                bar
=========  ==================================  ====================================  =========
toy-pose   BlendNeRF's pose encoder            yaw, pitch (degrees)                  ≤ 3° mean
toy-parts  BiSeNet face parsing (FaceDNeRF)    part label per pixel                  mIoU ≥ .85
toy-light  DPR's lighting estimator            9 SH coefficients of a grey render    ≤ 15 %
toy-id     ArcFace (identity loss)             unit 128-d identity embedding         AUC ≥ .95
=========  ==================================  ====================================  =========

All four learn from one render cache: training heads (never the held-out seeds) at random
yaw, pitch and SH light (:class:`~dreamlift.world.head_datasets.HeadDataset`), each with its
glasses and hat redrawn, so that the identity model must look past accessories and the
parser sees them on every kind of head. The bars are measured on held-out heads.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from dreamlift.errors import DataError, ModelError
from dreamlift.world.assets import COLOURS
from dreamlift.world.head_datasets import HeadDataset, HeadDatasetConfig
from dreamlift.world.heads import head_cameras, head_params, with_overrides
from dreamlift.world.heads_geometry import PART_LABELS, render_head
from dreamlift.world.lighting import Lighting
from dreamlift.zoo.recipes.common import export_folder
from dreamlift.zoo.trainer import TrainerConfig

Task = Literal["pose", "parts", "light", "id"]
TASK_OF_MODEL: dict[str, Task] = {
    "toy-pose": "pose",
    "toy-parts": "parts",
    "toy-light": "light",
    "toy-id": "id",
}
POSE_SCALE = (45.0, 25.0)
"""Yaw and pitch are regressed divided by these (the dataset's half-ranges, roughly)."""


# ---------------------------------------------------------------------------- data
@dataclass(frozen=True)
class HeadCacheSpec:
    split: str = "train"
    items: int = 12_000
    resolution: int = 64
    seed: int = 0
    chunk: int = 1000

    def key(self) -> str:
        import hashlib

        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def accessory_overrides(rng: random.Random) -> dict[str, object]:
    """Glasses and hat redrawn (each present a third of the time, any palette colour)."""
    return {
        "glasses": rng.random() < 1 / 3,
        "glasses_colour": rng.choice(tuple(COLOURS)),
        "hat": rng.random() < 1 / 3,
        "hat_colour": rng.choice(tuple(COLOURS)),
    }


def render_item(dataset: HeadDataset, index: int) -> dict[str, Tensor]:
    head, yaw, pitch, sh = dataset.draw(index)
    rng = random.Random(dataset.config.seed * 999_983 + index)
    params = with_overrides(head_params(head), accessory_overrides(rng))
    cams = head_cameras(yaw, pitch, dataset.config.resolution)
    out = render_head(params, cams, Lighting(sh=sh), supersample=dataset.config.supersample)
    return {
        "image": (out["rgb"][0].permute(2, 0, 1) * 255).round().to(torch.uint8),
        "labels": out["labels"][0].to(torch.uint8),
        "pose": torch.tensor([yaw, pitch]),
        "sh": torch.tensor(sh, dtype=torch.float32),
        "head": torch.tensor(head),
    }


def build_head_cache(spec: HeadCacheSpec, root: Path, quiet: bool = False) -> dict[str, Tensor]:
    """Render (resuming by chunk) and load the cache under ``root/head-items/<hash>/``."""
    folder = Path(root) / "head-items" / spec.key()
    folder.mkdir(parents=True, exist_ok=True)
    dataset = HeadDataset(
        HeadDatasetConfig(split=spec.split, resolution=spec.resolution, seed=spec.seed),  # type: ignore[arg-type]
        spec.items,
    )
    parts = []
    for c, start in enumerate(range(0, spec.items, spec.chunk)):
        path = folder / f"chunk_{c:04d}.safetensors"
        if not path.exists():
            items = [
                render_item(dataset, i) for i in range(start, min(spec.items, start + spec.chunk))
            ]
            tensors = {k: torch.stack([it[k] for it in items]).contiguous() for k in items[0]}
            tmp = path.with_suffix(".tmp")
            save_file(tensors, str(tmp))
            tmp.replace(path)
            if not quiet:
                print(f"head items: {min(spec.items, start + spec.chunk)}/{spec.items}", flush=True)
        try:
            parts.append(load_file(str(path)))
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"head item cache {path} is unreadable ({exc})", "delete it") from None
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


# ---------------------------------------------------------------------------- networks
@dataclass(frozen=True)
class HeadNetConfig:
    task: Task = "pose"
    channels: tuple[int, ...] = (16, 32, 64, 128)
    embedding: int = 128
    resolution: int = 64

    @property
    def in_channels(self) -> int:
        return 1 if self.task == "light" else 3

    @property
    def outputs(self) -> int:
        return {"pose": 2, "light": 9, "id": self.embedding, "parts": len(PART_LABELS)}[self.task]


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1),
        nn.GroupNorm(8, c_out),
        nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, 1, 1),
        nn.GroupNorm(8, c_out),
        nn.SiLU(),
    )


class HeadNet(nn.Module):
    """A strided CNN encoder; pooled into an MLP head (pose, light, id) or decoded back to
    full resolution with skip connections (parts, a small U-Net)."""

    def __init__(self, cfg: HeadNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.stem = _block(cfg.in_channels, ch[0], 1)
        self.down = nn.ModuleList(_block(a, b, 2) for a, b in zip(ch, ch[1:], strict=False))
        if cfg.task == "parts":
            self.up = nn.ModuleList(_block(b + a, a, 1) for a, b in zip(ch, ch[1:], strict=False))
            self.out = nn.Conv2d(ch[0], cfg.outputs, 1)
        else:
            self.head = nn.Sequential(
                nn.Linear(ch[-1], 256), nn.SiLU(), nn.Linear(256, cfg.outputs)
            )

    def forward(self, images: Tensor) -> Tensor:
        """images (B, 3, H, W) in [0, 1] (toy-light: converted to grey here)."""
        x = images.mean(dim=1, keepdim=True) if self.cfg.task == "light" else images
        x = self.stem(x * 2 - 1)
        skips = [x]
        for block in self.down:
            x = block(x)
            skips.append(x)
        if self.cfg.task != "parts":
            y = self.head(x.mean(dim=(2, 3)))
            return F.normalize(y, dim=-1) if self.cfg.task == "id" else y
        for block, skip in zip(reversed(self.up), reversed(skips[:-1]), strict=False):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.out(x)

    # ------------------------------------------------------------ predictions in units
    def pose_degrees(self, images: Tensor) -> Tensor:
        return self(images) * images.new_tensor(POSE_SCALE)

    def save_pretrained(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(
            json.dumps({"_class_name": "HeadNet", **asdict(self.cfg)}, indent=2) + "\n"
        )
        save_file(
            {k: v.contiguous() for k, v in self.state_dict().items()},
            str(folder / "model.safetensors"),
        )

    @classmethod
    def from_pretrained(cls, folder: Path | str) -> HeadNet:
        folder = Path(folder)
        for name in ("config.json", "model.safetensors"):
            if not (folder / name).is_file():
                raise ModelError(f"head network folder {folder} is missing {name}")
        values = json.loads((folder / "config.json").read_text())
        values.pop("_class_name", None)
        values["channels"] = tuple(values["channels"])
        net = cls(HeadNetConfig(**values))
        try:
            net.load_state_dict(load_file(str(folder / "model.safetensors")))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{folder} does not hold a {values['task']} network ({exc})") from None
        return net.eval()


TASK_ROLES: dict[str, str] = {
    "pose": "pose estimator",
    "parts": "parser",
    "light": "light estimator",
    "id": "identity network",
}


def load_head_net(name: str | Path, task: Task | None = None) -> HeadNet:
    """A head network by zoo name or folder; with ``task``, a one-line ModelError when the
    folder holds a network of another task (``toy-id`` given where a parser is needed)."""
    from dreamlift.zoo.registry import model_folder

    net = HeadNet.from_pretrained(model_folder(name))
    if task is not None and net.cfg.task != task:
        raise ModelError(f"{name} is a {net.cfg.task} network, not a {TASK_ROLES[task]}")
    return net


# ---------------------------------------------------------------------------- metrics
def roc_auc(scores: Tensor, positive: Tensor) -> float:
    """Area under the ROC curve: the chance a random positive pair outscores a negative one
    (ties count half)."""
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        raise DataError("ROC AUC needs positive and negative pairs")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).float() + 0.5 * (diff == 0).float()).mean())


def part_miou(pred: Tensor, truth: Tensor) -> float:
    """Mean IoU over the part labels (background excluded) present in the truth."""
    ious = []
    for label in range(1, len(PART_LABELS)):
        t, p = truth == label, pred == label
        if t.sum() == 0:
            continue
        ious.append(float((t & p).sum() / (t | p).sum()))
    return sum(ious) / len(ious)


def identity_pairs(heads: Tensor, pairs: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """``pairs`` same-head and ``pairs`` different-head index pairs (a, b, same)."""
    g = torch.Generator().manual_seed(seed)
    by_head: dict[int, list[int]] = {}
    for i, h in enumerate(heads.tolist()):
        by_head.setdefault(h, []).append(i)
    multi = [v for v in by_head.values() if len(v) > 1]
    a, b = [], []
    for _ in range(pairs):
        group = multi[int(torch.randint(len(multi), (1,), generator=g))]
        i, j = torch.randperm(len(group), generator=g)[:2].tolist()
        a.append(group[i])
        b.append(group[j])
    while len(a) < 2 * pairs:
        i, j = torch.randint(len(heads), (2,), generator=g).tolist()
        if heads[i] != heads[j]:
            a.append(i)
            b.append(j)
    same = torch.zeros(2 * pairs, dtype=torch.bool)
    same[:pairs] = True
    return torch.tensor(a), torch.tensor(b), same


# ---------------------------------------------------------------------------- recipe
@dataclass(frozen=True)
class HeadNetRecipeConfig:
    net: HeadNetConfig = field(default_factory=HeadNetConfig)
    data: HeadCacheSpec = field(default_factory=HeadCacheSpec)
    held_out: HeadCacheSpec = field(
        default_factory=lambda: HeadCacheSpec(split="held_out", items=1000, seed=1)
    )
    batch: int = 32
    heads_per_batch: int = 8
    """toy-id: a batch is this many heads × (batch / heads) renders of each."""
    temperature: float = 0.1
    train: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            steps=2000,
            lr=2e-3,
            weight_decay=1e-4,
            warmup=100,
            ema_decay=0.995,
            checkpoint_every=250,
            log_every=25,
        )
    )

    @classmethod
    def for_task(cls, task: Task) -> HeadNetRecipeConfig:
        return cls(net=HeadNetConfig(task=task))

    @classmethod
    def tiny(cls, task: Task) -> HeadNetRecipeConfig:
        return cls(
            net=HeadNetConfig(task=task, channels=(8, 8), embedding=8, resolution=16),
            data=HeadCacheSpec(items=8, resolution=16, chunk=4),
            held_out=HeadCacheSpec(split="held_out", items=8, resolution=16, seed=1, chunk=8),
            batch=4,
            heads_per_batch=2,
            train=TrainerConfig.tiny(2),
        )


class HeadNetRecipe:
    stage = "net"

    def __init__(
        self,
        model: str,
        config: HeadNetRecipeConfig,
        folder: Path,
        data_root: Path,
        quiet: bool = False,
    ) -> None:
        self.model = model
        self.kind = f"zoo-head-{config.net.task}"
        self.config = config
        self.train = config.train
        self.folder = Path(folder)
        self.data_root = Path(data_root)
        self.quiet = quiet
        torch.manual_seed(config.train.seed)
        self.net = HeadNet(config.net)
        self.items: dict[str, Tensor] | None = None

    def prepare(self) -> None:
        self.items = build_head_cache(self.config.data, self.data_root, self.quiet)
        self.by_head: dict[int, Tensor] = {}
        for h in self.items["head"].unique().tolist():
            self.by_head[h] = (self.items["head"] == h).nonzero().squeeze(-1)
        self.head_ids = torch.tensor(sorted(self.by_head))

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def _indices(self, gen: torch.Generator) -> Tensor:
        cfg = self.config
        if cfg.net.task != "id":
            return torch.randint(len(self.items["head"]), (cfg.batch,), generator=gen)
        per = max(2, cfg.batch // cfg.heads_per_batch)
        heads = self.head_ids[
            torch.randperm(len(self.head_ids), generator=gen)[: cfg.heads_per_batch]
        ]
        picks = []
        for h in heads.tolist():
            pool = self.by_head[h]
            picks.append(pool[torch.randint(len(pool), (per,), generator=gen)])
        return torch.cat(picks)

    def loss(self, step: int, gen: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        if self.items is None:
            self.prepare()
        idx = self._indices(gen)
        images = self.items["image"][idx].float() / 255
        task = self.config.net.task
        out = self.net(images)
        if task == "pose":
            target = self.items["pose"][idx] / torch.tensor(POSE_SCALE)
            loss = F.smooth_l1_loss(out, target, beta=0.05)
            err = (out.detach() - target).abs() * torch.tensor(POSE_SCALE)
            return loss, {"deg": float(err.mean())}
        if task == "light":
            loss = F.mse_loss(out, self.items["sh"][idx])
            return loss, {}
        if task == "parts":
            loss = F.cross_entropy(out, self.items["labels"][idx].long())
            return loss, {}
        heads = self.items["head"][idx]
        sim = out @ out.T / self.config.temperature
        same = heads[:, None] == heads[None, :]
        eye = torch.eye(len(idx), dtype=torch.bool)
        sim = sim.masked_fill(eye, -1e9)
        log_prob = sim - sim.logsumexp(dim=1, keepdim=True)
        positives = same & ~eye
        loss = -(log_prob * positives).sum(1) / positives.sum(1).clamp(min=1)
        return loss.mean(), {}

    def export(self, modules: dict[str, nn.Module]) -> Path:
        return export_folder(self.folder, lambda tmp: modules["net"].save_pretrained(tmp))

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        net = HeadNet.from_pretrained(self.folder)
        items = build_head_cache(self.config.held_out, self.data_root, self.quiet)
        images = items["image"].float() / 255
        outs = torch.cat([net(images[i : i + 128]) for i in range(0, len(images), 128)])
        task = self.config.net.task
        if task == "pose":
            err = (outs * torch.tensor(POSE_SCALE) - items["pose"]).abs()
            return {
                "yaw_error_deg": float(err[:, 0].mean()),
                "pitch_error_deg": float(err[:, 1].mean()),
                "mean_error_deg": float(err.mean()),
            }
        if task == "light":
            rel = (outs - items["sh"]).norm(dim=1) / items["sh"].norm(dim=1)
            return {"relative_error": float(rel.mean())}
        if task == "parts":
            pred = outs.argmax(dim=1)
            return {"mean_iou": part_miou(pred, items["labels"].long())}
        a, b, same = identity_pairs(items["head"], min(2000, len(images)), seed=0)
        scores = (outs[a] * outs[b]).sum(-1)
        return {
            "verification_auc": roc_auc(scores, same),
            "same_similarity": float(scores[same].mean()),
            "different_similarity": float(scores[~same].mean()),
        }
