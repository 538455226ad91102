"""``generate --prompts FILE --ray [ADDRESS]``: one Ray task per prompt, on a local Ray (one
worker per CPU by default) or an existing cluster, gathered into the same table and
``OUT/batch.json`` as the one-process batch.

A task asks for ``cpus`` CPUs (and ``gpus`` GPUs) and runs its prompt with torch at that
many threads. It always runs with ``resume``: a task that Ray retries after its worker died
(killed, out of memory, a node lost) continues from the run's last checkpoint instead of
starting over, and because resuming is bit-exact the retried run ends as an uninterrupted
one would. A user error in one prompt is that prompt's row, as in the one-process batch;
the run folders must be reachable by every worker (one machine, or a shared file system).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dreamlift.errors import DreamliftError
from dreamlift.io.run import to_plain
from dreamlift.methods.generate.batch import HEADLINE, read_prompts, slug
from dreamlift.methods.generate.config import GenerateConfig

MAX_RETRIES = 3
"""Times Ray restarts a task whose worker died (each restart resumes its checkpoint)."""


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise DreamliftError(
            "--ray needs Ray, which is not installed", "pip install 'dreamlift[ray]'"
        ) from None
    return ray


_PRIORS: dict[tuple[str, str], Any] = {}
"""The priors a worker has loaded, by (name, device): a worker's later tasks reuse them, as
the one-process batch reuses its one prior."""


def run_prompt(values: dict[str, Any], folder: str, threads: int) -> dict[str, Any]:
    """One prompt's run, in a Ray worker: the row's metrics, or its one-line error."""
    import torch

    from dreamlift.methods.generate.config import config_from_dict
    from dreamlift.methods.generate.run import generate, load_prior
    from dreamlift.utils.process import configure_process

    configure_process()  # as the command line does (dreamlift.cli.app.main)
    torch.set_num_threads(threads)
    try:
        cfg = config_from_dict(values)
        key = (cfg.prior, cfg.device)
        if key not in _PRIORS:
            _PRIORS[key] = load_prior(cfg)
        result = generate(cfg, Path(folder), resume=True, quiet=True, prior=_PRIORS[key])
    except DreamliftError as exc:
        return {"status": "error", "error": str(exc)}
    metrics = result["metrics"]
    return {"status": "ok", **{k: metrics[k] for k in HEADLINE if k in metrics}}


def generate_on_ray(
    path: Path,
    out: Path,
    configure: Callable[[str], GenerateConfig],
    failed: Callable[[int, DreamliftError], None],
    address: str | None = None,
    cpus: int = 1,
    gpus: float = 0.0,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every prompt of ``path`` as a Ray task (``address``: None or "local" starts a local
    Ray, anything else joins that cluster); the rows in the file's order."""
    ray = require_ray()
    rows: dict[int, dict[str, Any]] = {}
    jobs: list[tuple[int, dict[str, Any], str]] = []
    for number, text in read_prompts(path):
        folder = out / f"{number:03d}-{slug(text)}"
        rows[number] = {"line": number, "prompt": text, "out": str(folder)}
        try:
            values = to_plain(configure(text))
        except DreamliftError as exc:  # a bad line is reported before any task starts
            failed(number, exc)
            rows[number].update(status="error", error=str(exc))
            continue
        jobs.append((number, values, str(folder.resolve())))
    out.mkdir(parents=True, exist_ok=True)
    local = address in (None, "", "local")
    started_here = not ray.is_initialized()
    if started_here:
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        ray.init(
            address=None if local else address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=MAX_RETRIES)(run_prompt)
        pending = {task.remote(values, folder, cpus): number for number, values, folder in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            number = pending.pop(done[0])
            try:
                rows[number].update(ray.get(done[0]))
            except ray.exceptions.RayError as exc:  # retries spent, or the cluster is gone
                message = str(exc).strip().splitlines()[-1][:200]
                rows[number].update(status="error", error=f"the task failed: {message}")
            if rows[number]["status"] == "error":
                failed(number, DreamliftError(rows[number]["error"]))
            if on_done is not None:
                on_done(rows[number])
    finally:
        if started_here:
            ray.shutdown()
    ordered = [rows[n] for n in sorted(rows)]
    (out / "batch.json").write_text(json.dumps(ordered, indent=2) + "\n")
    return ordered
