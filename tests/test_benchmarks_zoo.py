"""benchmarks/zoo.py's verdicts: floors (PSNR) and ceilings (a colour's drift) both count."""

from __future__ import annotations

from benchmark_modules import load_benchmark

bench = load_benchmark("zoo")


def test_vae_verdict_fails_a_drifting_colour_despite_a_good_psnr():
    good = {"psnr_db": 33.0, "colour_shift_worst": 0.02, "handles_scenes_psnr_db": 31.0}
    assert bench._passes("vae", good) is True
    assert bench._passes("vae", {**good, "colour_shift_worst": 0.14}) is False
    assert bench._passes("vae", {**good, "psnr_db": 29.0}) is False
    assert bench._passes("vae", {"psnr_db": 33.0}) is None  # not measured: no verdict


def test_vae_verdict_fails_an_autoencoder_that_blurs_the_scenes_handles_edits():
    objects_only = {"psnr_db": 33.0, "colour_shift_worst": 0.02, "handles_scenes_psnr_db": 28.3}
    assert bench._passes("vae", objects_only) is False


def test_parts_without_ceilings_keep_their_floors():
    assert bench._passes("depth", {"mask_iou": 0.9}) is True
    assert bench._passes("depth", {"mask_iou": 0.7}) is False
