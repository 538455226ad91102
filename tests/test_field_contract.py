"""The field contract every method stands on: parameter roles, optimisers over chosen groups,
fresh_like() and perturbation, density(points), replaceable densification, and a loaded grid
that keeps its resolution when a new stage starts at step 0."""

import math

import pytest
import torch

from dreamlift.cameras import orbit_cameras
from dreamlift.fields.base import FieldError
from dreamlift.fields.gaussians import GaussianField, GaussiansConfig
from dreamlift.fields.nerf import NerfConfig, NerfField


def _nerf(**overrides) -> NerfField:
    config = NerfConfig(resolutions=((0, 8), (3, 12)), samples_per_ray=16, **overrides)
    return NerfField(config, torch.Generator().manual_seed(0))


def _gaussians(**overrides) -> GaussianField:
    config = GaussiansConfig(num_init=64, **overrides)
    return GaussianField(config, torch.Generator().manual_seed(0))


def _cams(size: int = 12):
    return orbit_cameras(torch.tensor([0.0, 90.0]), torch.tensor([15.0, 15.0]), 2.7, 40.0, size)


def _step(fld, opt, step: int) -> torch.optim.Optimizer:
    """One photometric step towards a mid-grey picture, through the field's hooks."""
    out = fld.render(_cams(), torch.ones(3))
    opt.zero_grad(set_to_none=True)
    (out["rgb"] - 0.3).square().mean().backward()
    opt = fld.after_backward(step, out, opt)
    opt.step()
    return fld.after_step(step, opt)


def _snapshot(fld, role: str) -> dict[str, torch.Tensor]:
    return {
        g.name: torch.cat([p.detach().flatten() for p in g.params]).clone()
        for g in fld.param_groups()
        if g.role == role
    }


FIELDS = [_nerf, _gaussians]


@pytest.mark.parametrize("make", FIELDS, ids=["nerf", "gaussians"])
def test_groups_have_roles_and_cover_every_parameter(make):
    fld = make()
    groups = fld.param_groups()
    assert {g.role for g in groups} == {"geometry", "appearance"}
    grouped = {id(p) for g in groups for p in g.params}
    assert grouped == {id(p) for p in fld.parameters()}
    with pytest.raises(FieldError, match="no parameter group"):
        fld.make_optimizer(groups=["nope"])
    with pytest.raises(FieldError, match="unknown parameter role"):
        fld.make_optimizer(roles=["colour"])


@pytest.mark.parametrize("make", FIELDS, ids=["nerf", "gaussians"])
def test_perturbing_geometry_toward_fresh_like_leaves_appearance_bit_equal(make):
    fld = make()
    opt = fld.make_optimizer()
    for step in range(4):  # trained a little (the NeRF grid grows to 12³ at step 3)
        opt = _step(fld, opt, step)
    fresh = fld.fresh_like(torch.Generator().manual_seed(5))
    assert type(fresh) is type(fld)
    for mine, theirs in zip(fld.param_groups(), fresh.param_groups(), strict=True):
        assert [p.shape for p in mine.params] == [p.shape for p in theirs.params]
    geometry, appearance = _snapshot(fld, "geometry"), _snapshot(fld, "appearance")
    fresh_geometry = _snapshot(fresh, "geometry")
    fld.interpolate_toward(fresh, 0.3, roles=["geometry"])
    for name, value in _snapshot(fld, "appearance").items():
        assert torch.equal(value, appearance[name])
    for name, value in _snapshot(fld, "geometry").items():
        expected = torch.lerp(geometry[name], fresh_geometry[name], 0.3)
        assert torch.allclose(value, expected, atol=1e-6)
        assert not torch.equal(value, geometry[name])


