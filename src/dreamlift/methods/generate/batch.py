"""``generate`` over a prompts file: one run per line into ``OUT/<nn>-<slug>``, the prior
loaded once, a line that fails reported and skipped, the table in ``OUT/batch.json``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dreamlift.errors import DataError, DreamliftError, ModelError
from dreamlift.loop import Interrupted
from dreamlift.methods.generate.config import GenerateConfig
from dreamlift.methods.generate.run import generate, load_prior

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
) -> list[dict[str, Any]]:
    """One run per prompt of ``path`` with the config ``configure(prompt)``; a user error of
    one line is passed to ``failed`` and the batch goes on, except a missing prior or a stop
    by the user, which no later line would fare better with."""
    rows: list[dict[str, Any]] = []
    prior = None
    for number, text in read_prompts(path):
        folder = out / f"{number:03d}-{slug(text)}"
        row: dict[str, Any] = {"line": number, "prompt": text, "out": str(folder)}
        try:
            cfg = configure(text)
            if prior is None:
                prior = load_prior(cfg)
            result = generate(cfg, folder, quiet=quiet, prior=prior)
            row.update(
                status="ok", **{k: result["metrics"][k] for k in HEADLINE if k in result["metrics"]}
            )
        except (ModelError, Interrupted):
            raise
        except DreamliftError as exc:
            failed(number, exc)
            row.update(status="error", error=str(exc))
        rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows
