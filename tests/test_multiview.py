"""Multi-view prior (MVDream's design): camera MLP, 3D self-attention, camera codes, and the
official checkpoint's key layout loading into the same model code."""

from __future__ import annotations

import json

import pytest
import torch
from mvdream_layout import (
    TINY_LAYOUT,
    official_checkpoint,
    official_unet_shapes,
    small_unet,
    write_mvdream_folder,
)
from safetensors.torch import save_file

from dreamlift.errors import ModelError
from dreamlift.priors import DiffusionPrior, MultiViewPrior
from dreamlift.priors.multiview import (
    add_camera_embedding,
    camera_codes,
    group_azimuths,
    install_multiview_attention,
)
from dreamlift.priors.mvdream_checkpoint import (
    convert_unet,
    diffusers_config,
    read_layout,
    split_checkpoint,
)

pytest.importorskip("diffusers")


def _call(unet, x, states, camera=None):
    with torch.no_grad():
        return unet(x, 500, encoder_hidden_states=states, class_labels=camera).sample


def test_camera_mlp_is_a_projection_class_embedding_that_starts_at_zero():
    """diffusers' class_embed_type="projection" (16 inputs) has MVDream camera_embed's shape
    (Linear 16 → 4C, SiLU, Linear 4C → 4C), and the new UNet starts as the old one."""
    base = small_unet()
    unet = add_camera_embedding(base).eval()
    emb = 4 * base.config.block_out_channels[0]
    assert tuple(unet.class_embedding.linear_1.weight.shape) == (emb, 16)
    assert tuple(unet.class_embedding.linear_2.weight.shape) == (emb, emb)
    assert isinstance(unet.class_embedding.act, torch.nn.SiLU)
    x, states = torch.randn(4, 4, 8, 8), torch.randn(4, 5, 12)
    cams = camera_codes(group_azimuths(torch.tensor([30.0])), torch.full((4,), 15.0))
    assert torch.allclose(_call(unet, x, states, cams), _call(base, x, states), atol=1e-6)
    with torch.no_grad():
        unet.class_embedding.linear_2.weight.normal_()
    assert not torch.allclose(_call(unet, x, states, cams), _call(base, x, states), atol=1e-4)


def test_self_attention_spans_the_views_of_a_group_and_no_further():
    unet = add_camera_embedding(small_unet()).eval()
    cams = camera_codes(group_azimuths(torch.tensor([0.0, 45.0])), torch.zeros(8))
    x, states = torch.randn(8, 4, 8, 8), torch.randn(8, 5, 12)
    changed = x.clone()
    changed[3] += 1.0  # the last view of the first group
    per_view = (_call(unet, changed, states, cams) - _call(unet, x, states, cams)).abs()
    assert float(per_view[0].max()) < 1e-6  # attention within each view only: view 0 blind
    install_multiview_attention(unet, 4)
    per_view = (_call(unet, changed, states, cams) - _call(unet, x, states, cams)).abs()
    assert float(per_view[0].max()) > 1e-4  # view 0 now sees view 3 of its group
    assert float(per_view[4:].max()) < 1e-6  # the second group does not
    with pytest.raises(ModelError, match="groups of 4"):
        _call(unet, x[:6], states[:6], cams[:6])


def test_camera_codes_are_mvdreams_normalised_opengl_cam2world():
    """Azimuth 0 (camera on +x, z up): OpenGL axes right = +y, up = +z, back = +x, centre on
    the unit sphere whatever the radius; the same matrix as MVDream's ``get_camera`` at its
    azimuth 90 (its azimuth 0 looks from −y)."""
    code = camera_codes(torch.tensor([0.0]), torch.tensor([0.0]))
    expected = torch.tensor(
        [[0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0, 0, 0, 1.0]]
    )
    assert torch.allclose(code.reshape(4, 4), expected, atol=1e-6)
    from dreamlift.cameras import orbit_cameras
    from dreamlift.priors.multiview import mvdream_camera

    far = orbit_cameras(torch.tensor([70.0]), torch.tensor([20.0]), 3.7, 30.0, 64).c2w
    assert torch.allclose(mvdream_camera(far), camera_codes(torch.tensor([70.0]), 20.0), atol=1e-6)
    assert group_azimuths(torch.tensor([10.0])).tolist() == [10.0, 100.0, 190.0, 280.0]


