"""Generation benchmark: SDS, ISM and GE3D on Gaussians and NeRF, scored against the world.

    .venv/bin/python benchmarks/generate.py [--budget-s 120] [--captions all]
        [--guidances sds,ism,ge3d] [--fields gaussians,nerf] [--only equal fast]
        [--prior toy-sd-camera] [--threads 2] [--quick] [--resume] [--merge A.json B.json]

Captions (``--captions`` all | single | composition | heldout, comma-separated, or
``--caption TEXT`` repeated): 6 single objects, 3 compositions (on top / next to) and 3
held-out combinations of the zoo (zoo/heldout.py: two held-out colour-shape pairs, one
held-out composition). Two run sets:

* ``equal`` — every guidance × field at the same wall-clock training budget (``--budget-s``).
  Short probes measure each combination's step time at each warm-up render size and its step
  count is set so the whole schedule fits 90 % of the budget; the loop also stops at the
  budget (later steps can be slower: densification, GE3D's node schedule). Every run is
  scored on ground truth (aligned silhouette IoU and foreground colour error over 8 views,
  shape and colour correct for single objects), with toy-clip (similarity, R-precision), and
  records its iteration-time split. About ten quick evaluations per run (IoU on 4 views, off
  the budget) give quality against time, from which "time to reach SDS's final quality" is
  read, per caption and field.
* ``fast`` — the fast preset (GE3D on Gaussians, its 200 steps, stopped at convergence as a
  user runs it) on every caption: wall time and the bars.

Bars (issue): fast preset generation (training + outputs, not the scoring) ≤ 5 min per
caption; single-object captions: mean IoU ≥ 0.8, mean R-precision ≥ 0.9, described shape
ranked first and mean colour nearest the described colour for ≥ 90 %; compositions: mean
IoU ≥ 0.7; the prior's share (UNet + VAE) of a GE3D iteration ≥ 50 % for both fields.

``--prior``: a zoo name or diffusers folder (default toy-sd-camera); ``tiny`` builds a tiny random
pipeline (smoke runs), ``toy-random`` toy-sd's architecture with random weights (true
iteration costs, meaningless scores). ``--quick`` is a smoke run: two captions, a 6 s budget,
a 12-step fast set, light scoring. Results are written to benchmarks/results/generate.json
after every run; ``--resume`` keeps the runs already there. The default full run is 72
equal-time runs plus 12 fast ones: about (budget + 1 min) × 72 + 6 min × 12 on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from generate_report import (  # benchmarks/ is on the path of a script run from it
    bars,
    compare,
    console,
    print_report,
    run_line,
    split_summary,
)
from run_info import machine

from dreamlift.errors import DreamliftError
from dreamlift.io.run import atomic_write_text
from dreamlift.loop import Interrupted
from dreamlift.methods.generate import build_config, generate, render_scale
from dreamlift.priors import DiffusionPrior
from dreamlift.utils.process import configure_process
from dreamlift.world import caption, parse
from dreamlift.world.assets import Description, ObjectSpec
from dreamlift.zoo.heldout import HELDOUT_COMPOSITIONS, HELDOUT_PAIRS

CAPTIONS: dict[str, list[str]] = {
    "single": [
        "a red cube",
        "a blue sphere",
        "a yellow torus",
        "a green cone",
        "a purple pyramid",
        "an orange cylinder",
    ],
    "composition": [
        "a blue cube with a red sphere on top",
        "a purple cylinder with an orange cone on top",
        "a green sphere next to a yellow cube",
    ],
    "heldout": [
        *(caption(Description((ObjectSpec(*pair),))) for pair in HELDOUT_PAIRS[:2]),
        HELDOUT_COMPOSITIONS[0],
    ],
}
PROBE_STEPS = 5
SAFETY = 0.9  # step counts aim at 90 % of the budget: densification makes later steps slower
RESULTS = Path(__file__).parent / "results" / "generate.json"


# ---------------------------------------------------------------------- priors
def load_prior(name: str, folder: Path) -> DiffusionPrior:
    if name == "tiny":
        from dreamlift.zoo.tiny import TinySDConfig, save_tiny_sd

        config = TinySDConfig(unet_channels=(16, 32, 32))
        return DiffusionPrior.load(save_tiny_sd(folder / "tiny", sample_size=8, config=config))
    if name == "toy-random":
        return toy_random_prior(folder)
    return DiffusionPrior.load(name)


def toy_random_prior(folder: Path) -> DiffusionPrior:
    """toy-sd's architecture (zoo recipes) with random weights: its true iteration cost."""
    from diffusers import AutoencoderKL

    from dreamlift.priors.loading import PriorComponents
    from dreamlift.zoo.recipes.sd import SDConfig, toy_unet
    from dreamlift.zoo.tiny import TinySDConfig, sd_ddim_scheduler, tiny_text_encoder
    from dreamlift.zoo.tokenizer import build_tokenizer, caption_words

    sd = SDConfig()
    torch.manual_seed(0)
    tokenizer = build_tokenizer(caption_words(), folder / "tokenizer", sd.max_length)
    text = TinySDConfig(
        text_width=sd.text_width,
        text_layers=sd.text_layers,
        text_heads=sd.text_heads,
        max_length=sd.max_length,
    )
    parts = {
        "unet": toy_unet(sd, 16, 4, sd.text_width),
        "vae": AutoencoderKL(  # toy-sd/vae's config: 64² images, 16² latents
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            block_out_channels=(16, 32, 64),
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=64,
            scaling_factor=1.066,
        ),
        "text_encoder": tiny_text_encoder(text, len(tokenizer)),
    }
    for model in parts.values():
        model.requires_grad_(False).eval()
    return DiffusionPrior(
        PriorComponents(
            folder=folder,
            tokenizer=tokenizer,
            scheduler_config=dict(sd_ddim_scheduler().config),
            device=torch.device("cpu"),
            dtype=torch.float32,
            **parts,
        )
    )


