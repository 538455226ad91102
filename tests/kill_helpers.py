"""SIGKILL a training run at random moments and resume it: the README's promise that
``--resume`` after a kill reproduces the uninterrupted run bit for bit."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from dreamlift.errors import CheckpointError
from dreamlift.io.checkpoint import read_metadata

PROCESS_SETUP = "from dreamlift.utils.process import configure_process; configure_process(); "
"""What every dreamlift process does first (as the command line's ``main`` does), so that a
script's run computes what the command would, and what the in-process runs of the suite
(conftest) compute: the flush of subnormals changes the last bits of a run."""


def python_script(script: str) -> list[str]:
    """The command line of ``python -c script`` in a process set up as dreamlift's are."""
    return [sys.executable, "-c", PROCESS_SETUP + script]


def checkpoint_progress(out: Path) -> tuple[int, int] | None:
    """(stage index, step) of the newest checkpoint in the run folder ``out``; None before
    the first."""
    marks = []
    for path in Path(out).glob("checkpoint*.safetensors"):
        try:
            meta = read_metadata(path)
        except CheckpointError:
            continue
        marks.append((int(meta.get("stage_index", "0")), int(meta["step"])))
    return max(marks, default=None)


def kill_at_random_moments(
    script: str, out: Path, kills: int, seed: int, env: dict[str, str], timeout_s: float = 120
) -> list[tuple[int, int] | None]:
    """Run ``python -c script`` (which starts or resumes the run in ``out``) and SIGKILL it at
    a random moment after it has written one to three newer checkpoints, ``kills`` times; the
    checkpoint each kill left."""
    rng = random.Random(seed)
    left = []
    for _ in range(kills):
        seen = [checkpoint_progress(out)]
        wanted = rng.randint(1, 3)  # newer checkpoints to wait for: the kills land at random steps
        proc = subprocess.Popen(python_script(script), env=env)
        deadline = time.time() + timeout_s
        while time.time() < deadline and proc.poll() is None and len(seen) <= wanted:
            now = checkpoint_progress(out)
            if now is not None and now != seen[-1]:
                seen.append(now)
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.2))  # between checkpoints, or in the middle of one
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
        left.append(checkpoint_progress(out))
    return left


def run_to_the_end(script: str, env: dict[str, str], timeout_s: float = 300) -> None:
    """Run ``python -c script`` to its end (the uninterrupted run, or the last resume): in a
    fresh process like the killed ones, so the comparison is process against process, as a
    user's runs are."""
    subprocess.run(python_script(script), env=env, check=True, timeout=timeout_s)


def assert_same_tensors(a: Path, b: Path) -> None:
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    differ = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not differ, f"tensors differ from the uninterrupted run: {differ}"


def generate_cut_at_step(monkeypatch, cfg, out: Path, step: int = 4) -> None:
    """``generate`` into ``out`` as if killed when step ``step`` begins: the in-process form
    of a SIGKILL (a KeyboardInterrupt raised in that step), the checkpoint written before it
    left on disk for ``--resume``."""
    import pytest

    from dreamlift.methods import generate as gen

    original = gen.TextTo3D.__call__

    def dies_at_the_step(self, at):
        if at == step:
            raise KeyboardInterrupt
        return original(self, at)

    monkeypatch.setattr(gen.TextTo3D, "__call__", dies_at_the_step)
    with pytest.raises(KeyboardInterrupt):
        gen.generate(cfg, out, quiet=True)
    monkeypatch.setattr(gen.TextTo3D, "__call__", original)
