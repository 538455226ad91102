"""Text-to-3D generation on tiny random SD pipelines: every guidance × field, exact resume,
the paper preset through the same code, and the command line's bad-input behaviour."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")

from kill_helpers import generate_cut_at_step  # noqa: E402

from dreamlift.errors import CaptionError, DreamliftError, TrainingError  # noqa: E402
from dreamlift.guidance.ge3d import GE3D_NEGATIVE_PROMPT  # noqa: E402
from dreamlift.methods import generate as gen  # noqa: E402
from dreamlift.methods.generate import (  # noqa: E402
    azimuth_half_range,
    build_config,
    config_from_dict,
    generate,
    render_scale,
)
from dreamlift.methods.generate import run as gen_run  # noqa: E402
from dreamlift.methods.generate import step as gen_step  # noqa: E402
from dreamlift.zoo.tiny import TinySDConfig, save_tiny_sd  # noqa: E402
from dreamlift.zoo.tokenizer import caption_words  # noqa: E402

CLI = [sys.executable, "-m", "dreamlift", "generate"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "DREAMLIFT_ZOO_DIR": "/nonexistent-zoo"}
TINY = TinySDConfig(unet_channels=(16, 32, 32))
FAST = {"turntable_frames": 4, "score": False, "log_every": 1, "checkpoint_every": 100}


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    """A tiny SD 2.x-layout pipeline (16 px images) whose tokenizer knows the world's words
    and GE3D's negative prompt, so the paper preset runs unchanged."""
    extra = GE3D_NEGATIVE_PROMPT.replace(",", " ").replace(".", " ").replace("-", " ").split()
    words = [*caption_words(), *extra, "-"]
    root = tmp_path_factory.mktemp("tiny_sd_generate")
    return save_tiny_sd(root / "sd", sample_size=8, config=TINY, seed=0, words=words)


def _cli(args, **kw):
    return subprocess.run(CLI + args, capture_output=True, text=True, env=ENV, timeout=300, **kw)


# ---------------------------------------------------------------------- schedules
def test_schedules_are_pure_functions_of_the_step():
    assert azimuth_half_range(0, 80, 1.5, 100) == 80
    assert azimuth_half_range(99, 80, 1.5, 100) == 80
    assert azimuth_half_range(100, 80, 1.5, 100) == 120
    assert azimuth_half_range(10_000, 80, 1.5, 100) == 180
    assert azimuth_half_range(5, 180, 1.5, 100) == 180
    warmup = ((0, 0.5), (150, 1.0))
    assert render_scale(0, warmup) == 0.5 and render_scale(149, warmup) == 0.5
    assert render_scale(150, warmup) == 1.0


def test_presets_and_config_round_trip():
    fast, paper = build_config("fast", prompt="a red cube"), build_config("paper", prompt="x")
    assert fast.guidance == "ge3d" and fast.field == "gaussians"
    assert paper.steps == 3000 and paper.views_per_step == 4 and paper.ge3d.perpneg.enabled
    assert paper.guidance_config().negative_prompt == GE3D_NEGATIVE_PROMPT
    assert fast.guidance_config().negative_prompt == ""
    # each guidance keeps its own CFG and negative prompt under a preset (DreamFusion's SDS)
    paper_sds = build_config("paper", prompt="x", guidance="sds").guidance_config()
    assert paper_sds.guidance_scale == 100.0 and paper_sds.negative_prompt == ""
    assert paper.guidance_scale is None and paper.negative_prompt is None
    # --cfg / --negative still reach whichever guidance runs
    given = build_config("paper", prompt="x", guidance="sds", guidance_scale=20.0)
    assert given.guidance_config().guidance_scale == 20.0
    from dreamlift.io.run import to_plain

    again = config_from_dict(json.loads(json.dumps(to_plain(paper))))
    assert again == paper
    with pytest.raises(DreamliftError, match="unknown preset"):
        build_config("slow")
    with pytest.raises(DreamliftError, match="unknown guidance"):
        build_config("fast", guidance="vsd")
    with pytest.raises(DreamliftError, match="unknown field"):
        build_config("fast", field="voxels")


