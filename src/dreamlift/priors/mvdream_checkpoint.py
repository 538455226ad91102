"""MVDream's official checkpoint (``sd-v2.1-base-4view``) into a diffusers multi-view UNet.

The published file is the ``state_dict`` of MVDream's ``LatentDiffusionInterface``
(``mvdream/ldm/interface.py``; ``model_zoo.build_model`` loads it with a strict
``load_state_dict``), so its keys are LDM's:

* ``model.diffusion_model.*`` — the ``MultiViewUNetModel``
  (``mvdream/ldm/modules/diffusionmodules/openaimodel.py``), configured by
  ``mvdream/configs/sd-v2-base.yaml``: ``model_channels`` 320, ``channel_mult`` [1, 2, 4,
  4], ``num_res_blocks`` 2, ``attention_resolutions`` [4, 2, 1], ``num_head_channels`` 64,
  ``use_linear_in_transformer``, ``transformer_depth`` 1, ``context_dim`` 1024,
  ``camera_dim`` 16;
* ``first_stage_model.*`` (the VAE) and ``cond_stage_model.*`` (OpenCLIP ViT-H), which are
  SD 2.1's and are taken here from a diffusers folder instead;
* the noise-schedule buffers ``betas``, ``alphas_cumprod``, … (``register_schedule``): SD's
  scaled-linear schedule, 0.00085–0.012, which the folder's scheduler config gives.

The UNet's key layout, from ``MultiViewUNetModel.__init__``:

=============================================  ==========================================
LDM                                             diffusers ``UNet2DConditionModel``
=============================================  ==========================================
``time_embed.{0,2}``                            ``time_embedding.linear_{1,2}``
``camera_embed.{0,2}``                          ``class_embedding.linear_{1,2}``
``input_blocks.0.0``                            ``conv_in``
``input_blocks.{1+l(R+1)+r}.0`` (ResBlock)      ``down_blocks.l.resnets.r``
``input_blocks.{1+l(R+1)+r}.1`` (transformer)   ``down_blocks.l.attentions.r``
``input_blocks.{(l+1)(R+1)}.0.op``              ``down_blocks.l.downsamplers.0.conv``
``middle_block.{0,1,2}``                        ``mid_block.resnets.0``, ``.attentions.0``,
                                                ``.resnets.1``
``output_blocks.{u(R+1)+j}.0``                  ``up_blocks.u.resnets.j``
``output_blocks.{u(R+1)+j}.1`` (transformer)    ``up_blocks.u.attentions.j``
``output_blocks.{u(R+1)+R}.{1|2}.conv``         ``up_blocks.u.upsamplers.0.conv``
``out.{0,2}``                                   ``conv_norm_out``, ``conv_out``
=============================================  ==========================================

with R res blocks per level, l counted from the finest level and u from the coarsest. Inside
a ResBlock ``in_layers.0/2``, ``emb_layers.1``, ``out_layers.0/3``, ``skip_connection`` are
``norm1``, ``conv1``, ``time_emb_proj``, ``norm2``, ``conv2``, ``conv_shortcut``; a
``SpatialTransformer3D``'s keys (``norm``, ``proj_in``, ``transformer_blocks.k.attn1/attn2/
ff/norm1-3``, ``proj_out``) are diffusers' ``Transformer2DModel``'s as they are. The
architecture (levels, channels, where attention is, depth, context and camera widths) is
read from the checkpoint's shapes, so tiny checkpoints of the same layout load too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import Tensor, nn

from dreamlift.errors import ModelError

OFFICIAL_NAMES = ("sd-v2.1-base-4view.safetensors", "sd-v2.1-base-4view.pt")
"""The official file name (``model_zoo.PRETRAINED_MODELS``), or a safetensors conversion."""
UNET_PREFIX = "model.diffusion_model."
OTHER_PREFIXES = ("first_stage_model.", "cond_stage_model.")
SCHEDULE_BUFFERS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)
RESNET_PARTS = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}


def find_checkpoint(folder: Path, name: str | None = None) -> Path | None:
    """The official checkpoint in ``folder``: ``name`` when given (it must exist), else the
    first of :data:`OFFICIAL_NAMES` present, else None."""
    folder = Path(folder)
    if name is not None:
        path = folder / name
        if not path.is_file():
            raise ModelError(f"multiview.json names a checkpoint that is missing: {path}")
        return path
    for candidate in OFFICIAL_NAMES:
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """A ``.safetensors`` file, or a ``.pt``/``.ckpt`` read with ``weights_only=True`` (tensors
    and containers only: no code in the pickle runs); a ``{"state_dict": …}`` wrapper is
    unwrapped. An unreadable file is a one-line ModelError."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, SafetensorError, RuntimeError, ValueError, EOFError) as exc:
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"cannot read the MVDream checkpoint {path}: {line}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ModelError(f"{path} is not a state dict of tensors")
    return state