# ---------------------------------------------------------------------- official checkpoint
LAYOUT = TINY_LAYOUT


@pytest.fixture(scope="module")
def mvdream_folder(tmp_path_factory):
    return write_mvdream_folder(tmp_path_factory.mktemp("mvdream"))


def test_official_layout_converts_with_no_missing_or_unexpected_key():
    unet_state, unknown = split_checkpoint(official_checkpoint(**LAYOUT))
    assert unknown == []
    assert set(unet_state) == set(official_unet_shapes(**LAYOUT))
    layout = read_layout(unet_state)
    assert layout.attention == (True, False) and layout.camera_dim == 16
    assert layout.linear_projection and layout.context_dim == 32
    converted, unexpected = convert_unet(unet_state, layout)
    assert unexpected == []
    from diffusers import UNet2DConditionModel

    model = UNet2DConditionModel.from_config(diffusers_config(layout, 16, 8))
    missing, extra = model.load_state_dict(converted, strict=False)
    assert missing == [] and extra == []


def test_sd2_base_layout_maps_onto_sd21s_diffusers_unet():
    """The official config's shapes (sd-v2-base.yaml at 1/10 width: 4 levels, 2 res blocks,
    attention on the first three) give SD 2.1-base's block types and head counts."""
    shapes = official_unet_shapes(64, (1, 2, 4, 4), 2, (True, True, True, False), 48)
    layout = read_layout({k: torch.empty(s) for k, s in shapes.items()})
    config = diffusers_config(layout, 32, 32)
    assert config["down_block_types"] == ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    assert config["up_block_types"] == ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    assert config["attention_head_dim"] == (2, 4, 8, 8) and config["layers_per_block"] == 2
    _, unexpected = convert_unet({k: torch.empty(s) for k, s in shapes.items()}, layout)
    assert unexpected == []


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_official_checkpoint_loads_and_runs_four_views(mvdream_folder, tmp_path, suffix):
    folder = mvdream_folder
    if suffix == ".pt":
        import shutil

        folder = tmp_path / "pt"
        shutil.copytree(mvdream_folder, folder)
        (folder / "sd-v2.1-base-4view.safetensors").unlink()
        torch.save(official_checkpoint(**LAYOUT), folder / "sd-v2.1-base-4view.pt")
    prior = DiffusionPrior.load(folder, device="cpu")
    assert isinstance(prior, MultiViewPrior) and prior.num_views == 4
    text = prior.embed_text(["a red cube"] * 4)
    z = prior.initial_latents(4, torch.Generator().manual_seed(0))
    with pytest.raises(ModelError, match="cameras"):
        prior.predict_eps(z, 500, text, 7.5)
    with prior.views(group_azimuths(torch.tensor([20.0])), torch.full((4,), 15.0)):
        eps = prior.predict_eps(z, 500, text, 7.5)
    assert eps.shape == z.shape and torch.isfinite(eps).all()
    # the loaded weights are the checkpoint's
    state = official_checkpoint(**LAYOUT)
    assert torch.equal(
        prior.unet.class_embedding.linear_1.weight,
        state["model.diffusion_model.camera_embed.0.weight"],
    )


def test_a_checkpoint_with_a_foreign_or_missing_key_is_refused(mvdream_folder, tmp_path):
    import shutil

    folder = tmp_path / "bad"
    shutil.copytree(mvdream_folder, folder)
    state = official_checkpoint(**LAYOUT)
    state["model.diffusion_model.extra_block.weight"] = torch.zeros(2)
    save_file(state, str(folder / "sd-v2.1-base-4view.safetensors"))
    with pytest.raises(ModelError, match="extra_block"):
        DiffusionPrior.load(folder, device="cpu")
    del state["model.diffusion_model.extra_block.weight"]
    del state["model.diffusion_model.output_blocks.0.0.emb_layers.1.bias"]
    save_file(state, str(folder / "sd-v2.1-base-4view.safetensors"))
    with pytest.raises(ModelError, match="1 missing"):
        DiffusionPrior.load(folder, device="cpu")
    (folder / "multiview.json").write_text(json.dumps({"views": 4}))
    with pytest.raises(ModelError, match="malformed"):
        DiffusionPrior.load(folder, device="cpu")
