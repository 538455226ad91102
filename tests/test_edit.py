"""Perturb-and-Revise: η from the probe, the geometry-only perturbation, the staged edit run
on a tiny random prior (exact resume, outputs), and bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")

from cli_helpers import run_main  # noqa: E402

from dreamlift.errors import ConfigError, TrainingError  # noqa: E402
from dreamlift.fields.nerf import NerfConfig, NerfField  # noqa: E402
from dreamlift.methods.edit import (  # noqa: E402
    adaptive_eta,
    build_config,
    edit,
    initial_geometry,
    perturb_geometry,
)
from dreamlift.methods.generate import build_config as build_generate  # noqa: E402
from dreamlift.methods.generate import generate  # noqa: E402


# ---------------------------------------------------------------------- η
def test_flat_probe_gives_half_the_bound_and_a_halving_loss_gives_zero():
    flat = [1.0] * 50
    assert adaptive_eta(flat)["eta"] == pytest.approx(0.3)
    halving = [1.0] * 10 + [0.75] * 30 + [0.5] * 10
    assert adaptive_eta(halving)["eta"] == pytest.approx(0.0, abs=1e-9)
    falling = [1.0] * 10 + [0.1] * 40
    assert adaptive_eta(falling)["eta"] == 0.0
    rising = [1.0] * 10 + [3.0] * 40
    assert 0.3 < adaptive_eta(rising)["eta"] <= 0.6
    # the official absolute H: D = -1000 gives 0, D = 0 gives U / 2
    assert adaptive_eta([5000.0] * 10 + [4000.0] * 10, half=1000.0)["eta"] == pytest.approx(0)
    assert adaptive_eta([5000.0] * 20, half=1000.0)["eta"] == pytest.approx(0.3)


def test_eta_refuses_short_or_non_finite_probes():
    with pytest.raises(TrainingError, match="at least 20"):
        adaptive_eta([1.0] * 19)
    with pytest.raises(TrainingError, match="not finite"):
        adaptive_eta([1.0] * 19 + [float("nan")])


# ---------------------------------------------------------------------- perturbation
def _nerf() -> NerfField:
    fld = NerfField(NerfConfig(resolutions=((0, 12),)), torch.Generator().manual_seed(0))
    fld.set_from_functions(
        lambda p: 30.0 * (p.norm(dim=-1) < 0.3).float(),
        lambda p: torch.tensor([0.9, 0.1, 0.1]).expand(p.shape[0], 3),
    )
    return fld


def test_perturbation_moves_geometry_only_by_eta():
    src = _nerf()
    fld = _nerf()
    target = initial_geometry(src, torch.Generator().manual_seed(5))
    perturb_geometry(fld, 0.3, torch.Generator().manual_seed(5))
    roles = {g.name: g.role for g in fld.param_groups()}
    for (name, mine), (_, theirs), (_, zero) in zip(
        ((g.name, g.params) for g in fld.param_groups()),
        ((g.name, g.params) for g in src.param_groups()),
        ((g.name, g.params) for g in target.param_groups()),
        strict=True,
    ):
        for a, b, c in zip(mine, theirs, zero, strict=True):
            if roles[name] == "geometry":
                assert torch.allclose(a, 0.7 * b + 0.3 * c, atol=1e-5), name
            else:
                assert torch.equal(a, b), name
    unchanged = _nerf()
    perturb_geometry(unchanged, 0.0, torch.Generator().manual_seed(5))
    assert all(
        torch.equal(a, b) for a, b in zip(unchanged.parameters(), src.parameters(), strict=True)
    )


# ---------------------------------------------------------------------- runs
FAST_STEP = {
    "turntable_frames": 2,
    "score": False,
    "log_every": 1,
    "checkpoint_every": 2,
    "nerf": {"resolutions": ((0, 12),), "samples_per_ray": 8},
}


@pytest.fixture(scope="module")
def tiny_prior(tiny_world_sd) -> Path:
    return tiny_world_sd


@pytest.fixture(scope="module")
def source_run(tiny_prior, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("edit_source") / "g"
    cfg = build_generate(
        "fast",
        prompt="a red cube",
        prior=str(tiny_prior),
        field="nerf",
        guidance="sds",
        steps=2,
        device="cpu",
        **FAST_STEP,
    )
    generate(cfg, out, quiet=True)
    return out


def _edit_config(source, prior, **kw):
    step = {**FAST_STEP, "prior": str(prior), "device": "cpu"}
    base = dict(
        prompt="a blue cube",
        source=str(source),
        probe_steps=4,
        probe_window=2,
        revise_steps=3,
        ipg_steps=2,
        ipg_perceptual=0.0,
        device="cpu",
        step=step,
    )
    return build_config("fast", **{**base, **kw})


def test_edit_runs_probe_revise_ipg_and_records_eta(source_run, tiny_prior, tmp_path):
    result = edit(_edit_config(source_run, tiny_prior), tmp_path / "e", quiet=True)
    m = result["metrics"]
    assert len(m["probe_losses"]) == 4 and m["eta_adaptive"] is True
    assert 0.0 <= m["eta"] <= 0.6 and set(m["probe"]) == {"drift", "half", "start"}
    for stage in ("probe", "revise", "ipg"):
        assert (tmp_path / "e" / f"checkpoint-{stage}.safetensors").is_file()
    for name in ("side_by_side_gif", "turntable_gif"):
        assert (tmp_path / "e" / result["outputs"][name]).is_file()
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["metrics"]["source_run"] == str(source_run)
    split = summary["iteration_split"]
    assert split["iterations"] == 4 + 3 + 2 and 0 < split["prior_fraction"] < 1
    # the stages' backward passes are timed in their two parts, not left in "other"
    assert split["seconds"]["render_backward"] > 0
    records = [json.loads(x) for x in (tmp_path / "e" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss_ipg_l1" in r for r in records)


def test_fixed_eta_skips_the_probe_and_is_reproducible(source_run, tiny_prior, tmp_path):
    cfg = _edit_config(source_run, tiny_prior, eta=0.3, ipg_steps=0)
    a = edit(cfg, tmp_path / "a", quiet=True)
    edit(cfg, tmp_path / "b", quiet=True)
    assert a["metrics"]["eta"] == 0.3 and a["metrics"]["probe_losses"] == []
    assert not (tmp_path / "a" / "checkpoint-probe.safetensors").exists()
    from safetensors.torch import load_file

    fa = load_file(str(tmp_path / "a" / "checkpoint-revise.safetensors"))
    fb = load_file(str(tmp_path / "b" / "checkpoint-revise.safetensors"))
    assert all(torch.equal(fa[k], fb[k]) for k in fa)


def test_resume_after_the_probe_reproduces_the_uninterrupted_edit(source_run, tiny_prior, tmp_path):
    from safetensors.torch import load_file

    cfg = _edit_config(source_run, tiny_prior)
    edit(cfg, tmp_path / "full", quiet=True)
    edit(cfg, tmp_path / "cut", quiet=True)
    for stage in ("revise", "ipg"):  # cut after the probe: later stages start as they would
        (tmp_path / "cut" / f"checkpoint-{stage}.safetensors").unlink()
    edit(cfg, tmp_path / "cut", resume=True, quiet=True)
    a = load_file(str(tmp_path / "full" / "checkpoint-ipg.safetensors"))
    b = load_file(str(tmp_path / "cut" / "checkpoint-ipg.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_edit_settings_are_clear():
    with pytest.raises(ConfigError, match=r"--eta must be in \[0, 1\]"):
        build_config("fast", prompt="a blue cube", source="x", eta=1.5)
    with pytest.raises(ConfigError, match="one of them"):
        build_config("fast", prompt="a blue cube")
    with pytest.raises(ConfigError, match="at least 20"):
        build_config("fast", prompt="a blue cube", source="x", probe_steps=10)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["edit", "/no/such/run", "a blue cube"], "does not exist"),
        (["edit", ".", "a blue cube", "--eta", "2"], "--eta must be in [0, 1]"),
        (["edit"], "give SOURCE and PROMPT"),
    ],
)
def test_bad_edit_command_lines_exit_2(capsys, tmp_path, argv, needle):
    code, err = run_main(capsys, *argv, "--out", str(tmp_path / "o"))
    assert code == 2 and needle in err and "Traceback" not in err


def test_an_unknown_word_and_a_folder_that_is_not_a_run(capsys, source_run, tiny_prior, tmp_path):
    code, err = run_main(
        capsys,
        "edit",
        str(source_run),
        "a blue dragon",
        "--prior",
        str(tiny_prior),
        "--out",
        str(tmp_path / "o1"),
    )
    assert code == 2 and "dragon" in err
    code, err = run_main(
        capsys,
        "edit",
        str(tmp_path),
        "a blue cube",
        "--prior",
        str(tiny_prior),
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "o2"),
    )
    assert code == 2 and "no run checkpoint" in err


def test_a_corrupt_source_checkpoint_and_a_field_the_source_lacks(
    capsys, source_run, tiny_prior, tmp_path
):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(source_run, broken)
    checkpoint = broken / "checkpoint.safetensors"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    common = ["--prior", str(tiny_prior), "--device", "cpu", "--quiet"]
    code, err = run_main(
        capsys, "edit", str(broken), "a blue cube", *common, "--out", str(tmp_path / "o1")
    )
    assert code == 2 and "checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "o1" / "summary.json").exists()
    code, err = run_main(
        capsys, "edit", str(source_run), "a blue cube", *common,
        "--field", "gaussians", "--out", str(tmp_path / "o2"),
    )  # fmt: skip
    assert code == 2 and "holds a nerf field" in err and "Traceback" not in err
    code, err = run_main(
        capsys, "edit", str(source_run), "a blue cube", *common,
        "--set", "step.field=gaussians", "--out", str(tmp_path / "o3"),
    )  # fmt: skip
    assert code == 2 and "holds a nerf field" in err
    assert (source_run / "checkpoint.safetensors").stat().st_size > 100  # the source intact


def test_the_ipg_perceptual_term_runs_lpips_from_local_weights(source_run, tiny_prior, tmp_path):
    """--lpips FOLDER: the IPG stage's perceptual term is LPIPS-VGG (random weights in the
    real layouts here), and summary.json says so."""
    from test_metrics_lpips import lin_state, vgg_state

    folder = tmp_path / "lpips"
    folder.mkdir()
    torch.save(vgg_state(), folder / "vgg16.pth")
    torch.save(lin_state(), folder / "lpips_vgg.pth")
    cfg = _edit_config(
        source_run,
        tiny_prior,
        eta=0.3,
        revise_steps=1,
        ipg_steps=1,
        ipg_perceptual=1.0,
        lpips=str(folder),
        step={
            **FAST_STEP,
            "prior": str(tiny_prior),
            "device": "cpu",
            "resolution": 16,
            "resolution_warmup": ((0, 1.0),),
        },
    )  # LPIPS-VGG takes 16 px and more
    result = edit(cfg, tmp_path / "e", quiet=True)
    assert result["metrics"]["perceptual"] == "LPIPS-VGG (local weights)"
    records = [json.loads(x) for x in (tmp_path / "e" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("loss_ipg_perceptual", 0) > 0 for r in records)


def test_sigkill_at_random_moments_across_the_stages_then_resume_is_bit_exact(
    source_run, tiny_prior, tmp_path
):
    """Two SIGKILLs of a real edit process (probe, revise and IPG are 20, 16 and 8 steps,
    a checkpoint every 2), each followed by a resume: the IPG stage's final parameters equal
    an uninterrupted edit's."""
    from kill_helpers import assert_same_tensors, kill_at_random_moments

    stages = {"probe_steps": 20, "probe_window": 5, "revise_steps": 16, "ipg_steps": 8}
    torch.set_num_threads(1)
    cfg = _edit_config(source_run, tiny_prior, **stages)
    edit(cfg, tmp_path / "full", quiet=True)
    out = tmp_path / "killed"
    step = {**FAST_STEP, "prior": str(tiny_prior), "device": "cpu"}
    script = (
        "import torch; torch.set_num_threads(1); from pathlib import Path;"
        "from dreamlift.methods.edit import build_config, edit;"
        f"cfg = build_config('fast', prompt='a blue cube', source={str(source_run)!r},"
        f" ipg_perceptual=0.0, device='cpu', step={step!r}, **{stages!r});"
        f"edit(cfg, Path({str(out)!r}), resume=True, quiet=True)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    left = kill_at_random_moments(script, out, kills=2, seed=3, env=env)
    assert all(mark is not None for mark in left) and left[-1] < (2, 8), left
    edit(cfg, out, resume=True, quiet=True)
    name = "checkpoint-ipg.safetensors"
    assert_same_tensors(tmp_path / "full" / name, out / name)


# ---------------------------------------------------------------------- fidelity
def test_the_source_is_found_in_the_world_from_its_run(tmp_path):
    from dreamlift.methods.edit.run import source_in_world
    from dreamlift.metrics.ground_truth import Alignment

    cfg = _edit_config(tmp_path, "toy-sd")
    summary = tmp_path / "summary.json"

    def found(content: object):  # noqa: ANN202
        summary.write_text(json.dumps(content))
        return source_in_world(cfg, tmp_path)

    assert found({"config": {"asset": "a red cube"}}) == ("a red cube", Alignment())
    moved = {"align_scale": 1.2, "align_azimuth_deg": 15.0, "align_translation": [0.1, 0, 0]}
    assert found({"config": {}, "prompt": "a red cube", "metrics": moved}) == (
        "a red cube",
        Alignment(1.2, 15.0, (0.1, 0, 0)),
    )
    # an earlier edit of an asset: its field shows its own prompt, in its scores' frame
    edited = {"config": {"asset": "a red cube"}, "prompt": "a blue cube", "metrics": moved}
    assert found(edited) == ("a blue cube", Alignment(1.2, 15.0, (0.1, 0, 0)))
    assert found({"prompt": "a red cube", "metrics": {}}) is None  # not scored: frame unknown
    broken = {**moved, "align_translation": None}
    for content in ([1, 2], {"config": "x"}, {"prompt": "a red cube", "metrics": broken}):
        assert found(content) is None  # malformed: no fidelity, and no crash
    assert source_in_world(cfg, tmp_path / "missing") is None


def test_an_addition_is_scored_on_the_object_it_keeps(tmp_path, monkeypatch):
    """The world's assets standing in for the fields (its renderer for theirs): the target
    keeps the source's cube, in the cube's frame, and scores far above the unedited source;
    a recolouring keeps nothing, and a result the scores could not align gets no score."""
    from dreamlift.methods.edit import run as edit_run
    from dreamlift.metrics.ground_truth import asset_renderer
    from dreamlift.world import asset_from_caption, parse

    monkeypatch.setattr(edit_run, "field_renderer", lambda asset: asset_renderer(asset, 3))
    source_caption, target_caption = "a red cube", "a red cube with a yellow cone on top"
    (tmp_path / "summary.json").write_text(json.dumps({"config": {"asset": source_caption}}))
    cfg = _edit_config(tmp_path, "toy-sd", prompt=target_caption)
    source, edited = asset_from_caption(source_caption), asset_from_caption(target_caption)
    placed = {"align_scale": 1.0, "align_azimuth_deg": 0.0, "align_translation": [0, 0, 0]}
    target = parse(target_caption)

    def score(result, description=target, scores=placed):  # noqa: ANN001, ANN202
        return edit_run.kept_object_fidelity(cfg, tmp_path, source, result, description, scores)

    right, same = score(edited), score(source)
    assert right["kept_objects"] == [(0, 0)] and right["fidelity_pixels"] > 0
    assert right["fidelity_psnr"] > 30.0 and same["fidelity_psnr"] < right["fidelity_psnr"] - 10
    assert score(source, parse("a blue cube")) == {}
    assert score(edited, scores={}) == {}
