"""Recipe ``toy-mvdream/unet``: toy-sd made a multi-view prior (MVDream, arXiv 2308.16512).

toy-sd's UNet is fine-tuned into :mod:`dreamlift.priors.multiview`'s model: its
self-attention spans the 4 views of a group and a camera MLP (``class_embed_type=
"projection"`` over the 16-value normalised cam2world; its last layer starts at zero) adds to
the timestep embedding. toy-sd's VAE, tokenizer and text encoder are reused frozen, so the
prompt space is toy-sd's. Data: groups of 4 world renders of one asset 90° apart in azimuth
(random start azimuth, one elevation in 0–30° per group, the world's orbit radius and field
of view), encoded once into a latent cache, captioned without a view word (the camera says
where each view is, as in MVDream's guidance); the 4 views of a group share t (they are one
diffusion state, as the guidance denoises them) and each gets its own noise; 10 % of the
captions are dropped for classifier-free guidance.

Evaluation (held-out captions: the held-out colour–shape pairs first, then other single
objects, and the held-out "next to" composition): each caption is sampled once as a group
of 4 views (DDIM, CFG, elevation 15°, random start azimuth), and

* ``best_asset_iou`` — the 4 sample silhouettes against ONE world asset rendered at the
  same 4 cameras: the mean over views of the silhouette IoU, maximised over the candidate
  assets (every world shape for a single object, the caption's layout for a composition)
  and their yaw (an asset turned by δ is the cameras shifted by −δ); bar ≥ 0.7;
* ``baseline_best_asset_iou`` — the same for toy-sd-camera's 4 independent samples at the
  same cameras (when that model is trained);
* ``shape_agreement`` / ``colour_agreement`` — toy-clip's zero-shot shape and colour of each
  view of the single-object samples against the caption (when toy-clip is trained); bar
  ≥ 90 %.

Train (not run yet; CPU time of the fast size)::

    OMP_NUM_THREADS=1 dreamlift zoo train toy-mvdream --threads 1

Time: one step (8 groups = 32 views at 16² latents: text encoder, the 1.76 M-parameter UNet
forward and backward, AdamW) measured 0.29 s at 1 thread (mean of 5 timed steps after 2
warm-up steps, beside another training job, from toy-sd's shipped UNet), so the 3,000 fast
steps ≈ 15 min at 1 thread (≈ 17 min with EMA and checkpoints); rendering and encoding the
4,096 × 4-view cache ≈ 3 min once; evaluation ≈ 1–2 min (sampling, then 24 yaws × 6 shapes
of 4-view world renders per caption, for toy-mvdream and the toy-sd-camera baseline).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from dreamlift.cameras import DEFAULT_ORBIT, orbit_cameras
from dreamlift.errors import ModelError
from dreamlift.priors.multiview import (
    NUM_VIEWS,
    MultiViewSettings,
    add_camera_embedding,
    camera_codes,
    group_azimuths,
    install_multiview_attention,
)
from dreamlift.world.datasets import DatasetConfig, WorldDataset
from dreamlift.zoo.heldout import (
    HELDOUT_COMPOSITIONS,
    HELDOUT_PAIRS,
    mentions_heldout,
    training_dataset,
)
from dreamlift.zoo.recipes.common import batch_indices, export_folder
from dreamlift.zoo.recipes.sd import file_digest, training_alphas_cumprod
from dreamlift.zoo.tiny import sd_ddim_scheduler
from dreamlift.zoo.trainer import TrainerConfig

GROUP_KINDS = {"single": 0.6, "on_top": 0.2, "next_to": 0.2}
"""Objects centred on the origin, as generate's fields are (no ground scenes)."""


@dataclass(frozen=True)
class MVDreamConfig:
    """Data, sizes and evaluation settings of toy-mvdream."""

    groups: int = 4096
    """Training groups (assets), each rendered at 4 cameras 90° apart."""
    batch_groups: int = 8
    """Groups per step (8 × 4 = 32 views, toy-sd's batch)."""
    elevation: tuple[float, float] = (0.0, 30.0)
    caption_dropout: float = 0.1
    dataset: DatasetConfig = field(default_factory=lambda: training_dataset(kinds=GROUP_KINDS))
    eval_captions: int = 24
    eval_steps: int = 50
    eval_guidance: float = 6.0
    eval_elevation: float = 15.0
    eval_yaws: int = 24
    """Yaw offsets tried per candidate asset (every 360/n degrees)."""
    train: TrainerConfig = TrainerConfig(steps=3000, lr=2e-4, warmup=100, checkpoint_every=250)

    @classmethod
    def tiny(cls, steps: int = 2) -> MVDreamConfig:
        return cls(
            groups=8,
            batch_groups=2,
            dataset=training_dataset(kinds=GROUP_KINDS, resolution=16, supersample=1),
            eval_captions=2,
            eval_steps=2,
            eval_yaws=2,
            train=TrainerConfig.tiny(steps),
        )


