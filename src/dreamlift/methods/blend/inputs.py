"""What ``blend`` blends: two photos, or two world heads at given poses (then the result is
scored against the world's composed head), and the region, a part name or a mask file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from torch import Tensor

from dreamlift.cameras import Cameras
from dreamlift.errors import ConfigError
from dreamlift.methods.blend.config import BlendConfig
from dreamlift.methods.blend.masks import check_part
from dreamlift.methods.invert.inputs import (
    Pose,
    estimate_pose,
    load_photo,
    render_params,
    world_head_light,
)
from dreamlift.world.heads import (
    HeadParams,
    check_head_seed,
    head_params,
    parse_assignments,
    with_overrides,
)


@dataclass(frozen=True)
class BlendRequest:
    """One ``dreamlift blend`` run, saved as the run's ``config.yaml``."""

    original: str | None = None
    """The image whose identity is kept (a square head crop on white, as for ``invert``)."""
    reference: str | None = None
    """The image the region comes from."""
    head: int | None = None
    """World head blended into (instead of ``original``); the run is then scored."""
    yaw: float | None = None
    """The original's camera (degrees); a photo's is estimated when yaw and pitch are None."""
    pitch: float | None = None
    reference_head: int | None = None
    reference_yaw: float | None = None
    reference_pitch: float | None = None
    reference_set: str = ""
    """Attribute overrides of the reference head, e.g. ``scale=1.1,hair=long``."""
    part: str | None = None
    """The region by name (:data:`~dreamlift.methods.blend.masks.PART_REGIONS`)."""
    mask: str | None = None
    """The region as a mask image of the original (white = blend), instead of ``part``."""
    config: BlendConfig = field(default_factory=BlendConfig)

    def __post_init__(self) -> None:
        photos = self.original is not None or self.reference is not None
        world = self.head is not None or self.reference_head is not None
        if photos and world:
            raise ConfigError("give two images or --head and --reference-head, not both")
        if photos and (self.original is None or self.reference is None):
            raise ConfigError("give both images: ORIGINAL REFERENCE")
        if world and (self.head is None or self.reference_head is None):
            raise ConfigError("a world blend needs --head and --reference-head")
        if not photos and not world:
            raise ConfigError(
                "nothing to blend", "give ORIGINAL REFERENCE images, or --head and --reference-head"
            )
        if (self.part is None) == (self.mask is None):
            raise ConfigError("give the region as --part NAME or --mask FILE (one of them)")
        if self.part is not None:
            check_part(self.part)
        for seed in (self.head, self.reference_head):
            if seed is not None:
                check_head_seed(seed)
        if self.reference_set and self.reference_head is None:
            raise ConfigError("--reference-set changes a world reference head; give one")
        self.reference_params()  # unknown attribute names fail here, before any work

    @property
    def is_world(self) -> bool:
        return self.head is not None

    def reference_params(self) -> HeadParams | None:
        if self.reference_head is None:
            return None
        overrides = parse_assignments(self.reference_set) if self.reference_set else {}
        return with_overrides(head_params(self.reference_head), overrides)


@dataclass
class BlendImage:
    """One input: the image (1, 3, R, R), its pose, where the pose came from, and for a
    world head its parameters and light."""

    image: Tensor
    pose: Pose
    pose_from: str
    params: HeadParams | None = None
    light: tuple[float, ...] | None = None
    note: str | None = None
    """What was done to a photo on reading it (a resize), for the summary."""

    def camera(self, resolution: int) -> Cameras:
        return self.pose.camera(resolution)


def _photo(path: str, yaw: float | None, pitch: float | None, cfg: BlendConfig) -> BlendImage:
    image = load_photo(Path(path), cfg.resolution)  # one-line errors for unusable files
    with Image.open(path) as file:
        size = file.size
    note = None
    if size != (cfg.resolution, cfg.resolution):
        note = f"{path} is {size[0]}×{size[1]}: resized to {cfg.resolution}×{cfg.resolution}"
    if yaw is not None or pitch is not None:
        return BlendImage(image, Pose(yaw or 0.0, pitch or 0.0), "given", note=note)
    pose = estimate_pose(Path(path), cfg.pose_estimator)
    return BlendImage(image, pose, cfg.pose_estimator, note=note)


def _world(seed: int, params: HeadParams, yaw: float | None, pitch: float | None, size: int):
    pose = Pose(yaw if yaw is not None else 0.0, pitch if pitch is not None else 10.0)
    light = world_head_light(seed)
    image = render_params(params, light, [pose], size)["rgb"]
    return BlendImage(image, pose, "given", params, light)


def load_inputs(request: BlendRequest) -> tuple[BlendImage, BlendImage]:
    """The original and the reference, read and checked (or rendered)."""
    cfg = request.config
    if request.is_world:
        original = _world(
            request.head,  # type: ignore[arg-type]
            head_params(request.head),  # type: ignore[arg-type]
            request.yaw,
            request.pitch,
            cfg.resolution,
        )
        reference = _world(
            request.reference_head,  # type: ignore[arg-type]
            request.reference_params(),  # type: ignore[arg-type]
            request.reference_yaw,
            request.reference_pitch,
            cfg.resolution,
        )
        return original, reference
    return (
        _photo(request.original, request.yaw, request.pitch, cfg),  # type: ignore[arg-type]
        _photo(
            request.reference,  # type: ignore[arg-type]
            request.reference_yaw,
            request.reference_pitch,
            cfg,
        ),
    )
