"""Runs in stages and runs that start from other runs: a two-stage run cut anywhere resumes bit
for bit with its extra state; load_field reads any run's field; the loop's step convention and
its stop on persistent non-finite guidance."""

import json

import pytest
import torch

from dreamlift.cameras import orbit_cameras
from dreamlift.errors import TrainingError
from dreamlift.fields.nerf import NerfConfig, NerfField
from dreamlift.io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from dreamlift.io.run import RunDir
from dreamlift.loop import LoopSettings, checkpoint_path, optimize
from dreamlift.stages import Stage, load_field, run_checkpoints, run_stages

CAMS = orbit_cameras(torch.tensor([0.0, 120.0]), torch.tensor([15.0, 25.0]), 2.7, 40.0, 10)


class Cut(Exception):
    """Stands for a SIGKILL: the process dies between steps, after the last checkpoint."""


def _field() -> NerfField:
    config = NerfConfig(resolutions=((0, 8), (4, 10)), samples_per_ray=12)
    return NerfField(config, torch.Generator().manual_seed(0))


def _stages(fld: NerfField, cut_at: tuple[str, int] | None = None) -> list[Stage]:
    """A Perturb-and-Revise-shaped pair: a probe that records its losses, then a revise
    stage that picks η from them, perturbs the geometry and optimises with random targets."""

    def probe(f, state):
        state.setdefault("losses", [])

        def step_loss(step):
            if cut_at == ("probe", step):
                raise Cut
            out = f.render(CAMS, torch.ones(3))
            loss = (out["rgb"] - 0.4).square().mean()
            state["losses"].append(float(loss.detach()))
            return loss, {}, out

        return step_loss

    def begin_revise(f, state, gens):
        if cut_at == ("revise-begin", 0):
            raise Cut
        drop = state["losses"][0] - state["losses"][-1]
        state["eta"] = round(min(0.6, 0.3 + drop), 6)
        f.interpolate_toward(f.fresh_like(gens["noise"]), state["eta"], roles=["geometry"])

    def revise(f, state):
        f.set_densification(None)

        def step_loss(step):
            if cut_at == ("revise", step):
                raise Cut
            target = torch.rand(3, generator=gens["noise"])
            out = f.render(CAMS, torch.ones(3))
            return (out["rgb"] - target).square().mean(), {"eta": state["eta"]}, out

        return step_loss

    gens = GENERATORS[id(fld)]
    return [
        Stage("probe", 5, probe, description="probe"),
        Stage("revise", 7, revise, begin=begin_revise, carry_optimizer=True),
    ]


GENERATORS: dict[int, dict[str, torch.Generator]] = {}


def _run(out, cut_at=None, resume=False):
    fld = _field()
    gens = {"noise": torch.Generator().manual_seed(3)}
    GENERATORS[id(fld)] = gens
    run = RunDir(out).prepare()
    settings = LoopSettings(steps=0, kind="test", checkpoint_every=2, log_every=1, quiet=True)
    state: dict = {}
    result = run_stages(fld, _stages(fld, cut_at), run, gens, resume, settings, state)
    return fld, result


def _tensors(fld):
    return {k: v.clone() for k, v in fld.state_tensors().items()}


@pytest.mark.parametrize(
    "cut_at", [("revise", 5), ("revise-begin", 0), ("probe", 3)], ids=["mid", "boundary", "first"]
)
def test_two_stage_run_cut_anywhere_resumes_bit_exact_with_its_state(tmp_path, cut_at):
    whole, whole_result = _run(tmp_path / "whole")
    with pytest.raises(Cut):
        _run(tmp_path / "cut", cut_at=cut_at)
    resumed, resumed_result = _run(tmp_path / "cut", resume=True)

    expected, got = _tensors(whole), _tensors(resumed)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert resumed_result.state == whole_result.state and "eta" in resumed_result.state
    if cut_at[0] != "probe":
        assert resumed_result.skipped == ["probe"]
    for name in ("probe", "revise"):  # each stage's own checkpoint, step and extra state
        a = load_checkpoint(tmp_path / "whole" / f"checkpoint-{name}.safetensors")
        b = load_checkpoint(tmp_path / "cut" / f"checkpoint-{name}.safetensors")
        assert a.step == b.step and a.extra == b.extra and a.stage == name
    records = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in records] == [("probe", s) for s in range(1, 6)] + [
        ("revise", s) for s in range(1, 8)
    ]