@pytest.mark.parametrize("make", FIELDS, ids=["nerf", "gaussians"])
def test_optimising_one_group_leaves_the_others_untouched(make):
    fld = make()
    fld.set_densification(None)  # the Gaussians' density control would rebuild every row
    appearance = _snapshot(fld, "appearance")
    geometry = _snapshot(fld, "geometry")
    opt = fld.make_optimizer(roles=["appearance"])  # PTI-style: one group, then the others
    for step in range(3):
        opt = _step(fld, opt, step)
    assert all(torch.equal(v, geometry[k]) for k, v in _snapshot(fld, "geometry").items())
    assert any(not torch.equal(v, appearance[k]) for k, v in _snapshot(fld, "appearance").items())
    opt = fld.make_optimizer(roles=["geometry"])
    appearance = _snapshot(fld, "appearance")
    opt = _step(fld, opt, 3)
    assert all(torch.equal(v, appearance[k]) for k, v in _snapshot(fld, "appearance").items())


def test_densification_keeps_the_chosen_groups():
    """Densifying rebuilds the optimiser over the groups it had, not over all of them."""
    fld = _gaussians(densify_from=0, densify_every=1, grad_threshold=1e-12)
    opt = fld.make_optimizer(groups=["means", "features_dc"])
    for step in range(3):
        opt = _step(fld, opt, step)
    assert fld.num_gaussians > 64
    assert [g["name"] for g in opt.param_groups] == ["means", "features_dc"]


def test_densification_can_be_switched_off_and_replaced():
    config = {"densify_from": 0, "densify_every": 1, "grad_threshold": 1e-12}
    on, off = _gaussians(**config), _gaussians(**config)
    off.set_densification(None)
    opt_on, opt_off = on.make_optimizer(), off.make_optimizer()
    for step in range(3):
        opt_on, opt_off = _step(on, opt_on, step), _step(off, opt_off, step)
    assert on.num_gaussians > 64 and off.num_gaussians == 64

    class Grow:
        """A custom policy: densify everything at step 1 only."""

        def after_backward(self, fld, step, out, optimizer):
            return optimizer

        def after_step(self, fld, step, optimizer):
            return fld.densify(step, optimizer, force_all=True) if step == 1 else optimizer

    off.set_densification(Grow())
    for step in range(3):
        opt_off = _step(off, opt_off, step)
    assert off.num_gaussians > 64


def test_nerf_density_is_sigma_and_gaussian_density_is_analytic_and_differentiable():
    nerf = _nerf()
    points = torch.rand(50, 3) * 1.6 - 0.8
    assert torch.equal(nerf.density(points), nerf.sigma(points))

    fld = _gaussians()
    with torch.no_grad():  # one Gaussian at the origin, scale 0.1, opacity 0.5; others far off
        fld.means.copy_(torch.full_like(fld.means, 50.0))
        fld.means[0] = 0.0
        fld.log_scales.fill_(math.log(0.1))
        fld.opacity_logits.fill_(0.0)
    x = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.2, 0.0], [3.0, 0.0, 0.0]])
    expected = 0.5 * torch.exp(-0.5 * (x.square().sum(-1) / 0.01))
    assert torch.allclose(fld.density(x), expected, atol=1e-6)
    fld.density(x[1:2]).sum().backward()
    assert fld.means.grad[0, 0] > 0  # moving the Gaussian towards x = 0.1 raises the density


def test_loaded_grid_keeps_its_resolution_when_a_new_stage_starts_at_step_0():
    """A trained 12³ grid used by a stage counting from 0 is not resampled down to 8³."""
    trained = _nerf()
    opt = trained.make_optimizer()
    for step in range(4):
        opt = _step(trained, opt, step)
    assert trained.resolution == 12
    loaded = _nerf()
    loaded.load_state_tensors(trained.state_tensors())
    opt = loaded.make_optimizer()
    opt = _step(loaded, opt, 0)  # the stage's first step
    assert loaded.resolution == 12
    assert opt.param_groups[0]["params"][0] is loaded.density_grid


def test_nerf_mlp_initialisation_comes_from_the_fields_generator():
    config = NerfConfig(resolutions=((0, 8),), color_mode="mlp")
    torch.manual_seed(1)
    a = NerfField(config, torch.Generator().manual_seed(3))
    torch.manual_seed(2)  # the global stream must not matter
    b = NerfField(config, torch.Generator().manual_seed(3))
    for pa, pb in zip(a.mlp.parameters(), b.mlp.parameters(), strict=True):
        assert torch.equal(pa, pb)
