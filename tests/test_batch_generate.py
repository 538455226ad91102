"""``generate --prompts FILE --batch B``: runs trained in lockstep with one guidance call a
step, each with its own folder, checkpoint and outputs, committed together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dreamlift.checkpointing import DirectCommit, SaveRequest, TwoPhaseCommit
from dreamlift.errors import ConfigError, TrainingError
from dreamlift.fields.gaussians import GaussianField, GaussiansConfig
from dreamlift.guidance import GuidanceInput, make_guidance
from dreamlift.io.checkpoint import read_metadata
from dreamlift.io.run import RunDir
from dreamlift.loop import LoopSettings, Member, optimize_members
from dreamlift.methods.generate import build_config
from dreamlift.methods.generate.batch import generate_batch
from dreamlift.methods.generate.batch_step import check_batchable, check_single_view
from dreamlift.priors import DiffusionPrior

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "DREAMLIFT_ZOO_DIR": "/nonexistent-zoo"}
SMALL = {
    "turntable_frames": 4,
    "turntable_size": 32,
    "score": False,
    "log_every": 1,
    "gaussians": {"num_init": 300},
}


def _configure(prior: Path, **settings):
    def configure(text: str):
        return build_config("fast", prompt=text, prior=str(prior), **{**SMALL, **settings})

    return configure


def _prompts(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("".join(line + "\n" for line in lines))
    return path


# ---------------------------------------------------------------------- the gradient
@pytest.mark.parametrize("name", ["sds", "ism", "ge3d"])
def test_a_run_in_a_shared_call_gets_the_gradient_of_its_own_call(tiny_world_sd, name):
    """The guidance averages over the call's views; the batch multiplies its loss by the
    number of runs, so each run's renders get what a call on its views alone gives them
    (with the same t, noise and nodes)."""
    prior = DiffusionPrior.load(tiny_world_sd, device="cpu")
    guidance = make_guidance(name)
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(1, 3, 16, 16, generator=gen).requires_grad_()
    b = torch.rand(1, 3, 16, 16, generator=gen).requires_grad_()
    prompts = ["a red cube, front view", "a green cone, side view"]
    shared = GuidanceInput(
        images=torch.cat([a, b]), prompts=prompts, step=50, total_steps=100, generator=gen
    )
    (2 * sum(guidance(prior, shared).values())).backward()
    draws = guidance.last_draws
    alone = a.detach().clone().requires_grad_()
    own = GuidanceInput(
        images=alone,
        prompts=prompts[:1],
        step=50,
        total_steps=100,
        t=None if draws.t is None else draws.t[:1],
        noise=None if draws.noise is None else draws.noise[:1],
        nodes=draws.nodes,
    )
    sum(guidance(prior, own).values()).backward()
    assert a.grad is not None and alone.grad is not None
    assert float(alone.grad.abs().max()) > 0
    torch.testing.assert_close(a.grad, alone.grad, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------- the loop
def _field(seed: int) -> GaussianField:
    return GaussianField(GaussiansConfig(num_init=64), torch.Generator().manual_seed(seed))


def _pull_to_origin(fields: list[GaussianField]):
    def step(step: int, active: list[int]):
        losses = [fields[k].means.square().sum() for k in active]
        return sum(losses), [{"pull": float(x.detach())} for x in losses], [None] * len(active)

    return step


def test_a_member_that_stops_leaves_the_others_training(tmp_path, monkeypatch):
    monkeypatch.setattr(GaussianField, "after_backward", lambda self, s, out, opt: opt)
    monkeypatch.setattr(GaussianField, "after_step", lambda self, s, opt: opt)
    fields = [_field(0), _field(1)]
    members = [
        Member(fields[0], RunDir(tmp_path / "a").prepare(), {}, until=lambda done: done >= 3),
        Member(fields[1], RunDir(tmp_path / "b").prepare(), {}),
    ]
    settings = LoopSettings(steps=6, kind="test/gaussians", checkpoint_every=100, quiet=True)
    results = optimize_members(members, _pull_to_origin(fields), settings, resume=False)
    assert [r.steps_done for r in results] == [3, 6]
    assert [r.stopped_early for r in results] == [True, False]
    for name, step in (("a", 3), ("b", 6)):
        meta = read_metadata(tmp_path / name / "checkpoint.safetensors")
        assert int(meta["step"]) == step
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        assert json.loads(lines[-1])["step"] == step


def _noisy_pull(fields: list[GaussianField], shared: torch.Generator, cut_at: int | None):
    """Each step draws from the batch's generator, one draw a training member (so who is
    still training changes the draws), and may die as a SIGKILL would at ``cut_at``."""

    def step(step: int, active: list[int]):
        if step == cut_at:
            raise KeyboardInterrupt
        losses = []
        for k in active:
            jitter = torch.randn(fields[k].means.shape, generator=shared)
            losses.append((fields[k].means - 0.1 * jitter).square().sum())
        return sum(losses), [{"pull": float(x.detach())} for x in losses], [None] * len(active)

    return step


def _train_batch(folder: Path, resume: bool, cut_at: int | None) -> None:
    fields = [_field(0), _field(1)]
    shared = torch.Generator().manual_seed(9)
    members = [  # the member that stops is restored last: its old shared state comes last
        Member(fields[0], RunDir(folder / "a").prepare(), {"guidance": shared}),
        Member(
            fields[1], RunDir(folder / "b").prepare(), {"guidance": shared}, until=lambda d: d >= 3
        ),
    ]
    settings = LoopSettings(steps=8, kind="test/gaussians", checkpoint_every=2, quiet=True)
    commit = TwoPhaseCommit(folder / "batch-00.json", {"guidance": shared})
    optimize_members(members, _noisy_pull(fields, shared, cut_at), settings, resume, commit=commit)


def test_a_batch_resumed_after_a_member_stopped_early_is_the_uninterrupted_one(
    tmp_path, monkeypatch
):
    """The member that stopped at step 3 holds an older state of the shared generator than
    the batch's last commit (step 6); the resumed batch takes the manifest's."""
    from kill_helpers import assert_same_tensors

    monkeypatch.setattr(GaussianField, "after_backward", lambda self, s, out, opt: opt)
    monkeypatch.setattr(GaussianField, "after_step", lambda self, s, opt: opt)
    _train_batch(tmp_path / "full", resume=False, cut_at=None)
    with pytest.raises(KeyboardInterrupt):
        _train_batch(tmp_path / "cut", resume=False, cut_at=7)
    assert int(read_metadata(tmp_path / "cut" / "a" / "checkpoint.safetensors")["step"]) == 6
    _train_batch(tmp_path / "cut", resume=True, cut_at=None)
    for name in "ab":
        assert_same_tensors(
            tmp_path / "full" / name / "checkpoint.safetensors",
            tmp_path / "cut" / name / "checkpoint.safetensors",
        )


def _request(tmp_path: Path, name: str, step: int, seed: int) -> SaveRequest:
    fld = _field(seed)
    return SaveRequest(
        RunDir(tmp_path / name).prepare(),
        "checkpoint.safetensors",
        "test/gaussians",
        fld,
        fld.make_optimizer(),
        {},
        step,
        {},
    )


def test_two_phase_commit_rolls_back_before_the_manifest_and_forward_after(tmp_path, monkeypatch):
    shared = torch.Generator().manual_seed(5)
    manifest = tmp_path / "batch-00.json"
    commit = TwoPhaseCommit(manifest, {"guidance": shared})
    first = [_request(tmp_path, n, 10, seed) for seed, n in enumerate("ab")]
    commit.save(first)
    state_at_10 = shared.get_state().clone()
    later = [_request(tmp_path, n, 20, seed) for seed, n in enumerate("ab")]
    torch.rand(3, generator=shared)

    def crash(*args):
        raise KeyboardInterrupt

    # killed after the members' new checkpoints, before the manifest: the old step stays
    monkeypatch.setattr("dreamlift.checkpointing.atomic_write_text", crash)
    with pytest.raises(KeyboardInterrupt):
        commit.save(later)
    monkeypatch.undo()
    paths = [r.path for r in first]
    _resume(TwoPhaseCommit(manifest, {"guidance": shared}), paths)
    assert [int(read_metadata(p)["step"]) for p in paths] == [10, 10]
    assert torch.equal(shared.get_state(), state_at_10)
    assert not list(tmp_path.glob("*/*.pending"))

    # killed after the manifest, before the renames: the new step for every member
    torch.rand(3, generator=shared)
    state_at_20 = shared.get_state().clone()
    monkeypatch.setattr(TwoPhaseCommit, "promote", crash)
    with pytest.raises(KeyboardInterrupt):
        commit.save(later)
    monkeypatch.undo()
    torch.rand(3, generator=shared)
    _resume(TwoPhaseCommit(manifest, {"guidance": shared}), paths)
    assert [int(read_metadata(p)["step"]) for p in paths] == [20, 20]
    assert torch.equal(shared.get_state(), state_at_20)


def _resume(commit: TwoPhaseCommit, paths: list[Path]) -> None:
    commit.recover(paths)
    commit.restored()


def test_a_member_changed_outside_the_batch_is_refused(tmp_path):
    shared = torch.Generator().manual_seed(5)
    commit = TwoPhaseCommit(tmp_path / "batch-00.json", {"guidance": shared})
    commit.save([_request(tmp_path, n, 10, seed) for seed, n in enumerate("ab")])
    DirectCommit().save([_request(tmp_path, "b", 12, 1)])
    with pytest.raises(TrainingError, match="step 12, but the batch committed step 10"):
        commit.recover([tmp_path / n / "checkpoint.safetensors" for n in "ab"])


# ---------------------------------------------------------------------- generate --batch
def test_batch_runs_train_together_and_each_writes_its_own_run(tmp_path, tiny_world_sd):
    prompts = _prompts(tmp_path, "a red cube", "a blue zzz", "a green cone", "a yellow torus")
    errors: list[int] = []
    out = tmp_path / "out"
    rows = generate_batch(
        prompts,
        out,
        _configure(tiny_world_sd, steps=6),
        quiet=True,
        failed=lambda n, e: errors.append(n),
        batch_size=3,
    )
    assert errors == [2]
    assert [(r["line"], r["status"]) for r in rows] == [
        (1, "ok"),
        (2, "error"),
        (3, "ok"),
        (4, "ok"),
    ]
    for row in rows[:1] + rows[2:]:
        folder = Path(row["out"])
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["metrics"]["steps_done"] == 6
        assert (folder / "gaussians.ply").is_file() and (folder / "turntable.gif").is_file()
        assert summary["batch"]["size"] == (2 if row["line"] < 4 else 1)
    manifest = json.loads((out / "batch-00.json").read_text())
    assert sorted(manifest["members"].values()) == [6, 6]
    # same seed and cameras, other captions: each run's views were guided by its own prompt
    cube = load_file(str(out / "001-a-red-cube" / "checkpoint.safetensors"))
    cone = load_file(str(out / "003-a-green-cone" / "checkpoint.safetensors"))
    assert not torch.equal(cube["field/features_dc"], cone["field/features_dc"])
    # each run also resumes on its own, from its own checkpoint
    from dreamlift.methods.generate import generate

    longer = _configure(tiny_world_sd, steps=8)("a green cone")
    result = generate(longer, out / "003-a-green-cone", resume=True, quiet=True)
    assert result["metrics"]["steps_done"] == 8
    summary = json.loads((out / "003-a-green-cone" / "summary.json").read_text())
    assert summary["resumed_from"] == 6 and "batch" not in summary


def test_a_batch_of_one_is_the_run_of_its_own(tmp_path, tiny_world_sd):
    """The batched step with one run equals generate's own step, bit for bit: the shared
    generator is seeded as a run's guidance generator, and the gradient factor is 1."""
    from kill_helpers import assert_same_tensors

    from dreamlift.methods.generate import generate

    configure = _configure(tiny_world_sd, steps=5)
    generate(configure("a red cube"), tmp_path / "alone", quiet=True)
    prompts = _prompts(tmp_path, "a red cube")
    # one line through the lockstep path (a batch size above the line count)
    generate_batch(prompts, tmp_path / "b", configure, True, lambda n, e: None, batch_size=2)
    assert_same_tensors(
        tmp_path / "alone" / "checkpoint.safetensors",
        tmp_path / "b" / "001-a-red-cube" / "checkpoint.safetensors",
    )


