"""Zoo benchmark: the quality bars of the toy models, measured on held-out world renders.

    .venv/bin/python benchmarks/zoo.py [--only clip vae sd depth] [--n N] [--threads 2]

* clip  — toy-clip zero-shot shape / colour / view accuracy on 500 held-out single-object
  renders (bars 95 % / 95 % / 80 %), held-out colour–shape pairs also reported apart.
* vae   — toy-sd's autoencoder: reconstruction PSNR on 256 held-out renders (bar 30 dB)
  and the worst world colour's mean-colour shift over its single objects (bar ≤ 0.06).
* sd    — toy-sd samples (DDIM 50, CFG 7.5) for 200 captions, 25 % of them held out (the
  HELDOUT_PAIRS as single objects, the HELDOUT_COMPOSITIONS): shape and colour agreement by
  toy-clip for single objects (bar 85 % on seen pairs), R-precision against attribute-swapped
  captions for compositions, seen and held-out apart; FID and KID in toy-clip's embedding
  space against renders; a grid of samples in docs/images/toy-sd-samples.png.
* depth — toy-sd-depth conditioned on the disparity of held-out single-object renders: IoU of
  the sample's object mask with the depth's (bar 0.8). See :func:`foreground_mask`.

A model that is not trained yet prints "missing (train with dreamlift zoo train NAME)" and the
other parts go on. ``--n`` shrinks every part (a smoke run); ``--clip/--sd/--sd-depth`` take
folders instead of the zoo's models. Writes benchmarks/results/zoo.json.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from run_info import command_line, machine, write_verdict
from torch import Tensor

from dreamlift.errors import ModelError
from dreamlift.metrics.image import mask_iou, psnr
from dreamlift.utils.process import configure_process
from dreamlift.world.assets import COLOURS, Description, ObjectSpec
from dreamlift.world.captions import caption, parse
from dreamlift.world.datasets import WorldDataset
from dreamlift.world.shapes import SHAPES
from dreamlift.zoo.heldout import HELDOUT_COMPOSITIONS, HELDOUT_PAIRS, eval_dataset
from dreamlift.zoo.recipes.vae import colour_shift_by_colour, round_trip

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("clip", "vae", "sd", "depth")
DEFAULT_N = {"clip": 500, "vae": 256, "sd": 200, "depth": 100}
BARS = {
    "clip": {"shape_accuracy": 0.95, "colour_accuracy": 0.95, "view_accuracy": 0.80},
    "vae": {"psnr_db": 30.0, "handles_scenes_psnr_db": 30.0},
    "sd": {"seen_shape_agreement": 0.85, "seen_colour_agreement": 0.85},
    "depth": {"mask_iou": 0.80},
}
# Figures that must stay at or below their bar. A VAE that drifts one hue (purple came back
# lavender, +0.11 green, before the decoder fine-tune) moves every object distilled through
# it toward grey, while its PSNR and all-colour mean error look fine.
CEILINGS = {"vae": {"colour_shift_worst": 0.06}}
VIEWS = ("front", "side", "back")
# Foreground rule of the depth part: any channel this far from the background colour.
# The brightest face of a white object is 0.08 from the white background; the VAE's noise on
# flat background is far below that.
FOREGROUND_TOLERANCE = 0.06
SINGLE_AND_COMPOSITIONS = {"single": 0.6, "on_top": 0.2, "next_to": 0.2}


@dataclass(frozen=True)
class Models:
    """Which models to measure: zoo names, or folders for smoke runs."""

    clip: str = "toy-clip"
    sd: str = "toy-sd"
    depth: str = "toy-sd-depth"


class Missing(Exception):
    """A model the part needs is not trained; the row says so and the run goes on."""


def _require(load: Callable[[], object], name: str) -> object:
    try:
        return load()
    except ModelError as exc:
        raise Missing(f"missing (train with dreamlift zoo train {name}): {exc.message}") from None


# ---------------------------------------------------------------------- data
def renders(n: int, kinds: dict[str, float], size: int) -> dict[str, object]:
    """``n`` held-out renders (evaluation seed, held-out pairs included) at ``size``."""
    data = WorldDataset(eval_dataset(kinds=kinds, resolution=size), n)
    items = [data[i] for i in range(n)]
    return {
        "images": torch.stack([x["image"] for x in items]),
        "depth": torch.stack([x["depth"] for x in items]),
        "captions": [str(x["caption"]) for x in items],
        "masks": torch.stack([x["mask"] for x in items]),
    }


def sd_captions(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (caption, group) pairs; groups seen/heldout × single/composition.

    Held out: ceil(15 %) single objects of HELDOUT_PAIRS and ceil(10 %) HELDOUT_COMPOSITIONS
    (so ≥ 25 % in all), cycled over the views; the rest are seen pairs and random seen
    compositions (60 % / 15 % of the total).
    """
    rng = random.Random(seed)
    n_held_single, n_held_comp = math.ceil(0.15 * n), math.ceil(0.10 * n)
    n_seen_comp = min(round(0.15 * n), n - n_held_single - n_held_comp)
    n_seen_single = max(n - n_held_single - n_held_comp - n_seen_comp, 0)
    out: list[tuple[str, str]] = []
    for i in range(n_held_single):
        c, s = HELDOUT_PAIRS[i % len(HELDOUT_PAIRS)]
        view = VIEWS[(i // len(HELDOUT_PAIRS)) % 3]
        out.append((caption(Description((ObjectSpec(c, s),)), view), "heldout_single"))
    for i in range(n_held_comp):
        view = VIEWS[(i // len(HELDOUT_COMPOSITIONS)) % 3]
        out.append(
            (
                f"{HELDOUT_COMPOSITIONS[i % len(HELDOUT_COMPOSITIONS)]}, {view} view",
                "heldout_composition",
            )
        )
    seen = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in HELDOUT_PAIRS]
    rng.shuffle(seen)
    for i in range(n_seen_single):
        c, s = seen[i % len(seen)]
        out.append((caption(Description((ObjectSpec(c, s),)), rng.choice(VIEWS)), "seen_single"))
    while len(out) < n:
        objs = tuple(ObjectSpec(*rng.choice(seen)) for _ in range(2))
        desc = Description(objs, rng.choice(("on_top", "next_to")))
        if caption(desc) not in HELDOUT_COMPOSITIONS:
            out.append((caption(desc, rng.choice(VIEWS)), "seen_composition"))
    return out


def distractors(text: str, k: int = 5, seed: int = 0) -> list[str]:
    """``k`` captions that differ from ``text`` in one object's colour or shape."""
    rng = random.Random(f"{seed}:{text}")
    desc = parse(text)
    found: list[str] = []
    while len(found) < k:
        objs = list(desc.objects)
        j = rng.randrange(len(objs))
        if rng.random() < 0.5:
            objs[j] = ObjectSpec(
                rng.choice([c for c in COLOURS if c != objs[j].colour]), objs[j].shape
            )
        else:
            objs[j] = ObjectSpec(
                objs[j].colour, rng.choice([s for s in SHAPES if s != objs[j].shape])
            )
        other = caption(Description(tuple(objs), desc.relation, desc.view))
        if other != text and other not in found:
            found.append(other)
    return found


def foreground_mask(images: Tensor, tolerance: float = FOREGROUND_TOLERANCE) -> Tensor:
    """(B, 3, H, W) in [0, 1] → (B, H, W) bool: pixels of the object, not of the background.

    The background colour is the median of the one-pixel border (robust to an object that
    touches the border and to a model's off-white background); a pixel is foreground when
    any channel differs from it by more than ``tolerance``; a 3×3 majority vote then removes
    isolated specks and fills pinholes. Meant for single objects without ground, where the
    background is one colour.
    """
    border = torch.cat(
        [images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], dim=-1
    )
    background = border.median(dim=-1).values[..., None, None]
    raw = (images - background).abs().amax(dim=1) > tolerance
    vote = F.avg_pool2d(raw.float()[:, None], 3, stride=1, padding=1, count_include_pad=False)
    return vote[:, 0] > 0.5


# ---------------------------------------------------------------------- parts
def clip_part(models: Models, n: int, **_: object) -> dict:
    from dreamlift.metrics.clip import ClipScorer

    scorer = _require(lambda: ClipScorer.load(models.clip), "toy-clip")
    data = renders(n, {"single": 1.0}, 64)
    truth = [parse(c) for c in data["captions"]]  # type: ignore[union-attr]
    held = torch.tensor([(d.objects[0].colour, d.objects[0].shape) in HELDOUT_PAIRS for d in truth])
    row: dict = {"renders": n, "heldout_pair_renders": int(held.sum())}
    for attribute in ("shape", "colour", "view"):
        found = scorer.classify(data["images"], attribute)  # type: ignore[union-attr,arg-type]
        want = [
            {"shape": d.objects[0].shape, "colour": d.objects[0].colour, "view": d.view}[attribute]
            for d in truth
        ]
        ok = torch.tensor([f == w for f, w in zip(found, want, strict=True)]).float()
        row[f"{attribute}_accuracy"] = float(ok.mean())
        if held.any():
            row[f"heldout_pair_{attribute}_accuracy"] = float(ok[held].mean())
    return row


def vae_part(models: Models, n: int, **_: object) -> dict:
    from diffusers import AutoencoderKL

    from dreamlift.zoo.registry import model_dir

    def load() -> AutoencoderKL:
        path = Path(models.sd)
        folder = path if path.is_dir() else model_dir(models.sd)
        if not (folder / "vae" / "diffusion_pytorch_model.safetensors").is_file():
            raise ModelError(f"no VAE weights in {folder / 'vae'}")
        return AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True).eval()

    vae = _require(load, "toy-sd")
    size = int(vae.config.sample_size)  # type: ignore[union-attr]
    data = renders(n, {"single": 0.6, "on_top": 0.15, "next_to": 0.15, "scene": 0.1}, size)
    images = data["images"]
    recon = round_trip(vae, images)  # type: ignore[arg-type]
    per_image = psnr(recon, images)  # type: ignore[arg-type]
    shifts = colour_shift_by_colour(recon, images, data["masks"], data["captions"])  # type: ignore[arg-type]
    worst = max(shifts, key=shifts.__getitem__)
    scenes = renders(n, {"scene": 1.0}, size)["images"]
    scenes_psnr = psnr(round_trip(vae, scenes), scenes)  # type: ignore[arg-type]
    handles = handles_scenes(size)
    handles_psnr = psnr(round_trip(vae, handles), handles)  # type: ignore[arg-type]
    return {
        "renders": n,
        "psnr_db": float(per_image.mean()),
        "psnr_db_min": float(per_image.min()),
        "colour_shift_worst": shifts[worst],
        "colour_shift_worst_colour": worst,
        "colour_shift": shifts,
        # What ``handles`` edits: held-out ground scenes, and the handles benchmark's own
        # 40 inputs and 40 true targets.
        "scenes_psnr_db": float(scenes_psnr.mean()),
        "handles_scenes_psnr_db": float(handles_psnr.mean()),
        "handles_scenes_psnr_db_min": float(handles_psnr.min()),
    }


def handles_scenes(size: int, n: int = 40) -> Tensor:
    """(2n, 3, size, size) the inputs and true targets of benchmarks/handles.py's cases."""
    from handles_cases import build_cases

    cases = build_cases(n, size)
    images = [c.image for _, c in cases] + [c.target_image for _, c in cases]
    return torch.stack(images).permute(0, 3, 1, 2)


def _sample(
    prior, prompts: list[str], steps: int, cfg: float, depth: Tensor | None = None
) -> Tensor:
    gen = torch.Generator().manual_seed(0)
    noise = prior.initial_latents(len(prompts), gen)
    out = []
    for i in range(0, len(prompts), 16):
        text = prior.embed_text(prompts[i : i + 16])
        d = None if depth is None else depth[i : i + 16]
        z = prior.sample(text, steps, cfg, latents=noise[i : i + 16], depth=d)
        with torch.no_grad():
            out.append(prior.decode(z).cpu())
        if sys.stdout.isatty():
            print(f"  sampled {min(i + 16, len(prompts))}/{len(prompts)}", end="\r", flush=True)
    return torch.cat(out)


def _save_grid(images: Tensor, groups: list[str], path: Path) -> Path:
    """Up to 8 samples of each group, one row per group."""
    from dreamlift.io.media import image_grid, save_image

    rows = []
    for group in ("seen_single", "heldout_single", "seen_composition", "heldout_composition"):
        idx = [i for i, g in enumerate(groups) if g == group][:8]
        if idx:
            row = images[idx].permute(0, 2, 3, 1)
            pad = row.new_ones(8 - len(idx), *row.shape[1:])
            rows.append(torch.cat([row, pad]))
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_image(path, image_grid(torch.cat(rows), columns=8))


def sd_part(models: Models, n: int, steps: int, cfg: float, grid: Path, **_: object) -> dict:
    from dreamlift.metrics.clip import ClipScorer
    from dreamlift.metrics.fid import fid_kid
    from dreamlift.priors import DiffusionPrior

    prior = _require(lambda: DiffusionPrior.load(models.sd), "toy-sd")
    pairs = sd_captions(n)
    prompts, groups = [p for p, _ in pairs], [g for _, g in pairs]
    t0 = time.perf_counter()
    images = _sample(prior, prompts, steps, cfg)
    row: dict = {
        "samples": n,
        "heldout_fraction": sum(g.startswith("heldout") for g in groups) / n,
        "steps": steps,
        "cfg": cfg,
        "seconds_per_sample": (time.perf_counter() - t0) / n,
        "grid": str(_save_grid(images, groups, grid)),
    }
    try:
        scorer = _require(lambda: ClipScorer.load(models.clip), "toy-clip")
    except Missing as exc:
        row["judged"] = str(exc)
        return row
    singles = [i for i, g in enumerate(groups) if g.endswith("single")]
    if singles:
        truth = [parse(prompts[i]).objects[0] for i in singles]
        shape = scorer.classify(images[singles], "shape")
        colour = scorer.classify(images[singles], "colour")
        for split in ("seen", "heldout"):
            idx = [k for k, i in enumerate(singles) if groups[i] == f"{split}_single"]
            if idx:
                row[f"{split}_shape_agreement"] = sum(
                    shape[k] == truth[k].shape for k in idx
                ) / len(idx)
                row[f"{split}_colour_agreement"] = sum(
                    colour[k] == truth[k].colour for k in idx
                ) / len(idx)
    for split in ("seen", "heldout"):
        idx = [i for i, g in enumerate(groups) if g == f"{split}_composition"]
        if idx:
            texts = [prompts[i] for i in idx]
            row[f"{split}_composition_r_precision"] = scorer.r_precision(
                images[idx], texts, [distractors(t) for t in texts]
            )
    real = renders(n, SINGLE_AND_COMPOSITIONS, prior.image_size)["images"]  # type: ignore[union-attr]
    row.update({f"{k}": v for k, v in fid_kid(real, images, scorer).items()})  # type: ignore[arg-type]
    return row


def depth_part(models: Models, n: int, steps: int, cfg: float, **_: object) -> dict:
    from dreamlift.priors import DiffusionPrior
    from dreamlift.zoo.recipes.sd import disparity

    prior = _require(lambda: DiffusionPrior.load(models.depth), "toy-sd-depth")
    if not prior.depth_conditioned:  # type: ignore[union-attr]
        raise ModelError(f"{models.depth} is not depth-conditioned")
    data = renders(n, {"single": 1.0}, prior.image_size)  # type: ignore[union-attr]
    disp = disparity(data["depth"])[:, 0]  # type: ignore[index]
    target = disp > 0
    images = _sample(prior, data["captions"], steps, cfg, disp)  # type: ignore[arg-type]
    iou = mask_iou(foreground_mask(images).float(), target.float())
    rule = mask_iou(foreground_mask(data["images"]).float(), target.float())  # type: ignore[arg-type]
    return {
        "samples": n,
        "mask_iou": float(iou.mean()),
        "mask_iou_min": float(iou.min()),
        "mask_rule_iou_on_renders": float(rule.mean()),  # the rule itself, on ground truth
    }


RUNNERS: dict[str, Callable[..., dict]] = {
    "clip": clip_part,
    "vae": vae_part,
    "sd": sd_part,
    "depth": depth_part,
}


def _passes(part: str, row: dict) -> bool | None:
    bars, ceilings = BARS[part], CEILINGS.get(part, {})
    if any(k not in row for k in (*bars, *ceilings)):
        return None
    return all(row[k] >= v for k, v in bars.items()) and all(
        row[k] <= v for k, v in ceilings.items()
    )


def _show(part: str, row: dict) -> None:
    if "status" in row and row["status"] != "ok":
        print(f"{part:6s} {row['status']}", flush=True)
        return
    shown = "  ".join(
        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
        for k, v in row.items()
        if k not in ("status", "grid", "pass") and not isinstance(v, dict)
    )
    verdict = {True: "pass", False: "FAIL", None: "-"}[row.get("pass")]
    print(f"{part:6s} {verdict:4s}  {shown}", flush=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--n", type=int, default=None, help="Items per part (default: the bars').")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps of the samples.")
    parser.add_argument("--cfg", type=float, default=7.5, help="Guidance scale of the samples.")
    parser.add_argument("--clip", default="toy-clip", help="toy-clip or a CLIP folder.")
    parser.add_argument("--sd", default="toy-sd", help="toy-sd or a diffusers folder.")
    parser.add_argument("--sd-depth", default="toy-sd-depth", help="toy-sd-depth or a folder.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--grid", type=Path, default=ROOT / "docs" / "images" / "toy-sd-samples.png"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "zoo.json")
    args = parser.parse_args(argv)
    configure_process()
    torch.set_num_threads(args.threads)
    models = Models(args.clip, args.sd, args.sd_depth)
    started = time.time()
    rows: dict[str, dict] = {}
    for part in args.only:
        t0 = time.perf_counter()
        try:
            row = RUNNERS[part](
                models, args.n or DEFAULT_N[part], steps=args.steps, cfg=args.cfg, grid=args.grid
            )
            row = {"status": "ok", **row}
            row["pass"] = _passes(part, row)
        except Missing as exc:
            row = {"status": str(exc), "pass": None}
        row["seconds"] = time.perf_counter() - t0
        rows[part] = row
        _show(part, row)
    verdicts = [r["pass"] for r in rows.values()]
    result = {
        "command": command_line("zoo.py", argv),
        "machine": machine(args.threads),
        "models": {"clip": args.clip, "sd": args.sd, "sd_depth": args.sd_depth},
        "bars": BARS,
        "ceilings": CEILINGS,
        "parts": rows,
        "all_pass": bool(verdicts) and all(v is True for v in verdicts),
        "wall_s": time.time() - started,
    }
    write_verdict(args.out, result)
    return result


if __name__ == "__main__":
    main()
