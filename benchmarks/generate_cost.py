"""Iteration cost of ``dreamlift generate`` with a full-size Stable Diffusion 2.1-base prior.

    .venv/bin/python benchmarks/generate_cost.py [--fields gaussians nerf] [--guidances sds ge3d]
        [--steps 3] [--warmup 1] [--resolution 512] [--threads 2]
        [--device cuda --dtype float16 --preset paper --backend torch|gsplat]
    .venv/bin/python benchmarks/generate_cost.py --save-folder /tmp/sd21 [--device cuda]

The UNet, VAE and text encoder are built from SD 2.1-base's published configs (below) with
random weights — nothing is downloaded — and driven through the same ``generate`` /
``TextTo3D`` code as any run: 512² renders (64² latents), the fast preset, one view per step.
Only the time matters, so the tokenizer is a word-level one over the world's words padded past any
toy prior's size (prompts take the real-prior path; the 1024-wide OpenCLIP-H text tower
reads its ids like any others). ``--warmup`` steps run first (text encoding, allocator) and are
left out of the split. Bar (issue): the prior's own work (UNet calls, VAE encode, its backward
and decode) is at least 80 % of an iteration for both fields.

On a GPU (``--device cuda``) the split is taken with a CUDA synchronise around each part (the
``profile`` setting), so each part is charged its own kernels. ``--preset paper`` measures
GE3D's released settings (4 views a step, 81,920 Gaussians, Perp-Neg) instead of the fast
preset's one view. ``--save-folder`` writes the same random-weight model as a diffusers folder
(with a tokenizer that also knows "hamburger") for ``dreamlift generate --prior PATH`` and exits.

Prints the split per run and writes benchmarks/results/generate_cost.json. Memory: about 6 GB
of weights (fp32) plus the VAE encoder's activations at 512² for its backward.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import torch
from run_info import machine

from dreamlift.guidance.ge3d import GE3D_NEGATIVE_PROMPT
from dreamlift.methods.generate import PRIOR_PARTS, build_config, generate
from dreamlift.priors import DiffusionPrior
from dreamlift.priors.loading import PriorComponents
from dreamlift.utils.process import configure_process
from dreamlift.zoo.tiny import sd_ddim_scheduler
from dreamlift.zoo.tokenizer import WORLD_VOCAB_MAX, build_tokenizer, caption_words

PROMPT = "a red cube"
BAR = 0.80

# stabilityai/stable-diffusion-2-1-base, unet/config.json
SD21_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 1024,
    "attention_head_dim": (5, 10, 20, 20),
    "use_linear_projection": True,
    "dual_cross_attention": False,
    "upcast_attention": False,
}
# stabilityai/stable-diffusion-2-1-base, vae/config.json
SD21_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 768,
    "scaling_factor": 0.18215,
}
# stabilityai/stable-diffusion-2-1-base, text_encoder/config.json (OpenCLIP ViT-H/14 text)
SD21_TEXT = {
    "vocab_size": 49408,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 512,
    "bos_token_id": 0,  # the world tokenizer's ids (SD's own: 49406 / 49407)
    "eos_token_id": 1,
    "pad_token_id": 1,
}


EXTRA_WORDS = ("hamburger", *re.findall(r"[a-z]+", GE3D_NEGATIVE_PROMPT.lower()))
"""The world tokenizer gains the issue's real-prior example ("a hamburger") and the words of the
paper preset's negative prompt."""


def sd21_parts(seed: int, device: torch.device, dtype: torch.dtype) -> dict[str, torch.nn.Module]:
    """UNet, VAE and text encoder of SD 2.1-base, random weights, built on ``device``
    (initialising 1.3 B parameters on a GPU takes seconds, on a CPU about a minute)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    with torch.device(device):
        parts = {
            "unet": UNet2DConditionModel(**SD21_UNET),
            "vae": AutoencoderKL(**SD21_VAE),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**SD21_TEXT)),
        }
    return {name: m.to(dtype).requires_grad_(False).eval() for name, m in parts.items()}


def sd21_tokenizer(folder: Path):
    """A word-level tokenizer larger than any toy prior's (filler words pad it past
    ``WORLD_VOCAB_MAX``), so prompts take the real-prior path: any text, no grammar check,
    DreamFusion's view prefixes; only its word ids differ from SD's BPE."""
    filler = [f"filler{i}" for i in range(WORLD_VOCAB_MAX + 1)]
    return build_tokenizer([*caption_words(), *EXTRA_WORDS, *filler], folder / "tokenizer", 77)


def sd21_prior(
    folder: Path,
    seed: int = 0,
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
) -> DiffusionPrior:
    """SD 2.1-base's architecture with random weights, in memory (the tokenizer in ``folder``)."""
    return DiffusionPrior(
        PriorComponents(
            folder=folder,
            tokenizer=sd21_tokenizer(folder),
            scheduler_config=dict(sd_ddim_scheduler().config),
            device=device,
            dtype=dtype,
            **sd21_parts(seed, device, dtype),
        )
    )