def test_runs_that_cannot_share_calls_are_refused(tmp_path, tiny_world_sd):
    def paper_config(text: str):
        return build_config("paper", prompt=text, prior=str(tiny_world_sd))

    prompts = _prompts(tmp_path, "a red cube", "a green cone")
    errors: list[int] = []
    out = tmp_path / "out"
    rows = generate_batch(prompts, out, paper_config, True, lambda n, e: errors.append(n), 2)
    assert errors == [1, 2] and {r["status"] for r in rows} == {"error"}
    assert "Perp-Neg" in rows[0]["error"]
    assert [p.name for p in out.iterdir()] == ["batch.json"]  # no run folder was made
    paper = paper_config("a red cube")
    with pytest.raises(ConfigError, match="Perp-Neg"):
        check_batchable([paper, paper])
    with pytest.raises(ConfigError, match="multi-view"):
        check_single_view(4)
    check_single_view(1)
    fast = _configure(tiny_world_sd)("a red cube")
    other = _configure(tiny_world_sd, steps=7)("a green cone")
    with pytest.raises(ConfigError, match="steps"):
        check_batchable([fast, other])


def _batch_script(prompts: Path, prior: Path, out: Path) -> str:
    return (
        "import torch; torch.set_num_threads(1); from pathlib import Path;"
        "from dreamlift.methods.generate import build_config;"
        "from dreamlift.methods.generate.batch import generate_batch;"
        f"small = {SMALL!r};"
        "cfg = lambda text: build_config('fast', prompt=text, "
        f"prior={str(prior)!r}, steps=40, checkpoint_every=3, **small);"
        f"generate_batch(Path({str(prompts)!r}), Path({str(out)!r}), cfg, True, "
        "lambda n, e: None, batch_size=2, resume=True)"
    )