class MVDreamRecipe:
    """toy-mvdream's one stage; ``base`` is toy-sd's folder (UNet, VAE, text encoder)."""

    stage = "unet"

    def __init__(
        self,
        config: MVDreamConfig,
        folder: Path,
        data_root: Path,
        base: Path,
        clip_folder: Path | None = None,
        camera_folder: Path | None = None,
        quiet: bool = False,
    ) -> None:
        self.config, self.train = config, config.train
        self.model, self.kind = "toy-mvdream", "zoo/toy-mvdream/unet"
        self.folder, self.data_root, self.base = Path(folder), Path(data_root), Path(base)
        self.clip_folder, self.camera_folder, self.quiet = clip_folder, camera_folder, quiet
        self._setup()
        self.latents: Tensor | None = None

    def _setup(self) -> None:
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        missing = [
            p for p in ("vae", "unet", "text_encoder", "tokenizer") if not (self.base / p).is_dir()
        ]
        if missing:
            raise ModelError(
                f"toy-sd's {', '.join(missing)} missing in {self.base}",
                "train toy-sd first: dreamlift zoo train toy-sd",
            )
        self.vae = AutoencoderKL.from_pretrained(self.base / "vae", local_files_only=True).eval()
        self.vae.requires_grad_(False)
        self.vae_digest = file_digest(self.base / "vae" / "diffusion_pytorch_model.safetensors")
        self.tokenizer = CLIPTokenizer.from_pretrained(self.base / "tokenizer")
        self.text_encoder = CLIPTextModel.from_pretrained(self.base / "text_encoder").eval()
        self.text_encoder.requires_grad_(False)
        base_unet = UNet2DConditionModel.from_pretrained(self.base / "unet", local_files_only=True)
        self.unet = install_multiview_attention(add_camera_embedding(base_unet), NUM_VIEWS)
        self.unet.train().requires_grad_(True)
        self.alphas_cumprod = training_alphas_cumprod()

    def modules(self) -> dict[str, nn.Module]:
        return {"unet": self.unet}

    def tokenize(self, captions: list[str]) -> Tensor:
        return self.tokenizer(
            captions,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids

    # ------------------------------------------------------------------ data
    def prepare(self) -> None:
        """Render and encode the group cache once (keyed by its settings and the VAE)."""
        cfg = self.config
        spec = json.dumps(
            {"groups": cfg.groups, "elevation": cfg.elevation, "dataset": repr(cfg.dataset)},
            sort_keys=True,
        )
        key = hashlib.sha256((spec + self.vae_digest).encode()).hexdigest()[:12]
        path = self.data_root / f"mv-groups-{key}.safetensors"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tensors, captions = self._render_groups()
            save_file(tensors, str(path), metadata={"captions": json.dumps(captions)})
        from safetensors import safe_open

        stored = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            captions = json.loads(f.metadata()["captions"])
        self.latents = stored["latents"] * float(self.vae.config.scaling_factor)
        self.cameras = stored["cameras"]
        self.pool = torch.tensor([i for i, c in enumerate(captions) if not mentions_heldout(c)])
        unique = sorted(set(captions))
        where = {c: i for i, c in enumerate(unique)}
        self.tokens = self.tokenize(unique)[torch.tensor([where[c] for c in captions])]
        self.empty = self.tokenize([""])[0]

    @torch.no_grad()
    def _render_groups(self) -> tuple[dict[str, Tensor], list[str]]:
        from rich.progress import track

        from dreamlift.world.assets import layout
        from dreamlift.world.captions import caption
        from dreamlift.world.render import RenderSettings, render

        cfg, data = self.config, self.config.dataset
        dataset = WorldDataset(data, cfg.groups)
        latents, cameras, captions = [], [], []
        for g in track(range(cfg.groups), description="rendering groups", disable=self.quiet):
            desc, _ = dataset.describe(g)
            gen = torch.Generator().manual_seed(data.seed * 1_000_003 + g)
            start = torch.rand(1, generator=gen) * 360.0 - 180.0
            lo, hi = (math.sin(math.radians(e)) for e in cfg.elevation)
            el = math.degrees(math.asin(lo + (hi - lo) * float(torch.rand((), generator=gen))))
            az, els = group_azimuths(start), torch.full((NUM_VIEWS,), el)
            cams = orbit_cameras(
                az, els, DEFAULT_ORBIT.radius, DEFAULT_ORBIT.fov_deg, data.resolution
            )
            rgb = render(layout(desc), cams, RenderSettings(supersample=data.supersample))["rgb"]
            images = rgb.permute(0, 3, 1, 2) * 2.0 - 1.0
            latents.append(self.vae.encode(images).latent_dist.mean)
            cameras.append(camera_codes(az, els))
            captions.append(caption(desc))
        tensors = {"latents": torch.stack(latents), "cameras": torch.stack(cameras)}
        return {k: v.contiguous() for k, v in tensors.items()}, captions

    # ------------------------------------------------------------------ training
    def loss(self, step: int, gen: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        assert self.latents is not None
        cfg, v = self.config, NUM_VIEWS
        idx = batch_indices(self.pool, cfg.batch_groups, gen)
        x0 = self.latents[idx].flatten(0, 1)
        ids = self.tokens[idx].clone()
        drop = torch.rand(len(idx), generator=gen) < cfg.caption_dropout
        ids[drop] = self.empty
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, len(self.alphas_cumprod), (len(idx),), generator=gen)
        t = t.repeat_interleave(v)
        ab = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        noisy = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        with torch.no_grad():
            states = self.text_encoder(ids)[0].repeat_interleave(v, dim=0)
        camera = self.cameras[idx].flatten(0, 1)
        eps = self.unet(noisy, t, encoder_hidden_states=states, class_labels=camera).sample
        return F.mse_loss(eps, noise), {"dropped": float(drop.float().mean())}

    # ------------------------------------------------------------------ export / evaluate
    def export(self, modules: dict[str, nn.Module]) -> Path:
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            unet=modules["unet"].eval(),
            scheduler=sd_ddim_scheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )

        def write(tmp: Path) -> None:
            pipe.save_pretrained(tmp, safe_serialization=True)
            MultiViewSettings().save(tmp)

        return export_folder(self.folder, write)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The module docstring's figures, on the exported folder."""
        from dreamlift.priors import DiffusionPrior

        cfg = self.config
        prior = DiffusionPrior.load(self.folder, device="cpu", dtype=torch.float32)
        captions = eval_captions(cfg.eval_captions)
        gen = torch.Generator().manual_seed(0)
        starts = torch.rand(len(captions), generator=gen) * 360.0 - 180.0
        azimuth = group_azimuths(starts)
        elevation = torch.full_like(azimuth, cfg.eval_elevation)
        text = prior.embed_text([c for c in captions for _ in range(NUM_VIEWS)])
        noise = prior.initial_latents(len(azimuth), gen)
        with prior.views(azimuth, elevation):
            latents = prior.sample(text, cfg.eval_steps, cfg.eval_guidance, latents=noise)
        samples = prior.decode(latents).clamp(0, 1)
        figures = {"best_asset_iou": best_asset_iou(samples, captions, azimuth, elevation, cfg)}
        baseline = self._baseline(captions, azimuth, elevation, noise)
        if baseline is not None:
            figures["baseline_best_asset_iou"] = best_asset_iou(
                baseline, captions, azimuth, elevation, cfg
            )
        figures.update(self._clip_agreement(samples, captions))
        return {k: round(v, 4) for k, v in figures.items()}

    def _baseline(self, captions, azimuth, elevation, noise) -> Tensor | None:  # noqa: ANN001
        """toy-sd-camera's 4 independent samples per caption at the same cameras."""
        from dreamlift.priors import DiffusionPrior, view_prompts

        folder = self.camera_folder
        if folder is None or not (folder / "camera" / "model.safetensors").is_file():
            return None
        prior = DiffusionPrior.load(folder, device="cpu", dtype=torch.float32)
        prompts = [
            p
            for i, c in enumerate(captions)
            for p in view_prompts(c, azimuth[4 * i : 4 * i + 4], elevation[4 * i : 4 * i + 4])
        ]
        text = prior.with_camera(prior.embed_text(prompts), azimuth, elevation)
        cfg = self.config
        latents = prior.sample(text, cfg.eval_steps, cfg.eval_guidance, latents=noise)
        return prior.decode(latents).clamp(0, 1)

    def _clip_agreement(self, samples: Tensor, captions: list[str]) -> dict[str, float]:
        from dreamlift.world.captions import parse
        from dreamlift.zoo.recipes.clip import load_clip, zero_shot

        if self.clip_folder is None or not (self.clip_folder / "model.safetensors").exists():
            return {}
        singles = [i for i, c in enumerate(captions) if len(parse(c).objects) == 1]
        if not singles:
            return {}
        model, tokenizer = load_clip(self.clip_folder)
        views = torch.cat([samples[4 * i : 4 * i + 4] for i in singles])
        truth = [parse(captions[i]).objects[0] for i in singles for _ in range(NUM_VIEWS)]
        shape = zero_shot(model, tokenizer, views, "shape")
        colour = zero_shot(model, tokenizer, views, "colour")
        ok_shape = [s == o.shape for s, o in zip(shape, truth, strict=True)]
        ok_colour = [c == o.colour for c, o in zip(colour, truth, strict=True)]
        return {
            "shape_agreement": sum(ok_shape) / len(ok_shape),
            "colour_agreement": sum(ok_colour) / len(ok_colour),
        }


