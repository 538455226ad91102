"""What every command shares, declared once: the common options, their gathering into
:class:`RunOptions`, the settings they give a method, and the printing of a run's result.

A command is a plain function of its own options plus ``options: RunOptions``;
:func:`command` adds the common options to its signature for typer::

    @command(out="out/generate", options=TRAINING)
    def generate_command(options: RunOptions, prompt: str | None = typer.Argument(None)): ...
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from dreamlift.errors import DreamliftError

console = Console(stderr=True)

RUN = ("out", "seed", "device", "threads", "quiet")
"""The options of every command that writes a run folder."""
TRAINING = (*RUN, "config", "settings", "resume")
"""The options of the commands whose settings are a method's config (generate, reconstruct,
handles)."""


def _option_parameters(out: str | None) -> dict[str, inspect.Parameter]:
    def option(name: str, kind: Any, default: Any) -> inspect.Parameter:
        return inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind
        )

    return {
        "out": option("out", Path, typer.Option(Path(out or "out"), help="Run folder.")),
        "seed": option(
            "seed",
            int | None,
            typer.Option(None, min=0, max=2**32 - 1, help="Random seed (default: 0)."),
        ),
        "device": option(
            "device",
            str | None,
            typer.Option(None, help="auto, cpu, cuda, cuda:1, ... (default: auto)"),
        ),
        "threads": option(
            "threads", int | None, typer.Option(None, min=1, max=4096, help="torch CPU threads.")
        ),
        "quiet": option("quiet", bool, typer.Option(False, help="No progress bar.")),
        "config": option(
            "config",
            Path | None,
            typer.Option(
                None, "--config", help="A YAML file of settings (the keys of config.yaml)."
            ),
        ),
        "settings": option(
            "settings",
            list[str] | None,
            typer.Option(
                None,
                "--set",
                help="Any setting of config.yaml as KEY=VALUE, repeatable; dots reach into "
                "groups (--set steps=300 --set gaussians.num_init=4096). Named flags win.",
            ),
        ),
        "resume": option(
            "resume",
            bool,
            typer.Option(
                False,
                help="Continue the run in --out as saved in its config.yaml; only --steps, "
                "--device and --threads may change.",
            ),
        ),
    }


@dataclass(frozen=True)
class RunOptions:
    """The common options of one command line."""

    out: Path = Path("out")
    seed: int | None = None
    device: str | None = None
    threads: int | None = None
    quiet: bool = False
    config: Path | None = None
    settings: tuple[str, ...] = ()
    resume: bool = False

    def overrides(self, flags: dict[str, Any]) -> dict[str, Any]:
        """The settings this command line gives: the ``--config`` file, then ``--set``, then
        the named ``flags`` that were given (not None), ``--seed`` and ``--device`` among
        them; later ones win, key by key into groups."""
        from dreamlift.methods.common.config import merge, parse_settings, read_config_file

        values = read_config_file(self.config) if self.config is not None else {}
        values = merge(values, parse_settings(self.settings))
        named = {**flags, "seed": self.seed, "device": self.device}
        return merge(values, {k: v for k, v in named.items() if v is not None})

    def settings_for(
        self, build: Callable[..., Any], resume: Callable[..., Any], flags: dict[str, Any]
    ) -> Any:
        """A method's config: ``resume(out, **overrides)`` when resuming a run that saved its
        config (a run writes it only once every input has been read and checked, so a run
        killed before its first checkpoint starts again from its saved settings), else
        ``build(**overrides)``."""
        overrides = self.overrides(flags)
        if self.resume and (self.out / "config.yaml").is_file():
            return resume(self.out, **overrides)
        return build(**overrides)


def command(
    out: str | None = None, options: tuple[str, ...] = RUN
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Turn ``fn(options: RunOptions, **own)`` into a typer command that takes its own
    options and then the common ``options`` (``out``'s default being ``out``); ``--threads``
    is applied before ``fn`` runs."""
    declared = _option_parameters(out)

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(fn, eval_str=True).parameters.values())[1:]
        common = [declared[name] for name in options]

        @functools.wraps(fn)
        def run(**values: Any) -> None:
            refuse_non_finite(values)
            given = {name: values.pop(name) for name in options}
            if "settings" in given:
                given["settings"] = tuple(given["settings"] or ())
            run_options = RunOptions(**given)
            if run_options.threads:
                import torch

                torch.set_num_threads(run_options.threads)
            fn(run_options, **values)

        run.__signature__ = inspect.Signature([*own, *common])  # type: ignore[attr-defined]
        run.__annotations__ = {}
        del run.__wrapped__  # typer reads the signature above, not fn's
        return run

    return decorate


def refuse_non_finite(values: dict[str, Any]) -> None:
    """NaN or infinity in any number of the command line is a one-line error: no flag means
    either, and a run would only meet them as a NaN loss or an empty render much later."""
    for name, value in values.items():
        numbers = value if isinstance(value, (tuple, list)) else (value,)
        for number in numbers:
            if isinstance(number, float) and not math.isfinite(number):
                flag = "--" + name.replace("_", "-")
                raise DreamliftError(f"{flag} must be a finite number, got {number}")


def stage_progress(bar: Any) -> Callable[[str, int, int, float], None]:
    """``progress(stage, done, total, loss)`` drawing one bar per stage of ``bar`` (a rich
    Progress with a ``status`` field, :func:`dreamlift.loop.progress_bar`), the loss beside it."""
    tasks: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int, loss: float) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total, status="")
        bar.update(tasks[stage], completed=done, status=f"loss {loss:.4f}")

    return progress


def report(done: str, result: dict[str, Any]) -> None:
    """The end of a run on stderr: its float metrics, output files, warnings and notes."""
    metrics = result.get("metrics", {})
    shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))
    console.print(
        Text.assemble(("done", "bold green"), f" {done}" + (f": {shown}" if shown else ""))
    )
    outputs = result.get("outputs", {})
    width = max((len(name) for name in outputs), default=0)
    for name, path in outputs.items():
        console.print(f"  {name:{width}s} {path}", highlight=False, markup=False)
    for warning in result.get("warnings", []):
        notice("warning:", warning)
    for note in result.get("notes", []):
        console.print(f"  note: {note}", highlight=False, markup=False, soft_wrap=True)


def notice(label: str, message: str) -> None:
    """``label`` (highlighted) and ``message`` as one line on stderr."""
    console.print(Text.assemble((label, "yellow"), f" {message}"), soft_wrap=True)


def request_from_options(
    request_cls: type, preset_config: Callable[[str], Any], options: Any, flags: dict[str, Any]
) -> Any:
    """A method's request (a dataclass whose ``config`` field holds the method's settings)
    from the command's flags, ``--config`` and ``--set`` on top of the chosen preset, or,
    with ``--resume``, the run's saved request with them laid over it. ``--seed`` and
    ``--device`` are settings of the config group."""
    from dataclasses import asdict

    from dreamlift.io.run import to_plain
    from dreamlift.methods.common.config import config_from_values, merge
    from dreamlift.methods.common.folders import resume_config

    values = options.overrides(flags)
    for key in ("seed", "device"):
        if key in values:
            values.setdefault("config", {})[key] = values.pop(key)
    if options.resume and (options.out / "config.yaml").is_file():
        return resume_config(request_cls, options.out, values)
    config = dict(values.pop("config", None) or {})
    base = to_plain(asdict(preset_config(str(config.get("preset") or "fast"))))
    return config_from_values(request_cls, {**values, "config": merge(base, config)})