def test_sigkill_then_resume_of_a_batch_is_bit_exact(tmp_path, tiny_world_sd):
    """SIGKILLs at random moments (between commits or inside one), each followed by a
    resume: every run's parameters equal the uninterrupted batch's."""
    from kill_helpers import assert_same_tensors, kill_at_random_moments, run_to_the_end

    prompts = _prompts(tmp_path, "a red cube", "a green cone")
    run_to_the_end(_batch_script(prompts, tiny_world_sd, tmp_path / "full"), ENV)
    out = tmp_path / "killed"
    script = _batch_script(prompts, tiny_world_sd, out)
    left = kill_at_random_moments(script, out / "001-a-red-cube", kills=2, seed=3, env=ENV)
    assert all(mark is not None and mark[1] < 40 for mark in left), left
    run_to_the_end(script, ENV)
    for run in ("001-a-red-cube", "002-a-green-cone"):
        assert_same_tensors(
            tmp_path / "full" / run / "checkpoint.safetensors",
            out / run / "checkpoint.safetensors",
        )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["a red cube", "--batch", "2"], "--batch trains the prompts of --prompts"),
        (["--prompts", "PROMPTS", "--batch", "2", "--ray"], "takes no --batch"),
    ],
)
def test_cli_batch_misuse_is_one_line_and_exit_code_2(tmp_path, args, needle):
    prompts = _prompts(tmp_path, "a red cube")
    args = [str(prompts) if a == "PROMPTS" else a for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "dreamlift", "generate", *args, "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
