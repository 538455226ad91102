"""Stopping at convergence: the test on a still and a moving field, and a generate run that
stops early, resumes to the same stop bit for bit, and stays stopped when resumed again."""

import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")

from kill_helpers import assert_same_tensors, generate_cut_at_step  # noqa: E402

from dreamlift.errors import ConfigError  # noqa: E402
from dreamlift.fields.gaussians import GaussianField, GaussiansConfig  # noqa: E402
from dreamlift.methods import generate as gen  # noqa: E402
from dreamlift.methods.generate.convergence import (  # noqa: E402
    ConvergenceConfig,
    ConvergenceStop,
    pack_mask,
    unpack_mask,
)

FAST = {"turntable_frames": 4, "score": False, "log_every": 1, "checkpoint_every": 3}


def ball(seed: int = 0) -> GaussianField:
    config = GaussiansConfig(num_init=400, init_mode="random", init_radius=0.5, init_opacity=0.9)
    return GaussianField(config, torch.Generator().manual_seed(seed))


def test_masks_survive_packing():
    mask = torch.rand(3, 9, 7, generator=torch.Generator().manual_seed(0)) > 0.5
    assert torch.equal(unpack_mask(pack_mask(mask), (3, 9, 7)), mask)


def test_a_still_field_converges_after_patience_checks_and_not_before_min_fraction():
    fld = ball()
    cfg = ConvergenceConfig(enabled=True, every=2, patience=2, min_fraction=0.5, size=32)
    stop = ConvergenceStop(cfg, fld, total_steps=20, state={})
    silhouettes, colour = stop.silhouettes()
    assert 0.05 < silhouettes.float().mean() < 0.6  # the ball is seen, not the whole frame
    assert all(0.0 <= c < 0.9 for c in colour)  # its grey-ish colour, not the white background
    said = [stop(done) for done in range(1, 21)]
    # checks at 2 (nothing to compare), 4 and 6 pass, but the run is 30 % done: not before 10
    assert said.index(True) == 9 and all(said[9:])
    assert stop.converged_at == 10
    assert [step for step, _, _ in stop.record["history"]] == [4, 6, 8, 10]
    assert all(iou == 1.0 and moved == 0.0 for _, iou, moved in stop.record["history"])


def slide_sideways(fld: GaussianField) -> None:
    fld.means.add_(torch.tensor([0.15, 0.0, 0.0]))


def brighten(fld: GaussianField) -> None:
    fld.features_dc.add_(0.3)  # the same silhouette, a brighter colour


@pytest.mark.parametrize("change", [slide_sideways, brighten])
def test_a_field_that_keeps_changing_does_not_converge(change):
    fld = ball()
    cfg = ConvergenceConfig(enabled=True, every=1, patience=1, min_fraction=0.0, size=32)
    stop = ConvergenceStop(cfg, fld, total_steps=6, state={})
    for done in range(1, 6):
        with torch.no_grad():
            change(fld)
        assert not stop(done)
    history = stop.record["history"]
    assert len(history) == 4
    if change is slide_sideways:
        assert max(iou for _, iou, _ in history) < 0.98
    else:
        assert all(iou == 1.0 and moved > 0.025 for _, iou, moved in history)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="threshold"):
        gen.build_config("fast", prompt="a red cube", convergence={"threshold": 1.5})
    with pytest.raises(ConfigError, match="every"):
        gen.build_config("fast", prompt="a red cube", convergence={"every": 0})


def checkpoint(run: Path) -> Path:
    return run / "checkpoint.safetensors"


def test_generate_stops_when_converged_and_resumes_to_the_same_stop(
    tmp_path, tiny_world_sd, monkeypatch
):
    # Thresholds every check passes: checks at 2 (first), 4, 6 -> converged at 6 of 12.
    rule = {"enabled": True, "every": 2, "patience": 2, "min_fraction": 0.5, "threshold": 1e-9}
    rule["colour_change"] = 1.0
    cfg = gen.build_config(
        "fast", prompt="a red cube", prior=str(tiny_world_sd), steps=12, convergence=rule, **FAST
    )
    full = gen.generate(cfg, tmp_path / "full", quiet=True)
    assert full["metrics"]["steps_done"] == 6 and full["metrics"]["converged_at"] == 6
    assert [h[0] for h in full["metrics"]["convergence_checks"]] == [4, 6]
    records = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").open()]
    assert records[-1]["step"] == 6

    generate_cut_at_step(monkeypatch, cfg, tmp_path / "cut", 4)  # the step-3 checkpoint stays
    cut = gen.generate(gen.resume_config(tmp_path / "cut"), tmp_path / "cut", resume=True)
    assert cut["metrics"]["converged_at"] == 6 and cut["metrics"]["steps_done"] == 6
    assert_same_tensors(checkpoint(tmp_path / "full"), checkpoint(tmp_path / "cut"))

    # Resumed once more, a converged run takes no further step.
    again = gen.generate(gen.resume_config(tmp_path / "cut"), tmp_path / "cut", resume=True)
    assert again["metrics"]["steps_done"] == 6 and again["iteration_split"]["iterations"] == 0
    assert_same_tensors(checkpoint(tmp_path / "full"), checkpoint(tmp_path / "cut"))

    # Resumed with the stop turned off (--resume --all-steps), it runs on to its last step,
    # as the run without a stop does.
    rest = gen.resume_config(tmp_path / "cut", convergence={"enabled": False})
    on = gen.generate(rest, tmp_path / "cut", resume=True, quiet=True)
    assert on["metrics"]["steps_done"] == 12 and on["iteration_split"]["iterations"] == 6
    whole = gen.build_config(
        "fast",
        prompt="a red cube",
        prior=str(tiny_world_sd),
        steps=12,
        convergence={"enabled": False},
        **FAST,
    )
    gen.generate(whole, tmp_path / "whole", quiet=True)
    assert_same_tensors(checkpoint(tmp_path / "whole"), checkpoint(tmp_path / "cut"))


def test_the_fast_preset_stops_at_convergence_and_the_paper_preset_does_not():
    assert gen.build_config("fast", prompt="a red cube").convergence.enabled
    assert not gen.build_config("paper", prompt="a red cube").convergence.enabled
    assert not gen.build_config("fast", prompt="a red cube", field="nerf").convergence.enabled