def test_the_presets_gaussian_layers_apply_to_gaussians_only():
    """The 300-step Gaussian schedule is the quick preset's for Gaussians (ISM's: SDS and GE3D
    have their own, below); NeRF keeps fast's 600 steps, anything given wins; fast's Gaussians
    share the quick start on 600 steps and stop at convergence, its NeRF does neither."""
    gs = build_config("quick", prompt="a red cube", guidance="ism")
    assert gs.steps == 300 and gs.resolution_warmup == ((0, 0.5), (75, 1.0))
    assert gs.gaussians.init_opacity == 0.3 and gs.gaussians.densify_until == 225
    assert gs.gaussians.init_grey == 0.5  # the preset's Gaussian settings stay under the layer
    nerf = build_config("quick", prompt="a red cube", field="nerf")
    assert nerf.steps == 600 and nerf.resolution_warmup == ((0, 0.5), (150, 1.0))
    given = build_config(
        "quick", prompt="a red cube", guidance="ism", steps=450, gaussians={"init_opacity": 0.2}
    )
    assert given.steps == 450 and given.gaussians.init_opacity == 0.2
    fast = build_config("fast", prompt="a red cube", guidance="ism")
    assert fast.steps == 600 and fast.gaussians.init_opacity == 0.3
    assert fast.gaussians.densify_until == 450 and fast.convergence.enabled
    assert not build_config("quick", prompt="a red cube").convergence.enabled
    assert build_config("fast", prompt="a red cube").convergence.enabled
    fast_nerf = build_config("fast", prompt="a red cube", field="nerf")
    assert fast_nerf.nerf.samples_per_ray == 32 and not fast_nerf.convergence.enabled


def test_sds_and_ge3d_on_gaussians_take_the_short_schedule_and_nothing_else_does():
    """The (guidance, field) layer: SDS and GE3D on Gaussians run 200 steps at three times
    the quick start's rates under fast and quick; ISM, MV-SDS, NeRF and the paper preset keep
    their schedules; anything given still wins, and a prior that implies its guidance is
    honoured."""
    for preset in ("fast", "quick"):
        for guidance in ("sds", "ge3d"):
            cfg = build_config(preset, prompt="a red cube", guidance=guidance)
            assert cfg.steps == 200 and cfg.resolution_warmup == ((0, 0.5), (75, 1.0))
            assert cfg.gaussians.lr_means == pytest.approx(3 * 3.2e-3)
            assert cfg.gaussians.lr_means_final == pytest.approx(3 * 3.2e-5)
            assert cfg.gaussians.densify_until == 150 and cfg.gaussians.init_opacity == 0.3
    assert build_config("fast", prompt="a red cube").steps == 200  # GE3D is the default
    assert build_config("fast", prompt="a red cube", guidance="ism").steps == 600
    for guidance in ("sds", "ge3d"):
        assert (
            build_config("fast", prompt="a red cube", guidance=guidance, field="nerf").steps == 600
        )
        paper = build_config("paper", prompt="a red cube", guidance=guidance)
        assert paper.steps == 3000 and paper.gaussians.lr_means == 2e-4
    given = build_config(
        "fast", prompt="a red cube", guidance="sds", steps=400, gaussians={"lr_means": 1e-3}
    )
    assert given.steps == 400 and given.gaussians.lr_means == 1e-3
    assert given.gaussians.lr_opacity == 0.15  # the layer's other rates stay
    mv = build_config("fast", prompt="a red cube", prior="toy-mvdream")
    assert mv.guidance == "mvsds" and mv.steps == 600


