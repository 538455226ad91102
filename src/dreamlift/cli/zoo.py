"""``dreamlift zoo``: list the zoo's models and train them (resumable, fine in the background)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dreamlift.cli.common import RunOptions, command, console
from dreamlift.zoo.registry import ZOO

zoo_app = typer.Typer(no_args_is_help=True, help="The model zoo: toy models trained on the world.")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@zoo_app.command("list")
def zoo_list() -> None:
    """Name, parameters, size on disk, training steps and quality figures of each model."""
    from dreamlift.zoo.registry import list_models

    table = Table(title="dreamlift zoo")
    for col in ("name", "trained", "parameters", "size", "steps", "quality"):
        table.add_column(col)
    for row in list_models():
        steps = ", ".join(f"{k} {v}" for k, v in row.training_steps.items()) or "-"
        figures = ", ".join(f"{k} {v:g}" for k, v in row.figures.items()) or "-"
        table.add_row(
            row.name,
            "yes" if row.trained else "no",
            f"{row.parameters / 1e6:.2f} M",
            _size(row.size_bytes),
            steps,
            figures,
        )
    Console().print(table)


@zoo_app.command("train")
@command(options=("threads", "quiet"))
def zoo_train(
    options: RunOptions,
    name: str = typer.Argument(..., help="A zoo name (dreamlift zoo list): " + ", ".join(ZOO)),
    steps: int | None = typer.Option(
        None, min=1, help="Total steps of each stage run (default: the recipe's fast setting)."
    ),
    stage: str | None = typer.Option(
        None,
        help="Run only this stage ("
        + "; ".join(f"{e.name}: {', '.join(e.stages)}" for e in ZOO.values() if len(e.stages) > 1)
        + "; the others: one stage each); default: all, in order.",
    ),
    workdir: Path | None = typer.Option(
        None,
        help="Checkpoints and caches (default: ~/.cache/dreamlift/zoo/NAME).",
    ),
    export_only: bool = typer.Option(
        False, "--export-only", help="Export the latest checkpoint into the package; no training."
    ),
    no_eval: bool = typer.Option(False, "--no-eval", help="Skip the quality measurement."),
    eval_only: bool = typer.Option(
        False, "--eval-only", help="Re-measure the exported model as it is; no training."
    ),
) -> None:
    """Train NAME (resumes from its checkpoint; Ctrl-C / SIGTERM checkpoint and stop)."""
    from dreamlift.errors import DreamliftError
    from dreamlift.zoo.recipes import run_stage
    from dreamlift.zoo.registry import entry
    from dreamlift.zoo.trainer import default_workdir

    if eval_only and (export_only or no_eval):
        raise DreamliftError("--eval-only measures only; it takes no --export-only or --no-eval")
    e = entry(name)
    stages = (stage,) if stage else e.stages
    work = workdir if workdir is not None else default_workdir(name)
    for s in stages:
        report = run_stage(
            name,
            s,
            work,
            steps=steps,
            export_only=export_only,
            evaluate=not no_eval,
            evaluate_only=eval_only,
            quiet=options.quiet,
        )
        figures = ", ".join(f"{k} {v:g}" for k, v in report.figures.items()) or "not measured"
        done = "measured in" if eval_only else "exported to"
        console.print(
            f"{name}/{s}: step {report.steps}, {done} {report.folder}; {figures}", highlight=False
        )
