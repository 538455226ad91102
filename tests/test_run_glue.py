"""The run glue every method shares (methods/common): typed settings, run folders, loss
terms, prompts and priors; and that no method draws from or reseeds torch's global RNG."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dreamlift.errors import CaptionError, OutputError  # noqa: E402
from dreamlift.io.run import RunDir  # noqa: E402
from dreamlift.methods.common.config import (  # noqa: E402
    ConfigError,
    changed_settings,
    config_from_values,
    merge,
    parse_settings,
    read_config_file,
)
from dreamlift.methods.common.folders import open_run, refuse_existing_run, resume_config  # noqa: E402
from dreamlift.methods.common.losses import LossTerms  # noqa: E402
from dreamlift.methods.common.priors import check_prompt, load_prior  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Inner:
    rate: float = 0.5
    mode: str = "a"
    sizes: tuple[int, ...] = (1, 2)


@dataclasses.dataclass(frozen=True)
class Outer:
    steps: int = 10
    name: str | None = None
    flag: bool = False
    pair: tuple[float, float] = (0.0, 1.0)
    inner: Inner = dataclasses.field(default_factory=lambda: Inner(mode="b"))
    steps_to_go: int | None = None


# ---------------------------------------------------------------------- settings
def test_values_build_nested_settings_over_their_defaults():
    cfg = config_from_values(Outer, {"steps": 3, "pair": [1, 2.5], "inner": {"sizes": [4]}})
    assert cfg.steps == 3 and cfg.pair == (1, 2.5) and cfg.inner.sizes == (4,)
    assert cfg.inner.mode == "b"  # the group's own default, not Inner()'s
    assert config_from_values(Outer, {"inner": {"rate": "1e-3"}}).inner.rate == 1e-3  # YAML 1.1


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"steps": "abc"}, "steps must be an integer, got 'abc'"),
        ({"steps": True}, "steps must be an integer"),
        ({"flag": 1}, "flag must be true or false"),
        ({"name": 3}, "name must be text or null"),
        ({"pair": [1, 2, 3]}, "pair must be a list of 2"),
        ({"inner": {"rate": "fast"}}, "inner.rate must be a finite number"),
        ({"inner": 3}, "inner is a group of settings"),
        ({"stepz": 3}, "no setting 'stepz'"),
        ({"inner": {"nodes": 3}}, "no setting 'inner.nodes'"),
    ],
)
def test_a_bad_setting_is_a_one_line_config_error(values, needle):
    with pytest.raises(ConfigError, match="bad setting") as info:
        config_from_values(Outer, values)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_set_reads_dotted_keys_as_yaml_and_merges_into_groups():
    assert parse_settings(["inner.sizes=[3, 4]", "steps=5", "name=null"]) == {
        "inner": {"sizes": [3, 4]},
        "steps": 5,
        "name": None,
    }
    for bad, needle in (("steps", "KEY=VALUE"), ("=3", "KEY=VALUE"), ("x=[1,", "cannot read")):
        with pytest.raises(ConfigError, match=needle):
            parse_settings([bad])
    assert merge({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 5}}) == {
        "a": {"b": 5, "c": 2},
        "d": 3,
    }


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("steps: [\n", "not valid YAML"),
        ("- 1\n- 2\n", "must hold a mapping"),
        (b"\xff\xfe", "cannot read"),
    ],
)
def test_a_corrupt_config_file_is_a_one_line_config_error(tmp_path, text, needle):
    path = tmp_path / "config.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=needle) as info:
        read_config_file(path)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        read_config_file(tmp_path / "missing.yaml")
    assert read_config_file(_write(tmp_path / "empty.yaml", "")) == {}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------- folders
@pytest.mark.parametrize("marker", ["checkpoint.safetensors", "summary.json"])
def test_a_folder_with_a_run_is_refused_without_resume(tmp_path, marker):
    refuse_existing_run(tmp_path)  # empty: fine
    (tmp_path / "config.yaml").write_text("steps: 3\n")
    refuse_existing_run(tmp_path)  # a run that failed before any checkpoint may start again
    (tmp_path / marker).write_text("x")
    with pytest.raises(OutputError, match=f"already holds a run \\({marker}\\)"):
        open_run(tmp_path, Outer(), resume=False)


def test_resume_changes_only_steps_and_device(tmp_path):
    RunDir(tmp_path).write_config(Outer(steps=3, name="x"))
    resumed = resume_config(Outer, tmp_path, {"steps": 6, "name": None})
    assert resumed == Outer(steps=6, name="x")  # None: not given
    assert isinstance(open_run(tmp_path, resumed, resume=True), RunDir)
    changed = Outer(steps=6, name="y", inner=Inner(mode="c"))
    with pytest.raises(ConfigError, match="cannot change") as info:
        open_run(tmp_path, changed, resume=True)
    message = str(info.value)
    assert "name ('x' → 'y')" in message and "inner.mode ('b' → 'c')" in message
    assert "steps" not in message.split("cannot change")[1] and "\n" not in message
    assert changed_settings(Outer(), Outer()) == {}
    with pytest.raises(OutputError, match="nothing to resume"):
        resume_config(Outer, tmp_path / "none", {})


# ---------------------------------------------------------------------- loss terms
def test_loss_terms_sum_weighted_in_order_and_log_unweighted():
    terms = LossTerms()
    assert terms.total() is None and terms.logs() == {}
    x = torch.tensor(2.0, requires_grad=True)
    terms.add("loss_a", 1.0, x * 3)
    terms.add("loss_b", 0.5, x.square())
    total = terms.total()
    assert float(total) == 3 * 2 + 0.5 * 4 and terms.logs() == {"loss_a": 6.0, "loss_b": 4.0}
    total.backward()
    assert float(x.grad) == 3 + 0.5 * 2 * 2


# ---------------------------------------------------------------------- prompts and priors
def test_prompts_are_checked_before_a_toy_prior_loads(monkeypatch, tmp_path):
    monkeypatch.setenv("DREAMLIFT_ZOO_DIR", str(tmp_path / "no-zoo"))  # loading would fail
    with pytest.raises(CaptionError, match="empty"):
        check_prompt("  ")
    assert check_prompt("a red cube").objects[0].shape == "cube"
    assert check_prompt("a hamburger") is None  # not a caption: fine for a real prior
    with pytest.raises(CaptionError, match="unknown word"):
        load_prior("toy-sd-depth", prompt="a red dragon")


# ---------------------------------------------------------------------- torch's global RNG
@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    pytest.importorskip("diffusers")
    from dreamlift.zoo.tiny import TinySDConfig, save_tiny_sd

    root = tmp_path_factory.mktemp("tiny_sd_glue")
    return save_tiny_sd(root / "sd", sample_size=8, config=TinySDConfig(unet_channels=(16, 32, 32)))


def _untouched(run) -> bool:
    """Whether ``run()`` leaves torch's global RNG as it found it: neither reseeded nor
    drawn from (every draw of a run comes from a generator its checkpoint holds)."""
    torch.manual_seed(12345)
    before = torch.get_rng_state()
    run()
    return torch.equal(torch.get_rng_state(), before)


def test_generate_leaves_the_global_rng_alone(tmp_path, tiny_sd):
    from dreamlift.methods.generate import build_config, generate

    extra = {"flip_views": 0.5, "background_aug": 0.5, "score": False, "turntable_frames": 2}
    for field in ("gaussians", "nerf"):
        cfg = build_config(prompt="a red cube", prior=str(tiny_sd), field=field, steps=2, **extra)
        assert _untouched(lambda cfg=cfg: generate(cfg, tmp_path / cfg.field, quiet=True))


def test_reconstruct_leaves_the_global_rng_alone(tmp_path):
    from dreamlift.methods.reconstruct import build_config, reconstruct

    for field in ("gaussians", "nerf"):
        cfg = build_config(
            field=field, asset="a red cube", resolution=16, train_views=4, test_views=1, steps=3
        )
        assert _untouched(lambda cfg=cfg: reconstruct(cfg, tmp_path / cfg.field, quiet=True))


def test_handles_leaves_the_global_rng_alone(tmp_path, tiny_depth_sd):
    from dreamlift.methods.handles import HandlesConfig, Transform3D
    from dreamlift.methods.handles.request import HandlesRun
    from dreamlift.methods.handles.run import run_handles

    run = HandlesRun(
        Transform3D(translate=(0.1, 0.0, 0.0)),
        scene="a red cube next to a blue sphere",
        prior=str(tiny_depth_sd),
        config=HandlesConfig(steps=3, inversion_inner_steps=1),
    )
    assert _untouched(lambda: run_handles(run, tmp_path / "h"))


# ---------------------------------------------------------------------- logged guidance terms
def test_logged_guidance_term_is_half_the_squared_gradient_per_view(tiny_sd):
    """``loss_sds`` is documented (TextTo3D) as 0.5‖g‖²/B of the gradient g the guidance
    injects, not a loss: here g/B is the gradient on the renders (SDS's x0 form)."""
    from dreamlift.methods.generate import TextTo3D, build_config, initial_field, resolve_prompt
    from dreamlift.priors import DiffusionPrior

    cfg = build_config(
        prompt="a red cube", prior=str(tiny_sd), guidance="sds", views_per_step=2, steps=10
    )
    prior = DiffusionPrior.load(tiny_sd, device="cpu")
    fld = initial_field(cfg, torch.Generator().manual_seed(0))
    prompt, template = resolve_prompt(cfg, prior)
    gens = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    step = TextTo3D(cfg, fld, prior, prompt, template, *gens)
    _, logs, _ = step(0)
    _, guidance_loss, (images,), _ = step._parts
    (grad_per_view,) = torch.autograd.grad(guidance_loss, images)
    views = images.shape[0]
    half_squared = 0.5 * views * float(grad_per_view.square().sum())  # 0.5‖g‖²/B, g = B·∂L/∂x
    assert logs["loss_sds"] == pytest.approx(half_squared, rel=1e-4)


def test_nested_denormal_flushing_lasts_until_the_outermost_block_ends(monkeypatch):
    from dreamlift.utils import numerics

    def flushed() -> bool:
        return float(torch.tensor([1e-40], dtype=torch.float32)[0] * 1.0) == 0.0

    # The suite runs flushed process-wide (conftest), as the command line does; this checks
    # the scoped block a Python API user gets without that.
    monkeypatch.setattr(numerics, "_every_thread", False)
    torch.set_flush_denormal(False)
    try:
        assert not flushed()
        with numerics.flush_denormals():
            with numerics.flush_denormals():
                assert flushed()
            assert flushed()  # the inner block's end must not switch it off
        assert not flushed()
    finally:
        torch.set_flush_denormal(True)