def test_nested_overrides_merge_into_the_preset_and_set_reads_dotted_keys():
    from dreamlift.methods.common.config import parse_settings
    from dreamlift.methods.generate import PRESETS

    cfg = build_config("fast", ge3d={"n": 4}, gaussians={"num_init": 100})
    assert (
        cfg.ge3d.n == 4
        and cfg.ge3d.dbc_sigma_fraction == PRESETS["fast"]["ge3d"]["dbc_sigma_fraction"]
    )
    assert cfg.gaussians.num_init == 100 and cfg.gaussians.init_grey == 0.5  # the preset's
    settings = parse_settings(
        ["ge3d.max_step=[700, 400]", "flip_views=0.5", "gaussians.init_grey=null"]
    )
    assert settings == {
        "ge3d": {"max_step": [700, 400]},
        "flip_views": 0.5,
        "gaussians": {"init_grey": None},
    }
    cfg = build_config("fast", **settings)
    assert (
        cfg.ge3d.max_step == (700, 400)
        and cfg.flip_views == 0.5
        and cfg.gaussians.init_grey is None
    )
    for bad, needle in (("flip_views", "KEY=VALUE"), ("=3", "KEY=VALUE"), ("x=[1,", "cannot read")):
        with pytest.raises(DreamliftError, match=needle):
            parse_settings([bad])
    with pytest.raises(DreamliftError, match="bad setting"):
        build_config("fast", **parse_settings(["ge3d.nodes=3"]))


# ---------------------------------------------------------------------- every combination
@pytest.mark.parametrize("field", ["gaussians", "nerf"])
@pytest.mark.parametrize("guidance", ["ge3d", "sds", "ism"])
def test_each_guidance_and_field_runs_and_writes_the_run_contract(
    tmp_path, tiny_sd, field, guidance
):
    cfg = build_config(
        "fast",
        prompt="a red cube",
        prior=str(tiny_sd),
        field=field,
        guidance=guidance,
        steps=4,
        **FAST,
    )
    result = generate(cfg, tmp_path / "run", quiet=True)
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["guidance"] == guidance and summary["prompt"] == "a red cube"
    for name, rel in summary["outputs"].items():
        assert (run / rel).is_file(), name
    for name in ("config.yaml", "metrics.jsonl", "checkpoint.safetensors", "turntable.mp4"):
        assert (run / name).is_file()
    assert ("gaussians" if field == "gaussians" else "mesh") in result["outputs"]
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(f"loss_{guidance}" in r for r in records)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)


def test_guidance_moves_the_field(tmp_path, tiny_sd):
    """The guidance's gradient reaches the parameters: a step changes the colours."""
    cfg = build_config(
        "fast", prompt="a red cube", prior=str(tiny_sd), guidance="sds", steps=3, **FAST
    )
    generate(cfg, tmp_path / "r", quiet=True)
    fld = gen.initial_field(cfg, torch.Generator().manual_seed(cfg.seed))
    trained = load_file(tmp_path / "r" / "checkpoint.safetensors")
    keys = [k for k in trained if "features_dc" in k]
    assert keys and not torch.equal(trained[keys[0]], fld.features_dc.detach())


# ---------------------------------------------------------------------- resume
def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(path / "checkpoint.safetensors").items()}


AUGMENTED = {"flip_views": 0.5, "background_aug": 0.66, "tv_weight": 1.0}


@pytest.mark.parametrize(
    ("field", "extra"), [("gaussians", {}), ("nerf", {}), ("gaussians", AUGMENTED)]
)
def test_interrupted_then_resumed_equals_uninterrupted(
    tmp_path, tiny_sd, monkeypatch, field, extra
):
    settings = {**FAST, "checkpoint_every": 3, "steps": 6, **extra}
    cfg = build_config("fast", prompt="a red cube", prior=str(tiny_sd), field=field, **settings)
    cfg.gaussians.densify_from, cfg.gaussians.densify_every = 1, 2  # resume across densify
    generate(cfg, tmp_path / "full", quiet=True)

    generate_cut_at_step(monkeypatch, cfg, tmp_path / "cut", 4)  # the step-3 checkpoint stays
    with pytest.raises(DreamliftError, match="already holds a run"):
        generate(cfg, tmp_path / "cut", quiet=True)
    resumed = gen.resume_config(tmp_path / "cut")
    assert resumed == cfg
    result = generate(resumed, tmp_path / "cut", resume=True, quiet=True)
    full, cut = _tensors(tmp_path / "full"), _tensors(tmp_path / "cut")
    assert full.keys() == cut.keys()
    for key in full:
        assert torch.equal(full[key], cut[key]), key
    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert summary["resumed_from"] == 3
    steps = [json.loads(x)["step"] for x in (tmp_path / "cut" / "metrics.jsonl").open()]
    assert steps == list(range(1, 7))  # completed steps, as checkpoints count them
    assert result["timings"]["train_s"] > 0


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_sd, monkeypatch):
    cfg = build_config(
        "fast",
        prompt="a red cube",
        prior=str(tiny_sd),
        steps=6,
        **{**FAST, "checkpoint_every": 2},
    )
    original = gen.TextTo3D.__call__

    def nan_at_three(self, step):
        loss, logs, out = original(self, step)
        return (loss * float("nan") if step == 3 else loss), logs, out

    monkeypatch.setattr(gen.TextTo3D, "__call__", nan_at_three)
    with pytest.raises(TrainingError, match="step 4") as info:  # the 4th step, index 3
        generate(cfg, tmp_path / "nan", quiet=True)
    assert "last good checkpoint (step 2)" in str(info.value)
    from dreamlift.io.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "nan" / "checkpoint.safetensors").step == 2


