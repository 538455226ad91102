"""Edit: text-driven editing of a 3D field with Perturb-and-Revise (arXiv:2412.05279).

The settings are in :mod:`.config`, η in :mod:`.eta`, the perturbation in :mod:`.perturb`,
the staged run in :mod:`.run`.
"""

from dreamlift.methods.edit.config import EditConfig, build_config, resume_config
from dreamlift.methods.edit.eta import adaptive_eta, probe_drift
from dreamlift.methods.edit.perturb import initial_geometry, perturb_geometry
from dreamlift.methods.edit.run import edit

__all__ = [
    "EditConfig",
    "adaptive_eta",
    "build_config",
    "edit",
    "initial_geometry",
    "perturb_geometry",
    "probe_drift",
    "resume_config",
]
