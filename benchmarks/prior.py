"""Prior benchmark: inversion quality and speed of DiffusionPrior (toy-sd, or --prior PATH).

    .venv/bin/python benchmarks/prior.py [--prior toy-sd] [--n 8] [--steps 50] [--threads 2]

Inversion, on held-out single-object renders with their captions (DDIM 50):

* CFG 1: DDIM inversion, then DDIM sampling from the inverted noise; PSNR to the render and to
  the VAE's own reconstruction (the best any latent method can do).
* CFG 7.5: the same inverted noise sampled at CFG 7.5 (plain DDIM inversion, which drifts)
  vs null-text inversion (Mokady et al. 2023) with 10 inner steps.

Bars (proposed here; the VAE's PSNR is the ceiling): CFG 1 within 2 dB of the VAE; null-text
inversion above plain DDIM inversion at CFG 7.5 and within 3 dB of the VAE.

Speed (median of --repeats): predict_eps with CFG at batch 1/2/8, VAE encode + backward,
decode, and one render-free SDS step (encode an image with grad, noise it, predict_eps with
CFG, surrogate loss backward). Prints a table and writes benchmarks/results/prior.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from run_info import command_line, machine, write_verdict
from torch import Tensor

from dreamlift.errors import DreamliftError
from dreamlift.metrics.image import psnr
from dreamlift.priors import DiffusionPrior, TextEmbeddings
from dreamlift.utils.process import configure_process
from dreamlift.utils.timing import median_seconds
from dreamlift.world.datasets import WorldDataset
from dreamlift.zoo.heldout import eval_dataset

CFG_HIGH = 7.5
BAR_CFG1_BELOW_VAE_DB = 2.0
BAR_NTI_BELOW_VAE_DB = 3.0
SPEED_BATCHES = (1, 2, 8)


def held_out_renders(n: int, size: int) -> tuple[Tensor, list[str]]:
    """``n`` held-out single-object renders (B, 3, size, size) in [0, 1] and their captions."""
    data = WorldDataset(eval_dataset(kinds={"single": 1.0}, resolution=size), n)
    items = [data[i] for i in range(n)]
    return torch.stack([x["image"] for x in items]), [str(x["caption"]) for x in items]


def _psnr(a: Tensor, b: Tensor) -> float:
    return float(psnr(a, b).mean())


def inversion_table(
    prior: DiffusionPrior, images: Tensor, captions: list[str], steps: int, inner_steps: int
) -> dict[str, float | bool]:
    """PSNRs of the reconstructions (see the module docstring) and whether the bars are met."""
    images = images.to(prior.device)
    text = prior.embed_text(captions)
    with torch.no_grad():
        z0 = prior.encode(images)
        vae = prior.decode(z0)
    t0 = time.perf_counter()
    z_t = prior.ddim_invert(z0, text, steps, 1.0)[-1]
    invert_s = time.perf_counter() - t0

    def rebuild(start: Tensor, scale: float, nulls: list[Tensor] | None = None) -> Tensor:
        with torch.no_grad():
            z = prior.sample(text, steps, scale, latents=start, null_embeddings=nulls)
            return prior.decode(z)

    cfg1 = rebuild(z_t, 1.0)
    ddim_high = rebuild(z_t, CFG_HIGH)
    t0 = time.perf_counter()
    z_t_nti, nulls = prior.null_text_inversion(z0, text, steps, CFG_HIGH, inner_steps)
    nti_s = time.perf_counter() - t0
    nti = rebuild(z_t_nti, CFG_HIGH, nulls)
    row: dict[str, float | bool] = {
        "vae_psnr_db": _psnr(vae, images),
        "cfg1_psnr_db": _psnr(cfg1, images),
        "cfg1_psnr_vs_vae_db": _psnr(cfg1, vae),
        "cfg7.5_ddim_psnr_db": _psnr(ddim_high, images),
        "cfg7.5_null_text_psnr_db": _psnr(nti, images),
        "ddim_inversion_s_per_image": invert_s / len(images),
        "null_text_inversion_s_per_image": nti_s / len(images),
    }
    vae_db = float(row["vae_psnr_db"])
    row["pass_cfg1"] = float(row["cfg1_psnr_db"]) >= vae_db - BAR_CFG1_BELOW_VAE_DB
    row["pass_null_text"] = (
        float(row["cfg7.5_null_text_psnr_db"]) > float(row["cfg7.5_ddim_psnr_db"])
        and float(row["cfg7.5_null_text_psnr_db"]) >= vae_db - BAR_NTI_BELOW_VAE_DB
    )
    return row


def speed_table(prior: DiffusionPrior, caption: str, repeats: int) -> list[dict]:
    """Latency of the prior's operations (ms) and their rate (per second)."""
    gen = torch.Generator().manual_seed(0)
    size, lat = prior.image_size, prior.latent_size
    text = prior.embed_text(caption)
    depth = torch.rand(1, size, size, generator=gen) if prior.depth_conditioned else None
    t_mid = int(prior.num_train_timesteps // 2)
    rows: list[dict] = []

    def add(what: str, batch: int, seconds: float) -> None:
        rows.append({"what": what, "batch": batch, "ms": 1e3 * seconds, "per_s": 1 / seconds})

    for b in SPEED_BATCHES:
        z = torch.randn(b, prior.latent_channels, lat, lat, generator=gen).to(prior.device)

        def eps(z: Tensor = z, text: TextEmbeddings = text) -> None:
            with torch.no_grad():
                prior.predict_eps(z, t_mid, text, CFG_HIGH, depth)

        add("predict_eps (CFG, 2 branches)", b, median_seconds(eps, repeats))
    image = torch.rand(1, 3, size, size, generator=gen).to(prior.device)

    def encode_backward() -> None:
        x = image.clone().requires_grad_(True)
        prior.encode(x).square().sum().backward()

    def decode() -> None:
        with torch.no_grad():
            prior.decode(torch.randn(1, prior.latent_channels, lat, lat).to(prior.device))

    def sds_step() -> None:
        x = image.clone().requires_grad_(True)
        z = prior.encode(x)
        t = int(torch.randint(20, int(0.98 * prior.num_train_timesteps), (1,), generator=gen))
        noise = torch.randn(z.shape, generator=gen).to(z)
        with torch.no_grad():
            eps = prior.predict_eps(prior.add_noise(z, noise, t), t, text, CFG_HIGH, depth)
        grad = (1 - prior.alphas_cumprod[t]) * (eps - noise)
        (grad * z).sum().backward()  # d/dz of this surrogate is exactly the SDS gradient

    add("encode + backward", 1, median_seconds(encode_backward, repeats))
    add("decode", 1, median_seconds(decode, repeats))
    add("SDS step (encode, eps CFG, backward)", 1, median_seconds(sds_step, repeats))
    return rows


def _print(inversion: dict, speed: list[dict], prior: str) -> None:
    print(f"prior: {prior}")
    print(f"{'inversion':34s} {'PSNR dB':>8s}")
    for key in (
        "vae_psnr_db",
        "cfg1_psnr_db",
        "cfg1_psnr_vs_vae_db",
        "cfg7.5_ddim_psnr_db",
        "cfg7.5_null_text_psnr_db",
    ):
        print(f"  {key:32s} {inversion[key]:8.2f}")
    print(
        f"  bar CFG 1: {'pass' if inversion['pass_cfg1'] else 'FAIL'}   "
        f"bar null-text: {'pass' if inversion['pass_null_text'] else 'FAIL'}"
    )
    print(f"{'speed':40s} {'batch':>5s} {'ms':>9s} {'per s':>9s}")
    for row in speed:
        print(f"  {row['what']:38s} {row['batch']:5d} {row['ms']:9.2f} {row['per_s']:9.1f}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--prior", default="toy-sd", help="Zoo name or diffusers folder.")
    parser.add_argument("--n", type=int, default=8, help="Held-out renders to invert.")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps of the inversions.")
    parser.add_argument("--inner-steps", type=int, default=10, help="Null-text Adam steps.")
    parser.add_argument("--repeats", type=int, default=10, help="Timing repeats (median).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "prior.json"
    )
    args = parser.parse_args(argv)
    configure_process()
    torch.set_num_threads(args.threads)
    started = time.time()
    prior = DiffusionPrior.load(args.prior, device=args.device)
    if prior.depth_conditioned:
        raise DreamliftError(
            f"{prior.folder} is depth-conditioned", "benchmark the text-only prior (toy-sd)"
        )
    images, captions = held_out_renders(args.n, prior.image_size)
    inversion = inversion_table(prior, images, captions, args.steps, args.inner_steps)
    speed = speed_table(prior, captions[0], args.repeats)
    _print(inversion, speed, str(args.prior))
    result = {
        "command": command_line("prior.py", argv),
        "prior": str(prior.folder),
        "machine": machine(args.threads, device=str(prior.device)),
        "settings": {
            "renders": args.n,
            "image_size": prior.image_size,
            "steps": args.steps,
            "inner_steps": args.inner_steps,
            "cfg": CFG_HIGH,
            "repeats": args.repeats,
        },
        "bars": {
            "cfg1_psnr_at_least_vae_minus_db": BAR_CFG1_BELOW_VAE_DB,
            "null_text_beats_ddim_and_at_least_vae_minus_db": BAR_NTI_BELOW_VAE_DB,
        },
        "inversion": inversion,
        "speed": speed,
        "all_pass": bool(inversion["pass_cfg1"] and inversion["pass_null_text"]),
        "wall_s": time.time() - started,
    }
    write_verdict(args.out, result)
    return result


if __name__ == "__main__":
    try:
        main()
    except DreamliftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