# ---------------------------------------------------------------------- paper preset, init
def test_paper_preset_runs_one_iteration_at_the_prior_resolution(tmp_path, tiny_sd, monkeypatch):
    cfg = build_config("paper", prompt="a red cube", prior=str(tiny_sd), steps=1, **FAST)
    cfg.gaussians.num_init = 4096  # the paper's 82k Gaussians work too; kept small for CI
    calls = []
    original = gen_step.render_views

    def spy(fld, cams, size, background):
        calls.append((len(cams), cams.width, size))
        return original(fld, cams, size, background)

    monkeypatch.setattr(gen_step, "render_views", spy)
    generate(cfg, tmp_path / "paper", quiet=True)
    assert calls == [(4, 16, 16)]  # 4 views at the tiny model's 16 px (SD 2.1-base: 512)
    summary = json.loads((tmp_path / "paper" / "summary.json").read_text())
    assert summary["config"]["ge3d"]["perpneg"]["enabled"]
    assert (tmp_path / "paper" / "gaussians.ply").is_file()


def test_image_total_variation_of_known_images():
    flat = torch.full((2, 3, 8, 8), 0.3)
    assert gen.image_total_variation(flat) == 0
    stripes = torch.zeros(1, 1, 4, 6)
    stripes[..., 1::2] = 1.0  # every horizontal neighbour differs by 1, no vertical one
    assert gen.image_total_variation(stripes) == pytest.approx(2.0)
    assert gen.image_total_variation(stripes.transpose(-1, -2)) == pytest.approx(2.0)


def test_init_from_ply_and_sphere(tmp_path, tiny_sd):
    cfg = build_config("fast", prompt="a red cube", prior=str(tiny_sd), steps=2, **FAST)
    generate(cfg, tmp_path / "a", quiet=True)
    from_ply = build_config(
        "fast",
        prompt="a red cube",
        prior=str(tiny_sd),
        steps=2,
        init=str(tmp_path / "a" / "gaussians.ply"),
        **FAST,
    )
    fld = gen.initial_field(from_ply, torch.Generator())
    from dreamlift.io.ply import read_gaussians_ply

    saved = read_gaussians_ply(tmp_path / "a" / "gaussians.ply")
    assert torch.equal(fld.means.detach(), saved.means)
    sphere = gen.initial_field(cfg, torch.Generator().manual_seed(0))
    # the position learning rate decays over this run's steps from either start
    assert fld.config.lr_means_decay_steps == sphere.config.lr_means_decay_steps == 2
    radii = sphere.means.norm(dim=-1)
    assert torch.allclose(radii, torch.full_like(radii, cfg.init_radius), atol=1e-5)
    bad = build_config("fast", prompt="a red cube", init=str(tmp_path / "none.ply"))
    with pytest.raises(DreamliftError, match="no such .ply"):
        gen.initial_field(bad, torch.Generator())


# ---------------------------------------------------------------------- scores, export
def _toy_clip_available() -> bool:
    from dreamlift.errors import ModelError
    from dreamlift.zoo.registry import resolve

    try:
        resolve("toy-clip")
    except ModelError:
        return False
    return True