# ---------------------------------------------------------------------- runs
def run(
    prior: DiffusionPrior, overrides: dict[str, Any], out: Path, resume: bool = False
) -> dict[str, Any]:
    """One ``generate`` run into ``out``; returns its result with the summary's wall time.
    The run's config names the folder of the prior it ran with, so its config.yaml, a
    ``--resume`` and ``rescore.py`` see that prior, not the default one."""
    cfg = build_config("fast", **{"prior": str(prior.folder), **overrides})
    result = generate(cfg, out, resume=resume, quiet=True, prior=prior)
    result["wall_s"] = json.loads((out / "summary.json").read_text())["timings"]["wall_s"]
    return result


def run_kept(prior: DiffusionPrior, overrides: dict[str, Any], runs: Path | None) -> dict:
    """A run whose folder is kept under ``runs`` (or thrown away when None)."""
    name = "-".join(overrides[k].replace(" ", "_") for k in ("prompt", "guidance", "field"))
    with tempfile.TemporaryDirectory() as tmp:
        return run(prior, overrides, (runs or Path(tmp)) / name)


def probe_step_s(
    prior: DiffusionPrior, text: str, guidance: str, field: str, scale: float
) -> float:
    """Seconds per step with renders at ``scale`` of the full size, measured over PROBE_STEPS
    steps after a first one (text encoding, allocations)."""
    overrides = {
        "prompt": text,
        "guidance": guidance,
        "field": field,
        "resolution_warmup": ((0, scale),),
        "score": False,
        "turntable_frames": 2,
        "log_every": 1,
    }
    with tempfile.TemporaryDirectory() as tmp:
        run(prior, {**overrides, "steps": 1}, Path(tmp) / "probe")
        probe = {**overrides, "steps": 1 + PROBE_STEPS}
        split = run(prior, probe, Path(tmp) / "probe", resume=True)["iteration_split"]
    return split["step_s"] / max(split["iterations"], 1)


def plan_steps(
    prior: DiffusionPrior, text: str, guidance: str, field: str, budget: float
) -> tuple[int, dict[float, float]]:
    """The step count whose schedule (resolution warm-up included) fills SAFETY × budget, from
    probed step times at each warm-up resolution; at least 10."""
    warmup = build_config("fast", field=field).resolution_warmup
    per_step = {s: probe_step_s(prior, text, guidance, field, s) for s in dict(warmup).values()}
    steps, spent = 0, 0.0
    while spent + per_step[render_scale(steps, warmup)] <= SAFETY * budget:
        spent += per_step[render_scale(steps, warmup)]
        steps += 1
    return max(steps, 10), per_step


