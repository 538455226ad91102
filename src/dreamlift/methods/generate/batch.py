"""``generate`` over a prompts file: one run per line into ``OUT/<nn>-<slug>``, the prior
loaded once, a line that fails reported and skipped, the table in ``OUT/batch.json``.

With ``batch_size`` B > 1 the lines' runs are trained B at a time in lockstep, one guidance
call a step for all of them (:mod:`~dreamlift.methods.generate.batch_step`); each run still
writes its own folder (checkpoint, turntables, 3D file, scores, summary). The runs of a
group commit their checkpoints together (``OUT/batch-NN.json`` is the group's manifest,
:class:`~dreamlift.checkpointing.TwoPhaseCommit`), so ``--resume`` after a SIGKILL continues
the group from one step, as if it had not stopped. A run that converges leaves the group;
the others go on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamlift.checkpointing import TwoPhaseCommit
from dreamlift.errors import DataError, DreamliftError, ModelError
from dreamlift.loop import Interrupted, optimize_members
from dreamlift.methods.common.folders import open_run, run_marker
from dreamlift.methods.generate.batch_step import (
    BatchTextTo3D,
    check_batchable,
    check_single_view,
)
from dreamlift.methods.generate.config import GenerateConfig
from dreamlift.methods.generate.run import (
    PreparedRun,
    finish_run,
    generate,
    load_prior,
    prepare_run,
)
from dreamlift.methods.generate.timing import timing_prior
from dreamlift.priors import DiffusionPrior
from dreamlift.utils.timing import SectionTimer

HEADLINE = ("silhouette_iou", "colour_error", "shape_winner", "clip_similarity")
"""The metrics a batch row keeps."""


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


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "prompt"


def generate_batch(
    path: Path,
    out: Path,
    configure: Callable[[str], GenerateConfig],
    quiet: bool,
    failed: Callable[[int, DreamliftError], None],
    batch_size: int = 1,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """One run per prompt of ``path`` with the config ``configure(prompt)``, ``batch_size``
    at a time; a user error of one line is passed to ``failed`` and the batch goes on,
    except a missing prior or a stop by the user, which no later line would fare better
    with. With ``resume``, finished runs are kept and the others continue."""
    rows: list[dict[str, Any]] = []
    lines: list[Line] = []
    for number, text in read_prompts(path):
        folder = out / f"{number:03d}-{slug(text)}"
        row: dict[str, Any] = {"line": number, "prompt": text, "out": str(folder)}
        rows.append(row)
        try:
            lines.append(Line(row, configure(text), folder))
        except DreamliftError as exc:
            _failed(row, exc, failed)
    loaded: list[DiffusionPrior] = []

    def prior_for(cfg: GenerateConfig) -> DiffusionPrior:
        """The prior, loaded for the first line that gets this far (a toy prior checks that
        line's prompt first, so a bad first caption fails its line, not the batch)."""
        if not loaded:
            loaded.append(load_prior(cfg))
        return loaded[0]

    for index, group in enumerate(_groups(lines, batch_size)):
        todo = [line for line in group if not (resume and _finished(line))]
        if batch_size == 1 and todo:
            _one(todo[0], prior_for, quiet, resume, failed)
        elif todo:
            _together(todo, out / f"batch-{index:02d}.json", prior_for, quiet, resume, failed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


@dataclass
class Line:
    """One line of the prompts file with its config, run folder and table row."""

    row: dict[str, Any]
    cfg: GenerateConfig
    folder: Path


def _groups(lines: list[Line], size: int) -> list[list[Line]]:
    return [lines[i : i + size] for i in range(0, len(lines), size)]


def _finished(line: Line) -> bool:
    """A finished run (its summary written) is kept as it is: its row is read back."""
    try:
        summary = json.loads((line.folder / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    _ok(line.row, summary.get("metrics", {}))
    return True


def _ok(row: dict[str, Any], metrics: dict[str, Any]) -> None:
    row.update(status="ok", **{k: metrics[k] for k in HEADLINE if k in metrics})


def _failed(
    row: dict[str, Any], exc: DreamliftError, failed: Callable[[int, DreamliftError], None]
) -> None:
    if isinstance(exc, ModelError | Interrupted):
        raise exc
    failed(row["line"], exc)
    row.update(status="error", error=str(exc))


PriorFor = Callable[[GenerateConfig], DiffusionPrior]


def _one(
    line: Line,
    prior_for: PriorFor,
    quiet: bool,
    resume: bool,
    failed: Callable[[int, DreamliftError], None],
) -> None:
    try:
        has_run = resume and run_marker(line.folder) is not None
        open_run(line.folder, line.cfg, has_run)  # an existing run is refused first
        prior = prior_for(line.cfg)
        result = generate(line.cfg, line.folder, resume=has_run, quiet=quiet, prior=prior)
        _ok(line.row, result["metrics"])
    except DreamliftError as exc:
        _failed(line.row, exc, failed)


def _together(
    group: list[Line],
    manifest: Path,
    prior_for: PriorFor,
    quiet: bool,
    resume: bool,
    failed: Callable[[int, DreamliftError], None],
) -> None:
    """Train the runs of ``group`` in lockstep, then write each one's outputs."""
    try:  # settings that cannot share a call are refused before any folder is made
        check_batchable([line.cfg for line in group])
    except DreamliftError as exc:
        for line in group:
            _failed(line.row, exc, failed)
        return
    timer = SectionTimer()
    prepared: list[tuple[Line, PreparedRun]] = []
    for line in group:
        try:
            run = open_run(line.folder, line.cfg, resume)
            prepared.append((line, prepare_run(line.cfg, run, prior_for(line.cfg), timer)))
        except DreamliftError as exc:
            _failed(line.row, exc, failed)
    if not prepared:
        return
    runs = [p for _, p in prepared]
    prior = runs[0].prior
    try:
        check_single_view(prior.num_views)
    except DreamliftError as exc:
        for line, _ in prepared:
            _failed(line.row, exc, failed)
        return
    if not resume:
        manifest.unlink(missing_ok=True)  # an earlier batch's, whose runs were refused above
    first = runs[0].cfg
    # The guidance's draws are the batch's: the first run's generator, seeded as a run's own,
    # which every run holds and checkpoints as its "guidance" generator (so each also
    # resumes alone).
    step = BatchTextTo3D([p.step_loss for p in runs], timer)
    shared = step.generator
    for p in runs[1:]:
        p.generators["guidance"] = p.step_loss.guidance_gen = shared
    with timing_prior(timer, prior):
        results = optimize_members(
            [p.member() for p in runs],
            step,
            runs[0].settings(quiet),
            resume,
            description=f"generate {first.guidance} ×{len(runs)}",
            backward=step.backward,
            sync=runs[0].sync,
            commit=TwoPhaseCommit(manifest, {"guidance": shared}),
        )
    batch = {"size": len(runs), "manifest": str(manifest), "runs": [str(p.run.path) for p in runs]}
    for (line, p), result in zip(prepared, results, strict=True):
        try:
            summary = finish_run(p, result, timer.seconds, batch=batch)
            _ok(line.row, summary["metrics"])
        except DreamliftError as exc:
            _failed(line.row, exc, failed)
