"""The shared optimisation loop: non-finite losses stop the run and keep the last checkpoint."""

import pytest
import torch

from dreamlift.errors import TrainingError
from dreamlift.fields.nerf import NerfConfig, NerfField
from dreamlift.io.checkpoint import load_checkpoint
from dreamlift.io.run import RunDir
from dreamlift.loop import LoopSettings, checkpoint_path, optimize


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    field = NerfField(NerfConfig(resolutions=((0, 8),)), torch.Generator().manual_seed(0))
    run = RunDir(tmp_path / "run").prepare()

    def step_loss(step):
        value = field.density_grid.mean() ** 2 + field.color_grid.mean() ** 2
        if step == 7:
            value = value * float("nan")
        return value, {}, {}

    settings = LoopSettings(steps=20, kind="test/nerf", checkpoint_every=5, log_every=1, quiet=True)
    with pytest.raises(TrainingError, match="step 8") as err:  # the 8th step, index 7
        optimize(field, step_loss, run, settings, {}, resume=False)
    assert "step 5" in str(err.value) and "\n" not in str(err.value)
    assert load_checkpoint(checkpoint_path(run)).step == 5
