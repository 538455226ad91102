"""CONTRIBUTING.md's example method (examples/recolour.py) trains for a few steps: its second
stage turns the rendered object towards the target colour and never moves the geometry."""

import importlib.util
from pathlib import Path

import pytest
import torch

from dreamlift.cameras import turntable
from dreamlift.errors import OutputError
from dreamlift.io.checkpoint import load_checkpoint
from dreamlift.stages import load_field

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "recolour.py"


def _example():
    spec = importlib.util.spec_from_file_location("recolour_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@torch.no_grad()
def _blue_minus_red(fld) -> float:
    """Mean (blue − red) over the pixels the object covers, seen from around it."""
    out = fld.render(turntable(4, 32), torch.ones(3))
    covered = out["opacity"][..., 0] > 0.5
    rgb = out["rgb"][covered]
    return float((rgb[:, 2] - rgb[:, 0]).mean())


def test_example_method_recolours_without_moving_geometry(tmp_path):
    example = _example()
    cfg = example.RecolourConfig("a red cube", "blue", steps=(60, 60), views=8, resolution=24)
    fld = example.recolour(cfg, tmp_path / "rc")
    fitted_tensors = load_checkpoint(tmp_path / "rc" / "checkpoint-fit.safetensors").field
    for group in fld.param_groups():
        (param,) = group.params
        same = torch.equal(param.detach(), fitted_tensors[group.name])
        assert same == (group.role == "geometry"), group.name
    fitted = type(fld)(fld.config)
    fitted.load_state_tensors(fitted_tensors)
    assert _blue_minus_red(fitted) < -0.2  # the fit is red
    assert _blue_minus_red(fld) > _blue_minus_red(fitted) + 0.2  # the recolour turns it blue
    assert torch.equal(load_field(tmp_path / "rc").means, fld.means)
    assert (tmp_path / "rc" / "gaussians.ply").is_file()
    (tmp_path / "rc" / "summary.json").unlink()  # a staged run's checkpoints mark it too
    with pytest.raises(OutputError, match="checkpoint-fit"):
        example.recolour(cfg, tmp_path / "rc")
