"""MVDream's official UNet key layout, written out from its model definition for tests.

``official_unet_state`` enumerates the parameters ``MultiViewUNetModel.__init__``
(``mvdream/ldm/modules/diffusionmodules/openaimodel.py`` and ``mvdream/ldm/modules/
attention.py`` of MVDream's code) creates, with their shapes, under the checkpoint's
``model.diffusion_model.`` prefix; random values. It is written independently of
``dreamlift.priors.mvdream_checkpoint``, so a loader test against it checks the conversion
rather than repeating it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def small_unet():  # noqa: ANN201 - a test helper
    """A tiny random diffusers UNet (8² latents, channels (8, 16), 12-dim text states) in eval
    mode, seeded: the multi-view and the UNet-call tests build on it."""
    from dreamlift.zoo.tiny import TinySDConfig, tiny_unet

    torch.manual_seed(0)
    return tiny_unet(
        TinySDConfig(
            sample_size=8,
            unet_channels=(8, 16),
            unet_groups=4,
            attention_head_dim=2,
            cross_attention_dim=12,
        )
    ).eval()


def _linear(out: dict, name: str, fan_in: int, fan_out: int, bias: bool = True) -> None:
    out[f"{name}.weight"] = (fan_out, fan_in)
    if bias:
        out[f"{name}.bias"] = (fan_out,)


def _conv(out: dict, name: str, fan_in: int, fan_out: int, k: int) -> None:
    out[f"{name}.weight"] = (fan_out, fan_in, k, k)
    out[f"{name}.bias"] = (fan_out,)


def _norm(out: dict, name: str, ch: int) -> None:
    out[f"{name}.weight"] = (ch,)
    out[f"{name}.bias"] = (ch,)


def _resblock(out: dict, name: str, ch: int, emb: int, out_ch: int) -> None:
    _norm(out, f"{name}.in_layers.0", ch)
    _conv(out, f"{name}.in_layers.2", ch, out_ch, 3)
    _linear(out, f"{name}.emb_layers.1", emb, out_ch)
    _norm(out, f"{name}.out_layers.0", out_ch)
    _conv(out, f"{name}.out_layers.3", out_ch, out_ch, 3)
    if out_ch != ch:
        _conv(out, f"{name}.skip_connection", ch, out_ch, 1)


def _transformer(out: dict, name: str, ch: int, context: int, depth: int) -> None:
    _norm(out, f"{name}.norm", ch)
    _linear(out, f"{name}.proj_in", ch, ch)
    for d in range(depth):
        block = f"{name}.transformer_blocks.{d}"
        for attn, kv in (("attn1", ch), ("attn2", context)):
            _linear(out, f"{block}.{attn}.to_q", ch, ch, bias=False)
            _linear(out, f"{block}.{attn}.to_k", kv, ch, bias=False)
            _linear(out, f"{block}.{attn}.to_v", kv, ch, bias=False)
            _linear(out, f"{block}.{attn}.to_out.0", ch, ch)
        _linear(out, f"{block}.ff.net.0.proj", ch, 8 * ch)  # GEGLU: 2 × 4 × ch
        _linear(out, f"{block}.ff.net.2", 4 * ch, ch)
        for n in ("norm1", "norm2", "norm3"):
            _norm(out, f"{block}.{n}", ch)
    _linear(out, f"{name}.proj_out", ch, ch)


def official_unet_shapes(
    model_channels: int = 32,
    channel_mult: tuple[int, ...] = (1, 2),
    num_res_blocks: int = 1,
    attention_levels: tuple[bool, ...] = (True, True),
    context_dim: int = 32,
    camera_dim: int = 16,
    in_channels: int = 4,
    out_channels: int = 4,
    depth: int = 1,
) -> dict[str, tuple[int, ...]]:
    """Key → shape of a ``MultiViewUNetModel`` with ``use_spatial_transformer``,
    ``use_linear_in_transformer``, ``legacy=False`` (as ``sd-v2-base.yaml``)."""
    out: dict[str, tuple[int, ...]] = {}
    mc, emb = model_channels, 4 * model_channels
    _linear(out, "time_embed.0", mc, emb)
    _linear(out, "time_embed.2", emb, emb)
    _linear(out, "camera_embed.0", camera_dim, emb)
    _linear(out, "camera_embed.2", emb, emb)
    _conv(out, "input_blocks.0.0", in_channels, mc, 3)
    chans, ch, i = [mc], mc, 1
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            _resblock(out, f"input_blocks.{i}.0", ch, emb, mult * mc)
            ch = mult * mc
            if attention_levels[level]:
                _transformer(out, f"input_blocks.{i}.1", ch, context_dim, depth)
            chans.append(ch)
            i += 1
        if level != len(channel_mult) - 1:
            _conv(out, f"input_blocks.{i}.0.op", ch, ch, 3)
            chans.append(ch)
            i += 1
    _resblock(out, "middle_block.0", ch, emb, ch)
    _transformer(out, "middle_block.1", ch, context_dim, depth)
    _resblock(out, "middle_block.2", ch, emb, ch)
    i = 0
    for level in reversed(range(len(channel_mult))):
        mult = channel_mult[level]
        for j in range(num_res_blocks + 1):
            skip = chans.pop()
            _resblock(out, f"output_blocks.{i}.0", ch + skip, emb, mc * mult)
            ch = mc * mult
            k = 1
            if attention_levels[level]:
                _transformer(out, f"output_blocks.{i}.1", ch, context_dim, depth)
                k = 2
            if level and j == num_res_blocks:
                _conv(out, f"output_blocks.{i}.{k}.conv", ch, ch, 3)
            i += 1
    _norm(out, "out.0", ch)
    _conv(out, "out.2", mc, out_channels, 3)
    return out


def official_checkpoint(seed: int = 0, **layout: object) -> dict[str, Tensor]:
    """A random state dict in the official checkpoint's layout: the UNet under
    ``model.diffusion_model.``, a stand-in VAE and text-encoder tensor under their LDM
    prefixes, and the schedule buffers."""
    gen = torch.Generator().manual_seed(seed)
    state = {
        f"model.diffusion_model.{k}": 0.05 * torch.randn(shape, generator=gen)
        for k, shape in official_unet_shapes(**layout).items()  # type: ignore[arg-type]
    }
    state["first_stage_model.encoder.conv_in.weight"] = torch.zeros(8, 3, 3, 3)
    state["cond_stage_model.model.positional_embedding"] = torch.zeros(77, 8)
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    state["betas"] = betas
    state["alphas_cumprod"] = torch.cumprod(1 - betas, 0)
    return state


TINY_LAYOUT = {
    "model_channels": 32,
    "channel_mult": (1, 2),
    "num_res_blocks": 1,
    "attention_levels": (True, False),
    "context_dim": 32,
}
"""A tiny MultiViewUNetModel (GroupNorm's 32 groups need 32-channel multiples); its context
width is the tiny SD folder's text encoder width."""


def write_mvdream_folder(folder):  # noqa: ANN001, ANN201 - a test helper
    """A tiny SD folder (VAE, text encoder, tokenizer, scheduler; no unet/) with a random
    checkpoint in the official key layout beside it, 16-channel heads, 8² latents."""
    import shutil

    from safetensors.torch import save_file

    from dreamlift.priors.multiview import MultiViewSettings
    from dreamlift.zoo.tiny import TinySDConfig, save_tiny_sd

    config = TinySDConfig(unet_channels=(8, 8), unet_groups=4, attention_head_dim=2)
    save_tiny_sd(folder, sample_size=8, config=config)
    shutil.rmtree(folder / "unet")
    save_file(official_checkpoint(**TINY_LAYOUT), str(folder / "sd-v2.1-base-4view.safetensors"))
    MultiViewSettings(head_channels=16, sample_size=8).save(folder)
    return folder
