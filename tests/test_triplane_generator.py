"""The tri-plane generator: latent space, planes, rendering, files (tiny random models)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from dreamlift.fields.volume import composite_weights, ray_aabb, stratified_samples
from dreamlift.generators import Generator3D, GeneratorError, TriplaneConfig, TriplaneGenerator
from dreamlift.generators.triplane import importance_samples
from dreamlift.world.heads import head_cameras


@pytest.fixture()
def gen() -> TriplaneGenerator:
    torch.manual_seed(0)
    return TriplaneGenerator(TriplaneConfig.tiny()).eval()


def test_it_is_a_generator3d_with_the_eg3d_shapes(gen):
    cfg = gen.cfg
    assert isinstance(gen, Generator3D)
    ws = gen.mapping(torch.randn(3, cfg.z_dim))
    assert ws.shape == (3, cfg.num_ws, cfg.w_dim)
    planes = gen.synthesis(ws)
    assert planes.shape == (3, 3, cfg.plane_channels, cfg.plane_resolution, cfg.plane_resolution)


def test_truncation_zero_is_the_mean_latent(gen):
    with torch.no_grad():
        gen.w_mean.normal_()
    ws = gen.mapping(torch.randn(4, gen.z_dim), truncation=0.0)
    assert torch.allclose(ws, gen.w_avg().expand_as(ws))


def test_mapping_samples_the_fitted_latent_distribution(gen):
    g = torch.Generator().manual_seed(1)
    mix = torch.randn(gen.w_dim, gen.w_dim, generator=g) * 0.5
    codes = torch.randn(4000, gen.w_dim, generator=g) @ mix.T + 2.0
    gen.fit_latent_distribution(codes)
    samples = gen.mapping(torch.randn(20000, gen.z_dim, generator=g))[:, 0]
    assert torch.allclose(samples.mean(0), codes.mean(0), atol=0.05)
    assert torch.allclose(torch.cov(samples.T), torch.cov(codes.T), atol=0.06)


def test_each_layer_of_w_plus_changes_the_planes(gen):
    ws = gen.mapping(torch.randn(1, gen.z_dim))
    base = gen.synthesis(ws)
    for layer in range(gen.num_ws):
        moved = ws.clone()
        moved[:, layer] += 1.0
        with torch.no_grad():
            for m in gen.modules():  # the modulations start as the identity: open them
                if isinstance(m, torch.nn.Linear) and m.weight.abs().sum() == 0:
                    m.weight.normal_(0, 0.1)
        assert not torch.allclose(gen.synthesis(moved), gen.synthesis(ws))
    assert base.shape == gen.synthesis(ws).shape


def test_render_shapes_ranges_and_empty_space(gen):
    cams = head_cameras(torch.tensor([0.0, 90.0]), torch.tensor([10.0, 0.0]), 12)
    out = gen.render(gen.synthesis(gen.mapping(torch.randn(2, gen.z_dim))), cams)
    assert out.rgb.shape == (2, 3, 12, 12) and out.alpha.shape == (2, 1, 12, 12)
    assert out.alpha.min() >= 0 and out.alpha.max() <= 1 + 1e-5
    with torch.no_grad():
        gen.decoder.net[-1].bias.fill_(-100.0)  # density softplus(-101) ≈ 0 everywhere
        gen.decoder.net[-1].weight.zero_()
    empty = gen.render(gen.synthesis(gen.mapping(torch.zeros(1, gen.z_dim))), cams[:1])
    assert empty.alpha.max() < 1e-3
    assert torch.allclose(empty.rgb, torch.ones_like(empty.rgb), atol=1e-3)  # white background


def test_density_is_zero_outside_the_box_and_differentiable_inside(gen):
    planes = gen.synthesis(gen.mapping(torch.randn(1, gen.z_dim))).detach().requires_grad_(True)
    pts = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, gen.cfg.box * 1.5]]])
    sigma = gen.sigma(planes, pts)
    assert sigma[0, 1] == 0 and sigma[0, 0] > 0
    sigma[0, 0].backward()
    assert planes.grad.abs().sum() > 0


def test_a_render_runs_the_decoder_once_per_sample_and_composites_them_in_depth_order(gen):
    """The coarse samples' outputs are kept for the union (EG3D's unify_samples), not
    evaluated a second time, and the picture is the one a second pass over the sorted union
    gives."""
    cams = head_cameras(torch.tensor([20.0]), torch.tensor([10.0]), 8)
    planes = gen.synthesis(gen.mapping(torch.randn(1, gen.z_dim)))
    counted: list[int] = []
    decode = gen.decoder.forward

    def counting(features: torch.Tensor) -> torch.Tensor:
        counted.append(features.numel() // features.shape[-1])
        return decode(features)

    gen.decoder.forward = counting
    n_c, n_f = 6, 5
    origins, dirs, _ = cams.rays()
    o, d = origins.reshape(1, -1, 3), dirs.reshape(1, -1, 3)
    with torch.no_grad():
        out = gen.render_rays(planes, o, d, samples=(n_c, n_f))
    assert sum(counted) == 8 * 8 * (n_c + n_f)
    del gen.decoder.forward
    # The same composite written out the two-pass way: decode the coarse samples, place the
    # importance samples from their weights, decode the sorted union again.
    with torch.no_grad():
        near, far, _ = ray_aabb(o[0], d[0], -gen.cfg.box, gen.cfg.box)
        t_c, _ = stratified_samples(near, far, n_c, None)
        sig_c, _ = gen.raw(planes, (o[0, :, None] + t_c[..., None] * d[0, :, None]).view(1, -1, 3))
        edges = torch.cat([near[:, None], (t_c[:, 1:] + t_c[:, :-1]) / 2, far[:, None]], -1)
        weights_c = composite_weights(sig_c.view(-1, n_c), edges.diff(dim=-1))
        u = ((torch.arange(n_f) + 0.5) / n_f).expand(len(near), n_f)
        t, _ = torch.sort(torch.cat([t_c, importance_samples(edges, weights_c, n_f, u)], -1), -1)
        sig, rgb = gen.raw(planes, (o[0, :, None] + t[..., None] * d[0, :, None]).view(1, -1, 3))
        delta = torch.cat([t.diff(dim=-1), (far[:, None] - t[:, -1:]).clamp(min=0)], dim=-1)
        weights = composite_weights(sig.view(-1, n_c + n_f), delta)
        colour = (weights[..., None] * rgb.view(-1, n_c + n_f, 3)).sum(1)
        colour = colour + (1 - weights.sum(-1, keepdim=True)) * gen.cfg.background
    assert (weights.sum(-1) > 0.5).any()  # some rays meet the random head
    assert torch.allclose(out["rgb"][0], colour, atol=1e-6)
    assert torch.allclose(out["alpha"][0, :, 0], weights.sum(-1), atol=1e-6)


def test_importance_samples_follow_the_weights():
    bins = torch.linspace(0, 1, 11)[None]
    weights = torch.zeros(1, 10)
    weights[0, 7] = 1.0
    u = torch.rand(1, 500, generator=torch.Generator().manual_seed(0))
    t = importance_samples(bins, weights, 500, u)
    assert ((t >= 0.7) & (t <= 0.8)).float().mean() > 0.95


def test_save_and_load_round_trip(gen, tmp_path):
    gen.fit_latent_distribution(torch.randn(50, gen.w_dim))
    gen.save_pretrained(tmp_path / "g")
    back = TriplaneGenerator.from_pretrained(tmp_path / "g")
    assert back.cfg == gen.cfg
    for (k, a), b in zip(gen.state_dict().items(), back.state_dict().values(), strict=False):
        assert torch.equal(a, b), k


def test_widening_renders_the_same_and_the_added_channels_can_learn(gen):
    cfg = gen.cfg
    wide_channels = tuple(c + 4 for c in cfg.channels)
    wide = gen.widened(wide_channels, seed=1)
    assert wide.cfg.channels == wide_channels and wide.cfg.plane_resolution == cfg.plane_resolution
    ws = gen.mapping(torch.randn(2, cfg.z_dim, generator=torch.Generator().manual_seed(0)))
    planes = wide.synthesis(ws)
    torch.testing.assert_close(planes, gen.synthesis(ws), rtol=0, atol=1e-6)
    cams = head_cameras(torch.tensor([0.0]), torch.tensor([10.0]), 16)
    torch.testing.assert_close(
        wide.render(planes[:1], cams).rgb, gen.render(gen.synthesis(ws[:1]), cams).rgb
    )
    # The next layer's weights from an added channel start at zero but get a gradient.
    planes.square().sum().backward()
    grad = wide.synthesis_net.output.weight.grad[:, cfg.channels[-1] :]
    assert torch.equal(
        wide.synthesis_net.output.weight[:, cfg.channels[-1] :], torch.zeros_like(grad)
    )
    assert grad.abs().sum() > 0
    assert torch.equal(
        gen.widened(wide_channels, seed=1).state_dict()["synthesis_net.input.weight"],
        wide.state_dict()["synthesis_net.input.weight"],
    )  # seeded: reproducible
    with pytest.raises(GeneratorError, match="cannot widen"):
        gen.widened(tuple(c - 1 for c in cfg.channels))
    with pytest.raises(GeneratorError, match="cannot widen"):
        gen.widened((*cfg.channels, 8))


def test_missing_and_corrupt_generator_files_are_clear_errors(gen, tmp_path):
    with pytest.raises(GeneratorError, match="missing config.json, model.safetensors"):
        TriplaneGenerator.from_pretrained(tmp_path)
    gen.save_pretrained(tmp_path / "g")
    (tmp_path / "g" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(GeneratorError, match="does not match"):
        TriplaneGenerator.from_pretrained(tmp_path / "g")
    bigger = TriplaneGenerator(TriplaneConfig.tiny())
    bigger.save_pretrained(tmp_path / "h")
    (tmp_path / "h" / "config.json").write_text('{"w_dim": 9}')
    with pytest.raises(GeneratorError):
        TriplaneGenerator.from_pretrained(tmp_path / "h")


def test_tiny_eg3d_recipe_trains_exports_and_evaluates(tmp_path):
    from dreamlift.zoo.recipes import run_stage

    report = run_stage(
        "toy-eg3d",
        "generator",
        tmp_path / "w" / "toy-eg3d",
        size="tiny",
        root=tmp_path / "zoo",
        quiet=True,
    )
    assert report.steps == 2
    gen = TriplaneGenerator.from_pretrained(tmp_path / "zoo" / "toy-eg3d")
    assert gen.cfg == TriplaneConfig.tiny()
    assert report.figures["train_psnr_head"] > 0  # measured on the exported weights


def test_each_later_stage_starts_from_the_one_before_and_all_are_recorded(tmp_path):
    from dreamlift.errors import TrainingError
    from dreamlift.zoo.recipes import make_recipe, run_stage
    from dreamlift.zoo.recipes.common import read_zoo_json

    work, zoo = tmp_path / "w" / "toy-eg3d", tmp_path / "zoo"
    with pytest.raises(TrainingError, match="no exported toy-eg3d generator"):
        make_recipe("toy-eg3d", "anneal", work / "anneal", size="tiny", root=zoo)
    run_stage("toy-eg3d", "generator", work, size="tiny", root=zoo, quiet=True)
    exported = TriplaneGenerator.from_pretrained(zoo / "toy-eg3d").state_dict()
    recipe = make_recipe("toy-eg3d", "anneal", work / "anneal", size="tiny", root=zoo)
    start = recipe.generator.state_dict()
    assert all(torch.equal(start[k], v) for k, v in exported.items())
    assert recipe.train.schedule == "cosine" and recipe.train.seed != 0
    report = run_stage("toy-eg3d", "anneal", work, size="tiny", root=zoo, quiet=True)
    assert report.steps == 2 and report.figures["train_psnr_head"] > 0
    record = read_zoo_json(zoo / "toy-eg3d")
    assert record["training_steps"] == {"generator": 2, "anneal": 2}
    annealed = TriplaneGenerator.from_pretrained(zoo / "toy-eg3d").state_dict()
    assert any(not torch.equal(annealed[k], v) for k, v in exported.items())

    refine = make_recipe("toy-eg3d", "refine", work / "refine", size="tiny", root=zoo)
    start = refine.generator.state_dict()
    assert all(torch.equal(start[k], v) for k, v in annealed.items())
    assert refine.train.schedule == "cosine"
    assert refine.train.seed not in (0, recipe.train.seed)  # new batches, not a replay
    run_stage("toy-eg3d", "refine", work, size="tiny", root=zoo, quiet=True)
    record = read_zoo_json(zoo / "toy-eg3d")
    assert record["training_steps"] == {"generator": 2, "anneal": 2, "refine": 2}

    from safetensors.torch import load_file

    refined = load_file(str(zoo / "toy-eg3d" / "latents.safetensors"))
    vary = make_recipe("toy-eg3d", "vary", work / "vary", size="tiny", root=zoo)
    heads = len(refined["w"])
    # Each render set's latent starts at its head's refined latent.
    assert torch.equal(vary.latents.weight[:heads], refined["w"])
    assert torch.equal(vary.latents.weight[heads:], refined["w"])
    report = run_stage("toy-eg3d", "vary", work, size="tiny", root=zoo, quiet=True)
    assert report.figures["variant_psnr_head"] > 0
    varied = load_file(str(zoo / "toy-eg3d" / "latents.safetensors"))
    assert varied["w"].shape == (2 * heads, refined["w"].shape[1])
    assert varied["seeds"].tolist() == 2 * refined["seeds"].tolist()
    assert varied["scale"][:heads].eq(1).all() and varied["scale"][heads:].ne(1).all()
    assert varied["sh"].shape == (2 * heads, 9)
    with pytest.raises(TrainingError, match="other sizes or heads"):  # vary cannot be varied
        make_recipe("toy-eg3d", "vary", work / "vary2", size="tiny", root=zoo)

    polish = make_recipe("toy-eg3d", "polish", work / "polish", size="tiny", root=zoo)
    assert torch.equal(polish.latents.weight, varied["w"])
    assert polish.train.seed not in (0, 1, 2, 3) and polish.train.schedule == "cosine"
    exported = TriplaneGenerator.from_pretrained(zoo / "toy-eg3d")
    assert all(
        torch.equal(polish.generator.state_dict()[k], v) for k, v in exported.state_dict().items()
    )

    # Widening as an option of the stage: the same planes from a wider network.
    from dreamlift.zoo.recipes.eg3d import EG3DConfig, EG3DPolishRecipe

    wider = tuple(2 * c for c in exported.cfg.channels)
    widen_cfg = EG3DConfig.tiny().polished(2, variants=1, channels=wider)
    widened = EG3DPolishRecipe(widen_cfg, zoo / "toy-eg3d", tmp_path / "w", quiet=True)
    assert widened.generator.cfg.channels == wider
    ws = exported.broadcast(varied["w"][:2])
    torch.testing.assert_close(widened.generator.synthesis(ws), exported.synthesis(ws))

    run_stage("toy-eg3d", "polish", work, size="tiny", root=zoo, quiet=True)
    assert read_zoo_json(zoo / "toy-eg3d")["training_steps"]["polish"] == 2
    # A widening from widths the export does not have is refused, not loaded half.
    claims_wider = replace(EG3DConfig.tiny(), generator=widen_cfg.generator)
    wrong = claims_wider.polished(2, variants=1, channels=tuple(2 * c for c in wider))
    with pytest.raises(TrainingError, match="other sizes or heads"):
        EG3DPolishRecipe(wrong, zoo / "toy-eg3d", tmp_path / "w", quiet=True)


def test_a_variant_is_the_same_head_at_another_scale_and_light_and_variant_0_is_the_head():
    from dreamlift.world.lighting import LIGHT_DIRECTIONS
    from dreamlift.zoo.recipes.eg3d import HeadViewsSpec, head_light, item_setup, view_angles

    spec = HeadViewsSpec((5, 6), variants=3)
    assert spec.items()[:2] == ((5, 0), (6, 0)) and len(spec.items()) == 8
    own = item_setup(spec, 5, 0)
    assert own.scale == 1.0 and own.light == head_light(spec, 5)
    assert torch.equal(own.yaw, view_angles(spec, 5)[0])
    setups = [item_setup(spec, 5, v) for v in (1, 2, 3)]
    again = item_setup(spec, 5, 2)  # only (seed, head, variant) decide
    assert torch.equal(again.yaw, setups[1].yaw) and again.light == setups[1].light
    assert all(spec.scale_range[0] <= s.scale <= spec.scale_range[1] for s in setups)
    assert len({s.light for s in setups}) == 3
    # The named lights the face benchmark relights to come from inside the variants' range.
    for name in ("left", "right", "top", "bottom"):
        x, y, z = LIGHT_DIRECTIONS[name]
        yaw = math.degrees(math.atan2(y, x))
        pitch = math.degrees(math.atan2(z, math.hypot(x, y)))
        assert spec.light_yaw_deg[0] <= yaw <= spec.light_yaw_deg[1], name
        assert spec.light_pitch_deg[0] <= pitch <= spec.light_pitch_deg[1], name