def split_checkpoint(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """(the UNet's tensors without their prefix, keys that belong to nothing known).

    A bare UNet state dict (keys ``input_blocks.…``) is taken as it is."""
    if not any(k.startswith(UNET_PREFIX) for k in state):
        return dict(state), []
    unet, unknown = {}, []
    for key, value in state.items():
        if key.startswith(UNET_PREFIX):
            unet[key[len(UNET_PREFIX) :]] = value
        elif not (key.startswith(OTHER_PREFIXES) or key in SCHEDULE_BUFFERS):
            unknown.append(key)
    return unet, unknown


@dataclass(frozen=True)
class LDMLayout:
    """What a ``MultiViewUNetModel`` state dict says about its architecture."""

    in_channels: int
    out_channels: int
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention: tuple[bool, ...]
    """Per level (finest first): whether its blocks carry a transformer."""
    transformer_depth: int
    context_dim: int
    linear_projection: bool
    camera_dim: int


def _index(key: str, prefix: str) -> int | None:
    match = re.match(rf"{re.escape(prefix)}\.(\d+)\.", key)
    return int(match.group(1)) if match else None


def read_layout(unet: dict[str, Tensor]) -> LDMLayout:
    """The architecture of an LDM multi-view UNet from its keys and shapes."""
    need = ("input_blocks.0.0.weight", "out.2.weight", "camera_embed.0.weight")
    missing = [k for k in need if k not in unet]
    if missing:
        raise ModelError(
            f"not an MVDream UNet checkpoint: no {missing[0]}",
            "give the official sd-v2.1-base-4view checkpoint (LDM key names)",
        )
    model_channels = int(unet["input_blocks.0.0.weight"].shape[0])
    count = 1 + max(i for k in unet if (i := _index(k, "input_blocks")) is not None)
    levels: list[list[tuple[int, bool]]] = [[]]
    for i in range(1, count):
        if f"input_blocks.{i}.0.op.weight" in unet:
            levels.append([])
            continue
        channels = int(unet[f"input_blocks.{i}.0.out_layers.3.weight"].shape[0])
        levels[-1].append((channels, f"input_blocks.{i}.1.norm.weight" in unet))
    blocks = {len(level) for level in levels}
    if len(blocks) != 1:
        raise ModelError("unsupported MVDream UNet: levels with different res-block counts")
    attention = tuple(any(a for _, a in level) for level in levels)
    first = next(
        f"input_blocks.{i}.1" for i in range(1, count) if f"input_blocks.{i}.1.norm.weight" in unet
    )
    depth = 1 + max(i for k in unet if (i := _index(k, f"{first}.transformer_blocks")) is not None)
    return LDMLayout(
        in_channels=int(unet["input_blocks.0.0.weight"].shape[1]),
        out_channels=int(unet["out.2.weight"].shape[0]),
        model_channels=model_channels,
        channel_mult=tuple(level[0][0] // model_channels for level in levels),
        num_res_blocks=blocks.pop(),
        attention=attention,
        transformer_depth=depth,
        context_dim=int(unet[f"{first}.transformer_blocks.0.attn2.to_k.weight"].shape[1]),
        linear_projection=unet[f"{first}.proj_in.weight"].ndim == 2,
        camera_dim=int(unet["camera_embed.0.weight"].shape[1]),
    )


def diffusers_config(layout: LDMLayout, head_channels: int, sample_size: int) -> dict[str, Any]:
    """The ``UNet2DConditionModel`` config of the same network (diffusers' SD 2.x naming:
    ``attention_head_dim`` holds the number of heads per level)."""
    channels = tuple(m * layout.model_channels for m in layout.channel_mult)
    bad = [c for c in channels if c % head_channels]
    if bad:
        raise ModelError(f"{bad[0]} channels do not split into heads of {head_channels}")
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in layout.attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(layout.attention))
    return {
        "sample_size": sample_size,
        "in_channels": layout.in_channels,
        "out_channels": layout.out_channels,
        "block_out_channels": channels,
        "down_block_types": down,
        "up_block_types": up,
        "layers_per_block": layout.num_res_blocks,
        "attention_head_dim": tuple(c // head_channels for c in channels),
        "cross_attention_dim": layout.context_dim,
        "transformer_layers_per_block": layout.transformer_depth,
        "use_linear_projection": layout.linear_projection,
        "norm_num_groups": 32,
        "class_embed_type": "projection",
        "projection_class_embeddings_input_dim": layout.camera_dim,
    }


def key_prefixes(layout: LDMLayout) -> dict[str, str]:
    """LDM module prefix → diffusers module prefix, for every module of the UNet."""
    per_level = layout.num_res_blocks + 1
    top = len(layout.channel_mult) - 1
    names = {
        "time_embed.0": "time_embedding.linear_1",
        "time_embed.2": "time_embedding.linear_2",
        "camera_embed.0": "class_embedding.linear_1",
        "camera_embed.2": "class_embedding.linear_2",
        "input_blocks.0.0": "conv_in",
        "middle_block.0": "mid_block.resnets.0",
        "middle_block.1": "mid_block.attentions.0",
        "middle_block.2": "mid_block.resnets.1",
        "out.0": "conv_norm_out",
        "out.2": "conv_out",
    }
    for level, attention in enumerate(layout.attention):
        for r in range(layout.num_res_blocks):
            i = 1 + level * per_level + r
            names[f"input_blocks.{i}.0"] = f"down_blocks.{level}.resnets.{r}"
            if attention:
                names[f"input_blocks.{i}.1"] = f"down_blocks.{level}.attentions.{r}"
        if level < top:
            names[f"input_blocks.{(level + 1) * per_level}.0.op"] = (
                f"down_blocks.{level}.downsamplers.0.conv"
            )
    for u, attention in enumerate(reversed(layout.attention)):
        for j in range(per_level):
            i = u * per_level + j
            names[f"output_blocks.{i}.0"] = f"up_blocks.{u}.resnets.{j}"
            if attention:
                names[f"output_blocks.{i}.1"] = f"up_blocks.{u}.attentions.{j}"
            if u < top and j == per_level - 1:
                names[f"output_blocks.{i}.{2 if attention else 1}.conv"] = (
                    f"up_blocks.{u}.upsamplers.0.conv"
                )
    return names


def convert_unet(unet: dict[str, Tensor], layout: LDMLayout) -> tuple[dict[str, Tensor], list[str]]:
    """(the state dict under diffusers names, LDM keys no module of the layout owns)."""
    prefixes = key_prefixes(layout)
    out, unexpected = {}, []
    for key, value in unet.items():
        module, _, leaf = key.rpartition(".")
        parent, rest = module, ""
        while parent and parent not in prefixes:
            parent, _, head = parent.rpartition(".")
            rest = f"{head}.{rest}" if rest else head
        if not parent:
            unexpected.append(key)
            continue
        target = prefixes[parent]
        if ".resnets." in target:
            rest = RESNET_PARTS.get(rest, rest)
        out[".".join(p for p in (target, rest, leaf) if p)] = value
    return out, unexpected


def load_mvdream_unet(path: Path, head_channels: int = 64, sample_size: int = 32) -> nn.Module:
    """The official checkpoint's UNet as a diffusers ``UNet2DConditionModel`` (float32, CPU),
    every key placed: any missing or unexpected key is a ModelError naming it."""
    from diffusers import UNet2DConditionModel

    state = read_state_dict(path)
    unet_state, unknown = split_checkpoint(state)
    if unknown:
        raise ModelError(f"unexpected key(s) in {path}: {', '.join(unknown[:3])}")
    layout = read_layout(unet_state)
    converted, unexpected = convert_unet(unet_state, layout)
    if unexpected:
        raise ModelError(f"unexpected UNet key(s) in {path}: {', '.join(unexpected[:3])}")
    model = UNet2DConditionModel.from_config(diffusers_config(layout, head_channels, sample_size))
    expected = model.state_dict()
    missing = [k for k in expected if k not in converted]
    extra = [k for k in converted if k not in expected]
    if missing or extra:
        first = (missing or extra)[0]
        raise ModelError(
            f"the checkpoint {path} does not fit MVDream's UNet "
            f"({len(missing)} missing, {len(extra)} unexpected key(s), first {first})"
        )
    wrong = [k for k, v in converted.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        raise ModelError(f"the checkpoint {path} has a wrongly shaped {wrong[0]}")
    model.load_state_dict({k: v.float() for k, v in converted.items()}, strict=True)
    return model