def test_world_caption_gets_ground_truth_scores_and_mesh_export(tmp_path, tiny_sd):
    cfg = build_config(
        "fast",
        prompt="a green cone, side view",
        prior=str(tiny_sd),
        steps=2,
        **{**FAST, "score": True, "score_refinements": 3, "mesh_resolution": 40},
        export="mesh",
    )
    result = generate(cfg, tmp_path / "s", quiet=True)
    metrics = json.loads((tmp_path / "s" / "summary.json").read_text())["metrics"]
    assert 0.0 <= metrics["silhouette_iou"] <= 1.0
    assert set(metrics["shape_ious"]) >= {"cube", "cone", "sphere"}
    assert metrics["shape_winner"] in metrics["shape_ious"]
    if _toy_clip_available():
        assert -1.0 <= metrics["clip_similarity"] <= 1.0
        assert 0.0 <= metrics["clip_r_precision"] <= 1.0
    else:
        assert any("CLIP" in w for w in result["warnings"])
    assert "mesh" in result["outputs"] or any("mesh" in w for w in result["warnings"])


def test_gaussian_mesh_export_of_a_known_blob(tmp_path):
    import trimesh

    from dreamlift.fields.gaussians import GaussianField, GaussiansConfig
    from dreamlift.methods.common.outputs import export_gaussian_mesh

    fld = GaussianField(GaussiansConfig(num_init=800, init_radius=0.4, init_opacity=0.9))
    with torch.no_grad():
        fld.features_dc.fill_(0.0)  # SH 0 → grey 0.5
    path = export_gaussian_mesh(fld, tmp_path / "m.obj", resolution=48)
    mesh = trimesh.load(path, process=False)
    radius = torch.from_numpy(mesh.vertices).norm(dim=-1)
    assert 0.3 < float(radius.median()) < 0.65
    assert abs(float(mesh.visual.vertex_colors[:, :3].mean()) / 255 - 0.5) < 0.05