def test_a_complete_staged_run_resumes_to_the_same_result(tmp_path):
    first, _ = _run(tmp_path / "r")
    again, result = _run(tmp_path / "r", resume=True)
    assert all(
        torch.equal(a, b)
        for a, b in zip(_tensors(first).values(), _tensors(again).values(), strict=True)
    )
    assert result.results["revise"].steps_done == result.results["revise"].resumed_from == 7


def test_load_field_reads_the_last_stage_without_the_methods_config(tmp_path):
    fld, _ = _run(tmp_path / "r")
    assert [p.name for p in run_checkpoints(tmp_path / "r")] == [
        "checkpoint-probe.safetensors",
        "checkpoint-revise.safetensors",
    ]
    loaded = load_field(tmp_path / "r")
    assert isinstance(loaded, NerfField) and loaded.config == fld.config
    assert loaded.resolution == 10
    assert all(
        torch.equal(a, b)
        for a, b in zip(_tensors(fld).values(), _tensors(loaded).values(), strict=True)
    )


def test_load_field_reads_checkpoints_written_before_they_carried_the_field(tmp_path):
    """Older checkpoints: kind from the run kind's suffix, config from config.yaml."""
    config = NerfConfig(resolutions=((0, 6),), samples_per_ray=20, sparsity=0.5)
    fld = NerfField(config, torch.Generator().manual_seed(1))
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.yaml").write_text(
        "prompt: a red cube\nnerf:\n  resolutions: [[0, 6]]\n"
        "  samples_per_ray: 20\n  sparsity: 0.5\n"
    )
    save_checkpoint(
        run / "checkpoint.safetensors",
        Checkpoint(
            3, "generate/nerf", fld.state_tensors(), fld.make_optimizer().state_dict(), {}, {}
        ),
    )
    loaded = load_field(run)
    assert loaded.config == config
    assert torch.equal(loaded.density_grid, fld.density_grid)


def test_loop_counts_steps_from_one_and_round_trips_extra_state(tmp_path):
    fld = _field()
    run = RunDir(tmp_path / "r").prepare()
    settings = LoopSettings(steps=4, kind="test/nerf", checkpoint_every=2, log_every=1, quiet=True)
    state = {"chosen": 0.25}

    def step_loss(step):
        state["seen"] = step
        return fld.density_grid.square().mean() + fld.color_grid.mean() ** 2, {}, {}

    optimize(fld, step_loss, run, settings, {}, resume=False, state=state)
    records = [json.loads(x) for x in run.metrics_path.read_text().splitlines()]
    ckpt = load_checkpoint(checkpoint_path(run))
    assert [r["step"] for r in records] == [1, 2, 3, 4] and ckpt.step == 4
    assert ckpt.extra == {"chosen": 0.25, "seen": 3}
    assert ckpt.field_kind == "nerf" and ckpt.field_config["samples_per_ray"] == 12
    restored: dict = {}
    optimize(fld, step_loss, run, settings, {}, resume=True, state=restored)
    assert restored == {"chosen": 0.25, "seen": 3}


def test_persistent_non_finite_guidance_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    fld = _field()
    run = RunDir(tmp_path / "r").prepare()
    settings = LoopSettings(steps=20, kind="t", checkpoint_every=2, log_every=1, quiet=True)
    bad_steps = {3, 6, 7, 8, 9}  # one isolated bad step is tolerated, three in a row are not

    def step_loss(step):
        loss = fld.density_grid.square().mean() + fld.color_grid.mean() ** 2
        return loss, {"info_nonfinite_grad": 12.0 if step in bad_steps else 0.0}, {}

    with pytest.raises(TrainingError, match="for 3 consecutive step") as err:
        optimize(fld, step_loss, run, settings, {}, resume=False)
    assert "at step 9" in str(err.value) and "(step 8)" in str(err.value)
    assert load_checkpoint(checkpoint_path(run)).step == 8