def eval_captions(count: int) -> list[str]:
    """Held-out captions: the held-out pairs, then other single objects, then the held-out
    "next to" composition; view-free."""
    from dreamlift.world.assets import COLOURS, Description, ObjectSpec
    from dreamlift.world.captions import caption
    from dreamlift.world.shapes import SHAPES

    held = [caption(Description((ObjectSpec(c, s),))) for c, s in HELDOUT_PAIRS]
    gen = torch.Generator().manual_seed(1)
    others = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in HELDOUT_PAIRS]
    order = torch.randperm(len(others), generator=gen).tolist()
    rest = [caption(Description((ObjectSpec(*others[i]),))) for i in order]
    next_to = [c for c in HELDOUT_COMPOSITIONS if "next to" in c]
    chosen = (held + rest)[: max(count - len(next_to), 1)]
    return (chosen + next_to)[:count]


def silhouettes(images: Tensor) -> Tensor:
    """(B, 3, H, W) images on white → (B, H, W) masks of the pixels that are not background."""
    return ((1.0 - images).abs().amax(dim=1) > 0.1).float()


def best_asset_iou(
    samples: Tensor, captions: list[str], azimuth: Tensor, elevation: Tensor, cfg: MVDreamConfig
) -> float:
    """Mean over captions of max over candidate assets and yaws of the 4 views' mean IoU."""
    from dataclasses import replace

    from dreamlift.metrics.image import mask_iou
    from dreamlift.world.assets import layout
    from dreamlift.world.captions import parse
    from dreamlift.world.render import render
    from dreamlift.world.shapes import SHAPES

    size = samples.shape[-1]
    masks = silhouettes(samples)
    scores = []
    for i, text in enumerate(captions):
        desc = parse(text)
        candidates = [desc]
        if len(desc.objects) == 1:
            candidates = [
                replace(desc, objects=(replace(desc.objects[0], shape=s),)) for s in SHAPES
            ]
        az, el = azimuth[4 * i : 4 * i + 4], elevation[4 * i : 4 * i + 4]
        best = 0.0
        for candidate in candidates:
            asset = layout(candidate)
            for k in range(cfg.eval_yaws):
                yaw = 360.0 * k / cfg.eval_yaws
                cams = orbit_cameras(
                    az - yaw, el, DEFAULT_ORBIT.radius, DEFAULT_ORBIT.fov_deg, size
                )
                truth = (render(asset, cams)["alpha"][..., 0] > 0.5).float()
                best = max(best, float(mask_iou(masks[4 * i : 4 * i + 4], truth).mean()))
        scores.append(best)
    return sum(scores) / len(scores)