def save_sd21_folder(folder: Path, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Path:
    """The random-weight SD 2.1-base as a diffusers folder that ``--prior PATH`` loads."""
    from diffusers import StableDiffusionPipeline

    folder.mkdir(parents=True, exist_ok=True)
    pipe = StableDiffusionPipeline(
        **sd21_parts(seed, device, dtype),
        tokenizer=sd21_tokenizer(folder),
        scheduler=sd_ddim_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def measure(
    prior: DiffusionPrior,
    field: str,
    guidance: str,
    steps: int,
    warmup: int,
    resolution: int,
    preset: str = "fast",
    backend: str = "auto",
) -> dict:
    """``warmup`` steps, then ``steps`` more in a resumed run: the split of those alone."""
    overrides = {
        "prompt": PROMPT,
        "field": field,
        "guidance": guidance,
        "resolution": resolution,
        "resolution_warmup": ((0, 1.0),),
        "score": False,
        "turntable_frames": 2,
        "log_every": 1,
        "checkpoint_every": 1000,
        "gaussians": {"backend": backend},
        "profile": prior.device.type == "cuda",
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        if warmup:
            generate(build_config(preset, steps=warmup, **overrides), out, quiet=True, prior=prior)
        cfg = build_config(preset, steps=warmup + steps, **overrides)
        result = generate(cfg, out, resume=warmup > 0, quiet=True, prior=prior)
    split = result["iteration_split"]
    return {
        "field": field,
        "guidance": guidance,
        "preset": preset,
        "backend": backend,
        "views_per_step": cfg.views_per_step,
        "resolution": resolution,
        "iterations": split["iterations"],
        "seconds_per_iteration": split["step_s"] / max(split["iterations"], 1),
        "seconds": {k: v / max(split["iterations"], 1) for k, v in split["seconds"].items()},
        "fractions": split["fractions"],
        "prior_fraction": split["prior_fraction"],
        "pass": split["prior_fraction"] >= BAR,
    }


def print_row(row: dict) -> None:
    f = row["fractions"]
    parts = "  ".join(f"{k} {100 * v:4.1f}%" for k, v in f.items() if v >= 0.0005)
    print(
        f"{row['field']:9s} {row['guidance']:5s} {row['seconds_per_iteration']:8.3f} s/it  "
        f"prior {100 * row['prior_fraction']:5.1f}% {'pass' if row['pass'] else 'FAIL'}  | {parts}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", nargs="+", default=["gaussians", "nerf"])
    parser.add_argument("--guidances", nargs="+", default=["sds", "ge3d"])
    parser.add_argument("--steps", type=int, default=3, help="Measured iterations per run.")
    parser.add_argument("--warmup", type=int, default=1, help="Iterations left out first.")
    parser.add_argument("--resolution", type=int, default=512, help="Render size.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    parser.add_argument("--preset", default="fast", choices=["fast", "paper"])
    parser.add_argument("--backend", default="auto", help="Gaussian rasteriser: auto|torch|gsplat.")
    parser.add_argument("--save-folder", type=Path, help="Write the model folder there and exit.")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "generate_cost.json"
    )
    args = parser.parse_args()
    configure_process()
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    started = time.time()
    if args.save_folder:
        save_sd21_folder(args.save_folder, device, dtype)
        print(f"SD 2.1-base, random weights ({args.dtype}) -> {args.save_folder}", flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        prior = sd21_prior(Path(tmp), device=device, dtype=dtype)
        build_s = time.time() - t0
        sizes = {name: parameters(getattr(prior, name)) for name in ("unet", "vae", "text_encoder")}
        print(
            "SD 2.1-base architecture, random weights: "
            + ", ".join(f"{k} {v / 1e6:.0f} M" for k, v in sizes.items())
            + f" parameters (built in {build_s:.0f} s); image {prior.image_size}², "
            f"latents {prior.latent_size}²",
            flush=True,
        )
        rows: list[dict] = []
        for field in args.fields:
            for guidance in args.guidances:
                row = measure(
                    prior,
                    field,
                    guidance,
                    args.steps,
                    args.warmup,
                    args.resolution,
                    args.preset,
                    args.backend,
                )
                rows.append(row)
                print_row(row)
                # Written after every run: a long GPU or CPU session that is cut short keeps
                # the runs it finished.
                result = _result(args, device, sizes, rows, time.time() - started)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(result, indent=1))
    print(f"\nprior >= {100 * BAR:.0f}% of every iteration: {result['all_pass']} -> {args.out}")


def _result(
    args: argparse.Namespace, device: torch.device, sizes: dict, rows: list[dict], wall_s: float
) -> dict:
    return {
        "command": "benchmarks/generate_cost.py",
        "machine": machine(
            args.threads,
            device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            dtype=args.dtype,
        ),
        "prior": {
            "architecture": "stable-diffusion-2-1-base (random weights)",
            "parameters": sizes,
        },
        "prior_parts": list(PRIOR_PARTS),
        "bar": {"prior_fraction": BAR},
        "runs": rows,
        "all_pass": all(r["pass"] for r in rows),
        "wall_s": wall_s,
    }


if __name__ == "__main__":
    main()