# ---------------------------------------------------------------------- bad input
def test_prompt_errors_in_process(tiny_sd, tmp_path):
    with pytest.raises(CaptionError, match="empty"):
        generate(build_config("fast", prompt="  ", prior=str(tiny_sd)), tmp_path / "e")
    with pytest.raises(CaptionError, match="unknown word") as info:
        generate(build_config("fast", prompt="a hamburger", prior=str(tiny_sd)), tmp_path / "h")
    assert "shapes:" in str(info.value) and "cube" in str(info.value)
    cfg = build_config(
        "fast", prompt="a red cube", prior=str(tiny_sd), negative_prompt="ugly dragon"
    )
    with pytest.raises(CaptionError, match="dragon"):
        generate(cfg, tmp_path / "n")
    assert not (tmp_path / "h").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["a red cube"], "dreamlift zoo train toy-sd"),
        ([""], "empty"),
        (["a red dragon"], "unknown word"),
        (["a red cube", "--field", "voxels"], "unknown field"),
        (["a red cube", "--guidance", "vsd"], "unknown guidance"),
        (["a red cube", "--preset", "slow"], "unknown preset"),
        (["a red cube", "--set", "flip_views"], "KEY=VALUE"),
        (["a red cube", "--set", "ge3d.nodes=3"], "bad setting"),
        (["a red cube", "--set", "steps=abc"], "steps must be an integer, got 'abc'"),
        (["a red cube", "--set", "sds.form=fast"], "sds.form must be one of"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, args, needle):
    proc = _cli([*args, "--out", str(tmp_path / "o")])
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_cli_batch_reports_bad_lines_and_continues(tmp_path, tiny_sd):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cube\n\n   \na red dragon\n# a comment\na yellow torus\n")
    proc = _cli(
        [
            "--prompts",
            str(prompts),
            "--prior",
            str(tiny_sd),
            "--steps",
            "2",
            "--no-score",
            "--out",
            str(tmp_path / "batch"),
            "--quiet",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    assert "line 4" in proc.stderr and "dragon" in proc.stderr
    rows = json.loads((tmp_path / "batch" / "batch.json").read_text())
    assert [(r["line"], r["status"]) for r in rows] == [(1, "ok"), (4, "error"), (6, "ok")]
    for row in rows:
        if row["status"] == "ok":
            assert (Path(row["out"]) / "summary.json").is_file()
    assert "a yellow torus" in proc.stdout  # the table


def test_cli_resume_continues_and_refuses_to_overwrite(tmp_path, tiny_sd):
    out = tmp_path / "g"
    base = ["a red cube", "--prior", str(tiny_sd), "--no-score", "--out", str(out), "--quiet"]
    settings = ["--set", "flip_views=0.25", "--set", "gaussians.num_init=300"]
    assert _cli([*base, "--steps", "2", *settings]).returncode == 0
    config = json.loads((out / "summary.json").read_text())["config"]
    assert config["flip_views"] == 0.25 and config["gaussians"]["num_init"] == 300
    assert config["gaussians"]["init_grey"] == 0.5  # the rest of the preset stays
    again = _cli([*base, "--steps", "2"])
    assert again.returncode == 2 and "already holds a run" in again.stderr
    proc = _cli(["--resume", "--steps", "4", "--out", str(out), "--quiet"])
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"] == 2 and summary["config"]["steps"] == 4


def test_cli_resume_takes_steps_device_and_threads_and_refuses_the_rest(tmp_path, tiny_sd):
    out = tmp_path / "g"
    first = ["a red cube", "--prior", str(tiny_sd), "--guidance", "sds", "--no-score"]
    assert _cli([*first, "--steps", "2", "--out", str(out), "--quiet"]).returncode == 0
    for changed, name in (
        (["--guidance", "ism"], "guidance ('sds' → 'ism')"),
        (["--set", "flip_views=0.5"], "flip_views"),
        (["a blue cube"], "prompt"),
        (["--seed", "3"], "seed"),
    ):
        proc = _cli([*changed, "--resume", "--steps", "3", "--out", str(out), "--quiet"])
        assert proc.returncode == 2 and name in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert json.loads((out / "summary.json").read_text())["config"]["steps"] == 2  # untouched
    # The same command again, with more steps, on another device and thread count: resumed.
    again = [*first, "--resume", "--steps", "3", "--device", "cpu", "--threads", "1"]
    proc = _cli([*again, "--out", str(out), "--quiet"])
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"] == 2 and summary["config"]["device"] == "cpu"


def test_cli_corrupt_config_files_are_one_line_errors(tmp_path, tiny_sd):
    out = tmp_path / "g"
    base = ["a red cube", "--prior", str(tiny_sd), "--no-score", "--quiet", "--out", str(out)]
    assert _cli([*base, "--steps", "1"]).returncode == 0
    (out / "config.yaml").write_text("steps: [\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    for args, needle in (
        (["--resume", "--out", str(out)], "not valid YAML"),
        ([*base, "--config", str(bad)], "must hold a mapping"),
    ):
        proc = _cli(args)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_gpu_runs_without_gsplat_are_warned_before_training_with_the_reason(monkeypatch, caplog):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    reason = "ModuleNotFoundError: No module named 'gsplat'"
    monkeypatch.setattr(gen_run, "gsplat_unavailable_reason", lambda: reason)
    with caplog.at_level("WARNING"):
        said = gen.backend_warnings(build_config("fast"), cuda)
    assert len(said) == 1 and "dreamlift[cuda]" in said[0] and reason in said[0]
    assert "gsplat" in caplog.text
    # Not on a CPU, not for NeRF, not when the torch backend was asked for by name.
    assert gen.backend_warnings(build_config("fast"), cpu) == []
    assert gen.backend_warnings(build_config("fast", field="nerf"), cuda) == []
    explicit = build_config("fast", gaussians={"backend": "torch"})
    assert gen.backend_warnings(explicit, cuda) == []
    monkeypatch.setattr(gen_run, "gsplat_unavailable_reason", lambda: None)
    assert gen.backend_warnings(build_config("fast"), cuda) == []


def generate_script(prompt: str, prior: Path, settings: dict, out: Path) -> str:
    """``python -c`` code that starts (or resumes) the fast preset's run of ``prompt`` with
    ``settings`` into ``out`` at one thread: a run in a fresh process, as a user's is."""
    return (
        "import torch; torch.set_num_threads(1); from pathlib import Path;"
        "from dreamlift.methods.generate import build_config, generate;"
        f"cfg = build_config('fast', prompt={prompt!r}, prior={str(prior)!r}, **{settings!r});"
        f"generate(cfg, Path({str(out)!r}), resume=True, quiet=True)"
    )


@pytest.mark.parametrize("field", ["gaussians", "nerf"])
def test_sigkill_at_random_moments_then_resume_is_bit_exact(tmp_path, tiny_sd, field):
    """Two SIGKILLs of a real process, each at a random moment after a newer checkpoint,
    each followed by a ``--resume``: the parameters equal an uninterrupted run's (every run
    a fresh process)."""
    from kill_helpers import assert_same_tensors, kill_at_random_moments, run_to_the_end

    settings = {**FAST, "checkpoint_every": 4, "steps": 60, "field": field}
    script = functools.partial(generate_script, "a red cube", tiny_sd, settings)

    run_to_the_end(script(tmp_path / "full"), ENV)
    out = tmp_path / "killed"
    left = kill_at_random_moments(script(out), out, kills=2, seed=7, env=ENV)
    assert all(mark is not None and mark[1] < 60 for mark in left), left
    run_to_the_end(script(out), ENV)
    assert_same_tensors(
        tmp_path / "full" / "checkpoint.safetensors", out / "checkpoint.safetensors"
    )


def test_ray_batch_survives_a_killed_worker_and_resumes_its_checkpoint(tmp_path, tiny_sd):
    """Two local Ray workers, three prompts (one bad); a worker is SIGKILLed once the last
    prompt has checkpointed 10 steps, so whichever prompt it was running has a checkpoint.
    Ray retries the killed task, which resumes it: the batch completes, and the killed
    prompt ends bit-identical to an uninterrupted run."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    import signal
    import threading
    import time

    import psutil
    from kill_helpers import assert_same_tensors, checkpoint_progress, run_to_the_end

    from dreamlift.methods.generate.ray_batch import generate_on_ray

    settings = {**FAST, "checkpoint_every": 5, "steps": 80}

    def configure(text):
        return build_config("fast", prompt=text, prior=str(tiny_sd), **settings)

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cube\na blue zzz\na green cone\n")
    out = tmp_path / "batch"
    last = out / "003-a-green-cone"  # starts after the bad prompt failed, so it lags
    killed: list[int] = []

    def kill_a_worker_with_checkpoints() -> None:
        """Once the later prompt has checkpointed 10 steps, kill the worker running it: the
        one holding its run folder's lock. (Picking a worker by its process title alone
        could hit one that had just finished the first prompt and still bore its title:
        then no task had anything to resume.)"""
        deadline = time.time() + 180
        while time.time() < deadline and (checkpoint_progress(last) or (0, 0))[1] < 10:
            time.sleep(0.01)
        lock = str((last / ".lock").resolve())
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if "ray::" not in " ".join(proc.info["cmdline"] or []):
                continue
            try:
                holds = any(f.path == lock for f in proc.open_files())
            except psutil.Error:
                continue
            if holds and not killed:
                os.kill(proc.info["pid"], signal.SIGKILL)
                killed.append(proc.info["pid"])
                return

    killer = threading.Thread(target=kill_a_worker_with_checkpoints, daemon=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        killer.start()
        errors = []
        rows = generate_on_ray(prompts, out, configure, lambda n, e: errors.append(n))
    finally:
        ray.shutdown()
    killer.join(timeout=1)
    assert killed, "no Ray worker was found to kill"
    assert [r["status"] for r in rows] == ["ok", "error", "ok"] and errors == [2]
    assert json.loads((out / "batch.json").read_text()) == rows
    resumed = [
        r
        for r in rows
        if r["status"] == "ok"
        and json.loads((Path(r["out"]) / "summary.json").read_text())["resumed_from"] > 0
    ]
    assert resumed, "no task resumed a checkpoint after its worker was killed"
    killed_row = resumed[0]
    whole = tmp_path / "whole"  # the uninterrupted run, in a fresh process like the workers
    run_to_the_end(generate_script(killed_row["prompt"], tiny_sd, settings, whole), ENV)
    assert_same_tensors(
        whole / "checkpoint.safetensors", Path(killed_row["out"]) / "checkpoint.safetensors"
    )
