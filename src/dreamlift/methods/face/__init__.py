"""FaceDNeRF (arXiv:2306.00783): one face image → an editable, relightable 3D face through a
tri-plane generator — W+ optimisation and pivotal tuning under reconstruction, identity,
diffusion (SDS through a head-caption prior) and illumination terms; text-only generation
from the latent prior (Eq. 9).

``dreamlift face`` runs it; :func:`run_face` is the Python entry point.
"""

from dreamlift.methods.face.config import FaceConfig, FaceWeights, preset_config
from dreamlift.methods.face.inputs import FaceRequest, parse_light
from dreamlift.methods.face.run import run_face

__all__ = ["FaceConfig", "FaceRequest", "FaceWeights", "parse_light", "preset_config", "run_face"]
