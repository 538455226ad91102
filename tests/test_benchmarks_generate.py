"""benchmarks/generate.py: the summaries on rows whose answer is known, and a quick run on a
tiny random prior (the plumbing: runs, the JSON, --merge of per-core files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from benchmark_modules import BENCHMARKS, load_benchmark

report = load_benchmark("generate_report")


def _row(guidance, caption="a red cube", iou=0.8, curve=(), **extra):
    return {
        "set": "equal",
        "caption": caption,
        "group": "single",
        "objects": 1,
        "guidance": guidance,
        "field": "gaussians",
        "budget_s": 60.0,
        "silhouette_iou": iou,
        "colour_error": 0.1,
        "clip_similarity": 0.8,
        "clip_r_precision": 1.0,
        "shape_correct": True,
        "colour_correct": True,
        "eval_curve": [{"step": 10 * i, "time_s": t, "iou": v} for i, (t, v) in enumerate(curve)],
        "split": {"fractions": {"unet": 0.5}, "prior_fraction": 0.6, "seconds_per_iteration": 0.2},
        **extra,
    }


def test_time_to_reach_is_the_first_time_at_or_above_the_target():
    curve = [{"time_s": 5.0, "iou": 0.5}, {"time_s": 9.0, "iou": 0.7}, {"time_s": 20.0, "iou": 0.9}]
    assert report.time_to_reach(curve, 0.7) == 9.0
    assert report.time_to_reach(curve, 0.95) is None


def test_compare_says_which_guidance_wins_and_how_fast_it_reaches_sds():
    rows = [
        _row("sds", iou=0.7, curve=[(10, 0.5), (60, 0.7)]),
        _row("ism", iou=0.6, curve=[(10, 0.4), (60, 0.6)]),
        _row("ge3d", iou=0.9, curve=[(10, 0.6), (30, 0.75), (60, 0.9)], colour_error=0.2),
    ]
    out = report.compare(rows)["gaussians"]
    assert out["quality"]["ge3d"]["silhouette_iou"] == pytest.approx(0.9)
    assert out["ge3d_beats_sds"]["silhouette_iou"] and out["ge3d_beats_ism"]["silhouette_iou"]
    assert not out["ge3d_beats_sds"]["colour_error"]  # lower is better for the error
    reach = out["time_to_sds_final"]
    assert reach["ge3d"]["median_s"] == 30 and reach["sds"]["median_s"] == 60
    assert reach["ism"]["reached"] == 0


def test_bars_pass_and_fail_on_their_thresholds():
    fast = [
        _row("ge3d", iou=0.85, set="fast", generation_s=200.0),
        _row("ge3d", iou=0.75, set="fast", generation_s=320.0, shape_correct=False),
    ]
    out = report.bars(fast, {"ge3d/gaussians": {"prior_fraction": 0.8}})
    assert out["single_iou"]["value"] == pytest.approx(0.8) and out["single_iou"]["pass"]
    assert out["fast_generation_s"]["pass"] is False  # the slow run breaks the 300 s bar
    assert out["shape_accuracy"]["value"] == 0.5 and out["shape_accuracy"]["pass"] is False
    assert out["prior_fraction_gaussians"]["pass"] and out["prior_fraction_nerf"]["pass"] is None


def test_quick_run_writes_results_and_merges_per_core_files(tmp_path):
    script = str(BENCHMARKS / "generate.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    common = ["--quick", "--prior", "tiny", "--threads", "1", "--captions", "single"]
    for guidance in ("sds", "ge3d"):
        args = [*common, "--guidances", guidance, "--fields", "gaussians", "--only", "equal"]
        out = tmp_path / f"{guidance}.json"
        done = subprocess.run(
            [sys.executable, script, *args, "--out", str(out)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        runs = json.loads(out.read_text())["runs"]
        assert [(r["guidance"], r["set"]) for r in runs] == [(guidance, "equal")]
        assert 0 <= runs[0]["silhouette_iou"] <= 1 and runs[0]["eval_curve"]
    merged = tmp_path / "merged.json"
    done = subprocess.run(
        [sys.executable, script, "--merge", str(tmp_path / "sds.json"), str(tmp_path / "ge3d.json")]
        + ["--out", str(merged)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(merged.read_text())
    assert sorted(r["guidance"] for r in result["runs"]) == ["ge3d", "sds"]
    assert "ge3d_beats_sds" in result["comparison"]["gaussians"]
    assert "GE3D better than SDS" in done.stdout


def test_benchmark_module_loads_beside_its_report():
    module = load_benchmark("generate")
    assert len(module.select_captions("all", [], quick=False)) == 12


def test_cost_benchmark_folder_loads_as_a_real_prior_and_measures_a_split(tmp_path, monkeypatch):
    """generate_cost.py's model, shrunk (same code, small widths): its saved folder loads
    through ``--prior PATH`` as a real prior (any prompt, e.g. the issue's hamburger), and
    ``measure`` returns a split of the measured steps alone."""
    cost = load_benchmark("generate_cost")
    monkeypatch.setitem(cost.SD21_UNET, "block_out_channels", (32, 32, 64, 64))
    monkeypatch.setitem(cost.SD21_UNET, "attention_head_dim", (2, 2, 2, 2))
    monkeypatch.setitem(cost.SD21_UNET, "cross_attention_dim", 32)
    monkeypatch.setitem(cost.SD21_VAE, "block_out_channels", (32, 32, 32, 32))
    for key, value in (("hidden_size", 32), ("intermediate_size", 64), ("num_hidden_layers", 1)):
        monkeypatch.setitem(cost.SD21_TEXT, key, value)
    monkeypatch.setitem(cost.SD21_TEXT, "num_attention_heads", 2)
    import torch

    from dreamlift.methods.generate import resolve_prompt
    from dreamlift.priors import DiffusionPrior

    folder = cost.save_sd21_folder(tmp_path / "sd21", torch.device("cpu"), torch.float32)
    prior = DiffusionPrior.load(str(folder), device="cpu")
    cfg = cost.build_config("paper", prompt="a hamburger")
    assert resolve_prompt(cfg, prior)[0] == "a hamburger"  # no world-grammar check
    row = cost.measure(prior, "gaussians", "sds", steps=2, warmup=1, resolution=32)
    assert row["iterations"] == 2 and row["views_per_step"] == 1
    assert abs(sum(row["fractions"].values()) - 1.0) < 1e-6
    assert row["pass"] == (row["prior_fraction"] >= cost.BAR)
