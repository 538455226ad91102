"""A generic, resumable trainer for the zoo's models.

A recipe (see :mod:`dreamlift.zoo.recipes`) supplies modules and a loss; the trainer owns
the rest: AdamW with linear warm-up, gradient clipping, an exponential moving average (EMA)
of the weights, periodic atomic checkpoints (module weights, EMA weights, optimiser moments,
the random generator and the step) so that a resumed run continues bit-exactly, a progress
bar with ETA (plain log lines when not on a terminal, so ``nohup … &`` logs stay readable),
a checkpoint at the end of the current step on Ctrl-C / SIGTERM, a stop on a non-finite loss
that keeps the last good checkpoint, and ``metrics.jsonl`` in the work dir.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from rich.console import Console
from torch import Tensor, nn

from dreamlift.errors import TrainingError
from dreamlift.io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from dreamlift.loop import Interrupted, StopRequests, progress_bar
from dreamlift.utils.numerics import flush_denormals

CHECKPOINT_NAME = "checkpoint.safetensors"
METRICS_NAME = "metrics.jsonl"


@dataclass(frozen=True)
class TrainerConfig:
    """Optimisation settings shared by every recipe.

    The defaults are the toy prior's recipe as a feasibility run before this project measured
    it: AdamW 1e-3 with a 200-step warm-up (the first steps of a fresh UNet have huge
    gradients), EMA 0.999 (the exported weights; samples from raw weights are noisier),
    gradient clipping at 1.
    """

    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 200
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    checkpoint_every: int = 200  # steps; ~a few minutes of CPU time at the fast sizes
    log_every: int = 10
    seed: int = 0
    lr_scale: tuple[tuple[str, float], ...] = ()
    """(module name, factor) pairs: a new module beside a trained one may learn faster."""
    schedule: str = "constant"
    """After the warm-up: ``constant``, or ``cosine`` (half a cosine from ``lr`` down to
    ``final_lr`` × ``lr`` at the last step; annealing, SGDR's schedule, arXiv:1608.03983)."""
    final_lr: float = 0.05

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown lr schedule {self.schedule!r} (constant, cosine)")

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based)."""
        if self.schedule == "constant":  # the expression every earlier training used
            return self.lr * min(1.0, (step + 1) / self.warmup) if self.warmup > 0 else self.lr
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        done = min(1.0, (step - self.warmup) / max(1, self.steps - self.warmup))
        return self.lr * (
            self.final_lr + (1 - self.final_lr) * 0.5 * (1 + math.cos(math.pi * done))
        )

    @classmethod
    def tiny(cls, steps: int) -> TrainerConfig:
        """Test settings of every recipe's ``tiny`` size: a one-step warm-up, a checkpoint
        and a log line every step."""
        return cls(steps=steps, warmup=1, checkpoint_every=1, log_every=1)


class Task(Protocol):
    """What a recipe gives the trainer: trainable modules and a loss on a random batch."""

    kind: str  # checkpoint kind: a checkpoint only resumes the same kind of run

    def modules(self) -> dict[str, nn.Module]: ...

    def loss(self, step: int, gen: torch.Generator) -> tuple[Tensor, dict[str, float]]: ...


@dataclass
class TrainResult:
    steps_done: int
    resumed_from: int
    seconds: float
    last_loss: float | None


def cache_root() -> Path:
    """``$DREAMLIFT_CACHE`` or ``~/.cache/dreamlift``."""
    env = os.environ.get("DREAMLIFT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dreamlift"


def default_workdir(name: str) -> Path:
    return cache_root() / "zoo" / name


class EMA:
    """Float copies of every parameter and buffer, updated with a warmed-up decay.

    The warm-up ``min(decay, (1 + n) / (10 + n))`` keeps short runs from exporting weights
    dominated by the random initialisation.
    """

    def __init__(self, modules: dict[str, nn.Module], decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in _state_tensors(modules).items()}

    @torch.no_grad()
    def update(self, modules: dict[str, nn.Module], step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in _state_tensors(modules).items():
            s = self.shadow[k]
            if v.is_floating_point():
                s.mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                s.copy_(v)

    def copy_to(self, modules: dict[str, nn.Module]) -> None:
        _load_state_tensors(modules, self.shadow)


def _state_tensors(modules: dict[str, nn.Module]) -> dict[str, Tensor]:
    return {f"{m}.{k}": v for m, mod in modules.items() for k, v in mod.state_dict().items()}


def _load_state_tensors(modules: dict[str, nn.Module], tensors: dict[str, Tensor]) -> None:
    for m, mod in modules.items():
        prefix = f"{m}."
        own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        mod.load_state_dict(own, strict=True)


def _trainable(modules: dict[str, nn.Module]) -> list[nn.Parameter]:
    return [p for mod in modules.values() for p in mod.parameters() if p.requires_grad]


def _param_groups(modules: dict[str, nn.Module], config: TrainerConfig) -> list[dict]:
    """One optimiser group per module, each with its ``lr_scale`` factor (default 1).

    Without factors it is one group, as checkpoints written before ``lr_scale`` hold.
    """
    scales = dict(config.lr_scale)
    if not scales:
        return [{"params": _trainable(modules), "lr_scale": 1.0}]
    unknown = set(scales) - set(modules)
    if unknown:
        raise ValueError(f"lr_scale names unknown module(s): {', '.join(sorted(unknown))}")
    groups = []
    for name, mod in modules.items():
        params = [p for p in mod.parameters() if p.requires_grad]
        if params:
            groups.append({"params": params, "lr_scale": scales.get(name, 1.0)})
    return groups


class Trainer:
    """Runs a :class:`Task` in ``workdir`` (created), resuming from its checkpoint if any."""

    def __init__(self, task: Task, config: TrainerConfig, workdir: Path, quiet: bool = False):
        self.task = task
        self.config = config
        self.workdir = Path(workdir)
        self.quiet = quiet
        self.modules = task.modules()
        self.params = _trainable(self.modules)
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.modules, config),
            lr=config.lr,
            betas=config.betas,
            weight_decay=config.weight_decay,
        )
        self.ema = EMA(self.modules, config.ema_decay)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.step = 0

    @property
    def checkpoint_path(self) -> Path:
        return self.workdir / CHECKPOINT_NAME

    @property
    def metrics_path(self) -> Path:
        return self.workdir / METRICS_NAME

    # ------------------------------------------------------------------ state
    def save(self, extra: dict | None = None) -> None:
        tensors = _state_tensors(self.modules)
        tensors.update({f"ema/{k}": v for k, v in self.ema.shadow.items()})
        save_checkpoint(
            self.checkpoint_path,
            Checkpoint(
                step=self.step,
                kind=self.task.kind,
                field=tensors,
                optimizer=self.optimizer.state_dict(),
                generators={"batch": self.gen.get_state()},
                extra=extra or {},
            ),
        )

    def restore(self) -> bool:
        """Load the work dir's checkpoint if there is one; returns whether it did."""
        if not self.checkpoint_path.exists():
            return False
        ckpt = load_checkpoint(self.checkpoint_path, expected_kind=self.task.kind)
        weights = {k: v for k, v in ckpt.field.items() if not k.startswith("ema/")}
        ema = {k[4:]: v for k, v in ckpt.field.items() if k.startswith("ema/")}
        try:
            _load_state_tensors(self.modules, weights)
            self.ema.shadow = {k: ema[k].clone() for k in self.ema.shadow}
            self.optimizer.load_state_dict(ckpt.optimizer)
            self.gen.set_state(ckpt.generators["batch"])
        except (KeyError, ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else "mismatch"
            raise TrainingError(
                f"checkpoint {self.checkpoint_path} does not match this recipe's sizes ({first})",
                "delete the work dir to start over",
            ) from None
        self.step = ckpt.step
        return True

    def ema_modules(self) -> dict[str, nn.Module]:
        """The modules holding the EMA weights (the trainer's copies are overwritten)."""
        self.ema.copy_to(self.modules)
        return self.modules

    # ------------------------------------------------------------------ loop
    def _truncate_metrics(self) -> None:
        if not self.metrics_path.exists():
            return
        keep = [
            line
            for line in self.metrics_path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= self.step
        ]
        self.metrics_path.write_text("".join(line + "\n" for line in keep))

    def _log(self, record: dict) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def run(self, steps: int | None = None, description: str = "training") -> TrainResult:
        """Train until step ``steps`` (default: the config's), resuming when possible.

        Raises :class:`Interrupted` after a checkpoint on Ctrl-C / SIGTERM, and
        :class:`TrainingError` on a non-finite loss (the last good checkpoint is kept).
        """
        total = self.config.steps if steps is None else steps
        with flush_denormals():  # subnormals are ~20x slower on CPUs (utils/numerics.py)
            return self._run(total, description)

    def _run(self, total: int, description: str) -> TrainResult:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for mod in self.modules.values():
            mod.train()
        if self.step == 0:
            self.restore()
        resumed = self.step
        self._truncate_metrics()
        t_start = time.perf_counter()
        last_loss: float | None = None
        console = Console(stderr=True)
        live = console.is_terminal and not self.quiet
        last_print = time.monotonic()
        with StopRequests() as stop, progress_bar(console, disable=not live) as bar:
            task = bar.add_task(description, total=total, completed=self.step, status="")
            while self.step < total:
                t0 = time.perf_counter()
                lr = self.config.lr_at(self.step)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr * group["lr_scale"]
                loss, logs = self.task.loss(self.step, self.gen)
                value = float(loss.detach())
                if not math.isfinite(value):
                    saved = self._saved_step()
                    kept = f"the checkpoint of step {saved} is kept" if saved else "no checkpoint"
                    raise TrainingError(
                        f"non-finite loss ({value}) at step {self.step}; {kept}",
                        "lower the learning rate or resume from the checkpoint",
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
                self.optimizer.step()
                self.ema.update(self.modules, self.step)
                self.step += 1
                last_loss = value
                dt = time.perf_counter() - t0
                if self.step % self.config.log_every == 0 or self.step == total:
                    record = {
                        "step": self.step,
                        "loss": value,
                        "lr": lr,
                        "grad_norm": float(norm),
                        "step_s": dt,
                        **logs,
                    }
                    self._log(record)
                    bar.update(task, status=f"loss {value:.4f}")
                    if not live and not self.quiet and time.monotonic() - last_print > 30:
                        last_print = time.monotonic()
                        console.print(
                            f"{description}: step {self.step}/{total} loss {value:.4f}"
                            f" {dt:.2f} s/step",
                            highlight=False,
                        )
                bar.update(task, completed=self.step)
                due = self.step % self.config.checkpoint_every == 0 or self.step == total
                if due or stop.requested:
                    self.save()
                if stop.requested:
                    raise Interrupted(
                        f"stopped at step {self.step}; a checkpoint was written",
                        "rerun the same command to continue",
                    )
        return TrainResult(self.step, resumed, time.perf_counter() - t_start, last_loss)

    def _saved_step(self) -> int | None:
        if not self.checkpoint_path.exists():
            return None
        from safetensors import safe_open

        with safe_open(str(self.checkpoint_path), framework="pt") as f:
            return int((f.metadata() or {}).get("step", 0))
