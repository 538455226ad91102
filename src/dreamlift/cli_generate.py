"""``dreamlift generate``: text-to-3D (registered by :mod:`dreamlift.cli`).

Registered with ``app.command("generate")(generate_command)``; user errors are
:class:`~dreamlift.errors.DreamliftError` and print as one line there (exit code 2). With
``--prompts FILE`` each non-blank line is one run in ``OUT/<nn>-<slug>``; a line that fails
is reported with its number and the batch goes on; ``OUT/batch.json`` holds the table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from dreamlift.errors import DataError, DreamliftError

console = Console(stderr=True)


def generate_command(
    prompt: str | None = typer.Argument(None, help="e.g. 'a red cube with a blue sphere on top'"),
    prompts: Path | None = typer.Option(None, help="A file of prompts, one a line (batch)."),
    out: Path = typer.Option(Path("out/generate"), help="Run folder (batch: parent folder)."),
    prior: str | None = typer.Option(None, help="Zoo name or diffusers folder [toy-sd-camera]."),
    field: str | None = typer.Option(None, help="gaussians or nerf [gaussians]."),
    guidance: str | None = typer.Option(None, help="ge3d, sds or ism [ge3d]."),
    preset: str = typer.Option("fast", help="fast (CPU minutes) or paper (GE3D's settings)."),
    steps: int | None = typer.Option(None, min=1, help="Optimisation steps."),
    seed: int | None = typer.Option(None),
    device: str | None = typer.Option(None, help="auto, cpu, cuda, ..."),
    resolution: int | None = typer.Option(None, min=8, help="Render size [prior's size]."),
    cfg: float | None = typer.Option(None, "--cfg", min=0.0, help="CFG scale."),
    negative: str | None = typer.Option(None, help="Negative prompt (uncond branch)."),
    init: str | None = typer.Option(None, help="Gaussians: sphere, random or PATH.ply."),
    export: str | None = typer.Option(None, help="auto, or mesh (Gaussians: also mesh.glb)."),
    no_score: bool = typer.Option(False, "--no-score", help="Skip ground-truth scoring."),
    time_budget: float | None = typer.Option(
        None, "--time-budget", min=0.0, help="Stop after this many seconds of training."
    ),
    profile: bool = typer.Option(
        False, help="Synchronise the GPU at each timing boundary (exact iteration split)."
    ),
    settings: list[str] = typer.Option(
        [],
        "--set",
        help="Any setting of config.yaml as KEY=VALUE, repeatable (e.g. --set ge3d.n=4 "
        "--set flip_views=0.5 --set gaussians.num_init=4096).",
    ),
    resume: bool = typer.Option(False, help="Continue the run in --out exactly."),
    threads: int | None = typer.Option(None, min=1, help="torch CPU threads."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Generate a 3D object from PROMPT (or every line of --prompts)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    from dreamlift.methods.common.config import parse_settings

    flags: dict[str, Any] = {
        "prior": prior,
        "field": field,
        "guidance": guidance,
        "steps": steps,
        "seed": seed,
        "device": device,
        "resolution": resolution,
        "guidance_scale": cfg,
        "negative_prompt": negative,
        "init": init,
        "export": export,
        "score": False if no_score else None,
        "time_budget_s": time_budget,
        "profile": True if profile else None,
    }
    # --set first, then the named flags that were given (they win over --set)
    overrides = {**parse_settings(settings), **{k: v for k, v in flags.items() if v is not None}}
    if prompts is not None:
        if prompt is not None:
            raise DreamliftError("give a PROMPT or --prompts FILE, not both")
        run_batch(prompts, out, preset, overrides, quiet)
        return
    if prompt is None and not resume:
        raise DreamliftError("no prompt given", "dreamlift generate 'a red cube' --out out/g1")
    result = run_one(prompt, out, preset, overrides, resume, quiet)
    _report(out, result)


def run_one(
    prompt: str | None,
    out: Path,
    preset: str,
    overrides: dict[str, Any],
    resume: bool,
    quiet: bool,
    prior: Any = None,
) -> dict[str, Any]:
    from dreamlift.methods.generate import build_config, generate, resume_config

    if resume and (out / "config.yaml").exists():
        config = resume_config(out, steps=overrides.get("steps"))
    else:
        config = build_config(preset, prompt=prompt, **overrides)
    return generate(config, out, resume=resume, quiet=quiet, prior=prior)


def read_prompts(path: Path) -> list[tuple[int, str]]:
    """(line number, prompt) of every non-blank line; ``#`` starts a comment line."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read prompts file {path}: {exc}") from None
    rows = [(i, line.strip()) for i, line in enumerate(lines, 1)]
    rows = [(i, text) for i, text in rows if text and not text.startswith("#")]
    if not rows:
        raise DataError(f"prompts file {path} has no prompts")
    return rows


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "prompt"


def run_batch(
    path: Path, out: Path, preset: str, overrides: dict[str, Any], quiet: bool
) -> list[dict[str, Any]]:
    """One run per prompt (the prior loaded once); failures are reported and skipped."""
    from dreamlift.methods.generate import build_config, load_prior

    rows: list[dict[str, Any]] = []
    prior = None
    for number, text in read_prompts(path):
        folder = out / f"{number:03d}-{_slug(text)}"
        row: dict[str, Any] = {"line": number, "prompt": text, "out": str(folder)}
        try:
            if prior is None:
                prior = load_prior(build_config(preset, prompt=text, **overrides))
            result = run_one(text, folder, preset, overrides, False, quiet, prior)
            row.update(status="ok", **_headline(result["metrics"]))
        except DreamliftError as exc:
            if type(exc).__name__ in ("ModelError", "Interrupted"):
                raise  # no prior, or the user stopped: the rest cannot go better
            console.print(f"[yellow]line {number}:[/] {exc}", highlight=False, soft_wrap=True)
            row.update(status="error", error=str(exc))
        rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch.json").write_text(json.dumps(rows, indent=2) + "\n")
    _table(rows)
    if not any(r["status"] == "ok" for r in rows):
        raise DreamliftError(f"no prompt of {path} could be generated", "see the lines above")
    return rows


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("silhouette_iou", "colour_error", "shape_winner", "clip_similarity")
    return {k: metrics[k] for k in keys if k in metrics}


def _table(rows: list[dict[str, Any]]) -> None:
    table = Table("line", "prompt", "status", "IoU", "colour err", "shape", "out")
    for r in rows:

        def num(key: str, row: dict[str, Any] = r) -> str:
            v = row.get(key)
            return f"{v:.3f}" if isinstance(v, float) else "-"

        table.add_row(
            str(r["line"]),
            r["prompt"],
            r["status"],
            num("silhouette_iou"),
            num("colour_error"),
            str(r.get("shape_winner", "-")),
            r["out"] if r["status"] == "ok" else r.get("error", ""),
        )
    Console().print(table)


def _report(out: Path, result: dict[str, Any]) -> None:
    shown = ", ".join(f"{k} {v:.3f}" for k, v in result["metrics"].items() if isinstance(v, float))
    console.print(f"[bold green]done[/] {out}" + (f": {shown}" if shown else ""))
    for name, path in result["outputs"].items():
        console.print(f"  {name:14s} {path}")
    for warning in result["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