def row_of(result: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    m, t, split = result["metrics"], result["timings"], result["iteration_split"]
    generation = result["wall_s"] - t.get("score_s", 0.0) - t.get("log_s", 0.0)
    keys = (
        "silhouette_iou",
        "colour_error",
        "shape_correct",
        "shape_winner",
        "colour_correct",
        "colour_winner",
        "colour_verdict",
        "caption_correct",
        "clip_similarity",
        "clip_r_precision",
        "neighbour_view_iou",
        "neighbour_view_iou_truth",
    )
    return {
        **base,
        "steps_done": m["steps_done"],
        "out_of_time": m["out_of_time"],
        **{k: m.get(k) for k in keys},
        "train_s": t.get("loop_s", 0.0),
        "generation_s": generation,
        "score_s": t.get("score_s", 0.0),
        "wall_s": result["wall_s"],
        "eval_curve": m.get("eval_curve", []),
        "split": {
            "fractions": split["fractions"],
            "prior_fraction": split["prior_fraction"],
            "seconds_per_iteration": split["step_s"] / max(split["iterations"], 1),
        },
        "warnings": result["warnings"],
    }


# ---------------------------------------------------------------------- main
def select_captions(spec: str, extra: list[str], quick: bool) -> list[tuple[str, str]]:
    groups = list(CAPTIONS) if spec == "all" else [g for g in spec.split(",") if g]
    unknown = [g for g in groups if g not in CAPTIONS]
    if unknown:
        raise SystemExit(f"unknown caption group(s) {unknown}: all, or of {', '.join(CAPTIONS)}")
    chosen = [(c, g) for g in groups for c in CAPTIONS[g]] + [(c, "custom") for c in extra]
    for text, _ in chosen:
        parse(text)  # a caption the world cannot score fails here, not an hour in
    if quick:  # one single object and one composition
        single = [c for c in chosen if len(parse(c[0]).objects) == 1][:1]
        chosen = single + [c for c in chosen if len(parse(c[0]).objects) > 1][:1]
    return chosen


def _key(row: dict[str, Any]) -> tuple:
    return (row["set"], row["caption"], row["guidance"], row["field"], row["budget_s"])


class Benchmark:
    """The run sets, their rows (written after every run) and the summary."""

    def __init__(self, args: argparse.Namespace, captions: list[tuple[str, str]]) -> None:
        self.args, self.captions = args, captions
        self.started = time.time()
        old = json.loads(args.out.read_text()) if args.resume and args.out.exists() else {}
        self.rows: list[dict[str, Any]] = [r for r in old.get("runs", []) if "error" not in r]
        self.light = {"score_refinements": 4, "turntable_frames": 4} if args.quick else {}
        self.result: dict[str, Any] = {}

    def base(self, run_set: str, text: str, group: str, guidance: str, field: str) -> dict:
        return {
            "set": run_set,
            "caption": text,
            "group": group,
            "objects": len(parse(text).objects),
            "guidance": guidance,
            "field": field,
            "budget_s": self.args.budget_s if run_set == "equal" else None,
        }

    def todo(self, bases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        done = {_key(r) for r in self.rows}
        return [b for b in bases if _key(b) not in done]

    def record(self, prior: DiffusionPrior, base: dict[str, Any], overrides: dict) -> None:
        try:
            row = row_of(run_kept(prior, overrides, self.args.runs), base)
        except Interrupted:
            raise  # Ctrl-C / SIGTERM stops the benchmark, not just this run
        except DreamliftError as exc:
            row = {**base, "error": str(exc)}
        self.rows.append(row)
        console.print(run_line(row), highlight=False)
        self.save()

    def equal_time(self, prior: DiffusionPrior, guidance: str, field: str) -> None:
        """Every caption with one guidance × field at the budget; steps from a probe."""
        budget = self.args.budget_s
        bases = self.todo([self.base("equal", c, g, guidance, field) for c, g in self.captions])
        if not bases:
            return
        steps, per_step = plan_steps(prior, bases[0]["caption"], guidance, field, budget)
        log_every = 10 if steps >= 100 else 1
        eval_every = log_every * max(1, round(steps / 10 / log_every))
        console.print(
            f"[bold]{guidance} / {field}[/]: s per step at each render scale "
            + ", ".join(f"{k:g}: {v:.3f}" for k, v in per_step.items())
            + f" → {steps} steps in {budget:.0f} s"
        )
        for base in bases:
            overrides = {
                "prompt": base["caption"],
                "guidance": guidance,
                "field": field,
                "steps": steps,
                "time_budget_s": budget,
                "convergence": {"enabled": False},  # equal time: every run uses its budget
                "eval_every": eval_every,
                "log_every": log_every,
                "checkpoint_every": 10**6,
                **self.light,
            }
            self.record(prior, {**base, "steps_planned": steps}, overrides)

    def fast_preset(self, prior: DiffusionPrior) -> None:
        """GE3D on Gaussians with the fast preset as a user runs it (up to its 200 steps, stopped
        at convergence), on every caption."""
        steps = self.args.fast_steps or build_config("fast").steps
        bases = [self.base("fast", c, g, "ge3d", "gaussians") for c, g in self.captions]
        for base in self.todo(bases):
            overrides = {
                "prompt": base["caption"],
                "guidance": "ge3d",
                "field": "gaussians",
                "steps": steps,
                **self.light,
            }
            self.record(prior, {**base, "steps_planned": steps}, overrides)

    def save(self) -> None:
        args, rows = self.args, self.rows
        splits = split_summary(rows)
        self.result.update(
            command="benchmarks/generate.py",
            machine=machine(args.threads),
            prior=args.prior,
            budget_s=args.budget_s,
            quick=args.quick,
            captions=dict(self.captions),
            bars=bars([r for r in rows if r["set"] == "fast"], splits),
            comparison=compare([r for r in rows if r["set"] == "equal"]),
            iteration_split=splits,
            runs=rows,
            wall_s=time.time() - self.started,
        )
        atomic_write_text(args.out, json.dumps(self.result, indent=1))


def merge(args: argparse.Namespace) -> None:
    """One results file from several partial ones (later files win on a repeated run)."""
    rows: dict[tuple, dict[str, Any]] = {}
    captions: dict[str, str] = {}
    wall = 0.0
    for path in args.merge:
        part = json.loads(path.read_text())
        captions.update(part.get("captions", {}))
        wall += part.get("wall_s", 0.0)
        rows.update({_key(r): r for r in part.get("runs", []) if "error" not in r})
    args.resume = False
    bench = Benchmark(args, list(captions.items()))
    bench.rows = list(rows.values())
    bench.started = time.time() - wall  # the merged file's wall_s: the parts' total
    bench.save()
    print_report(bench.result)
    console.print(f"\n{len(bench.rows)} runs merged -> {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=120.0, help="Training s per run.")
    parser.add_argument("--captions", default="all", help="all, or groups: single,composition,…")
    parser.add_argument("--caption", action="append", default=[], help="An extra caption.")
    parser.add_argument("--guidances", default="sds,ism,ge3d")
    parser.add_argument("--fields", default="gaussians,nerf")
    parser.add_argument("--only", nargs="+", default=["equal", "fast"], choices=["equal", "fast"])
    parser.add_argument(
        "--prior", default="toy-sd-camera", help="Zoo name, folder, tiny or toy-random."
    )
    parser.add_argument(
        "--fast-steps", type=int, default=None, help="Fast set steps [the preset's: 200]."
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="Smoke run.")
    parser.add_argument("--resume", action="store_true", help="Keep the runs already in --out.")
    parser.add_argument("--runs", type=Path, default=None, help="Keep run folders here.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="Combine the runs of these results files (e.g. one process per core) into --out.",
    )
    args = parser.parse_args()
    configure_process()
    torch.set_num_threads(args.threads)
    if args.merge:
        merge(args)
        return
    if args.quick:
        args.budget_s = min(args.budget_s, 6.0)
        args.fast_steps = args.fast_steps or 12
    bench = Benchmark(args, select_captions(args.captions, args.caption, args.quick))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            prior = load_prior(args.prior, Path(tmp))
        except DreamliftError as exc:
            raise SystemExit(f"cannot load the prior: {exc}") from None
        if "equal" in args.only:
            for field in [f for f in args.fields.split(",") if f]:
                for guidance in [g for g in args.guidances.split(",") if g]:
                    bench.equal_time(prior, guidance, field)
        if "fast" in args.only:
            bench.fast_preset(prior)
    bench.save()
    print_report(bench.result)
    console.print(f"\n{len(bench.rows)} runs, {bench.result['wall_s'] / 60:.1f} min -> {args.out}")


if __name__ == "__main__":
    main()
