"""A whole method from the shared parts: fit a field to a world asset, then recolour it.

Stage ``fit`` trains every parameter on the asset's true views; stage ``recolour`` trains
appearance only (geometry is never stepped, densification is off) towards the same asset in
another colour. ``python examples/recolour.py "a red cube" blue out/rc [--resume]``
"""

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from dreamlift.cameras import OrbitRange, sample_orbit, turntable
from dreamlift.fields.gaussians import GaussianField, GaussiansConfig
from dreamlift.loop import LoopSettings
from dreamlift.methods.common.folders import open_run
from dreamlift.methods.common.losses import LossTerms
from dreamlift.methods.common.outputs import write_turntable_and_3d
from dreamlift.stages import Stage, run_stages
from dreamlift.world import RenderSettings, asset_from_caption, render


@dataclass
class RecolourConfig:
    caption: str = "a red cube"
    colour: str = "blue"
    lr_colour: float = 0.025
    """5x the reconstruction default: a recolour is a big move in colour alone."""
    steps: tuple[int, int] = (300, 150)  # fit, recolour
    views: int = 12
    resolution: int = 32
    seed: int = 0


def photometric(cfg: RecolourConfig, caption: str, gen: torch.Generator, geometry: bool):
    """A stage's ``prepare``: the loss of a random 4 of the caption's true views."""
    cams, _, _ = sample_orbit(
        cfg.views, cfg.resolution, OrbitRange(), torch.Generator().manual_seed(cfg.seed)
    )
    images = render(asset_from_caption(caption), cams, RenderSettings())["rgb"]

    def prepare(fld, state):
        if not geometry:
            fld.set_densification(None)  # an edit keeps the Gaussians it has

        def step_loss(step):
            pick = torch.randperm(len(cams), generator=gen)[:4]
            out = fld.render(cams[pick], torch.ones(3))
            terms = LossTerms()
            terms.add("loss_rgb", 1.0, (out["rgb"] - images[pick]).square().mean())
            return terms.total(), terms.logs(), out

        return step_loss

    return prepare


def recolour(cfg: RecolourConfig, out: Path, resume: bool = False, quiet: bool = True):
    run = open_run(out, cfg, resume).prepare()
    run.write_config(cfg)
    target = cfg.caption.replace(cfg.caption.split()[1], cfg.colour, 1)  # "a red cube" → blue
    gens = {"views": torch.Generator().manual_seed(cfg.seed + 1)}
    field_config = GaussiansConfig(num_init=2048, lr_features_dc=cfg.lr_colour)
    fld = GaussianField(field_config, torch.Generator().manual_seed(cfg.seed))
    stages = [
        Stage("fit", cfg.steps[0], photometric(cfg, cfg.caption, gens["views"], True)),
        Stage(
            "recolour",
            cfg.steps[1],
            photometric(cfg, target, gens["views"], False),
            make_optimizer=lambda f: f.make_optimizer(roles=["appearance"]),
        ),
    ]
    settings = LoopSettings(steps=0, kind="recolour", checkpoint_every=50, quiet=quiet)
    run_stages(fld, stages, run, gens, resume, settings)
    outputs = write_turntable_and_3d(run, fld, turntable(16, 64), warnings := [])
    run.write_summary("recolour", cfg, {"target": target}, {}, outputs, warnings=warnings)
    return fld


if __name__ == "__main__":
    caption, colour, out = sys.argv[1:4]
    recolour(RecolourConfig(caption, colour), Path(out), "--resume" in sys.argv, quiet=False)
