"""benchmarks/handles.py with handles_cases.py and handles_report.py: its cases, the inverse
edit, and a quick run on a tiny random prior.

A random prior makes no good edit; the quick run checks the benchmark's plumbing — every
method on every kind, the JSON it writes, and that each score lies in its range.
"""

from __future__ import annotations

import json
import math

import torch
from benchmark_modules import load_benchmark

from dreamlift.methods.handles import Transform3D

bench = load_benchmark("handles")
report = load_benchmark("handles_report")
cases = load_benchmark("handles_cases")


def test_cases_are_seeded_cycle_the_kinds_and_are_usable():
    first = cases.build_cases(6, 32, seed=3)
    again = cases.build_cases(6, 32, seed=3)
    assert [s for s, _ in first] == [s for s, _ in again]
    assert [s.kind for s, _ in first] == list(cases.KINDS) * 2
    for spec, case in first:
        assert case.image.shape == (32, 32, 3) and case.target_mask.any()
        assert cases.usable(case, spec.transform.scale)
        assert "white" not in spec.scene and "grey" not in spec.scene
        if " next to " in spec.scene and spec.label.startswith("translate x"):
            outwards = -1 if spec.object_index == 0 else 1
            assert spec.transform.translate[0] * outwards > 0


def test_inverse_undoes_the_transform_about_the_moved_centroid():
    t = Transform3D(translate=(0.2, 0.0, -0.1), angle_deg=30.0, scale=1.25)
    points = torch.randn(50, 3, dtype=torch.float64)
    centre = points.mean(0)
    moved = t.apply(points, centre)
    back = bench.inverse(t).apply(moved, centre + t.in_camera()[1])
    assert torch.allclose(back, points, atol=1e-9)
    assert bench.inverse(bench.inverse(t)) == t


def test_a_shared_inversion_gives_the_same_edits_as_their_own(tiny_depth_sd):
    from dreamlift.methods.common.priors import load_prior
    from dreamlift.methods.handles import HandlesConfig, depth_only, edit, scene_case
    from dreamlift.methods.handles.edit import invert_image

    case = scene_case("a red cube next to a blue sphere", 0, Transform3D(angle_deg=30), 32)
    kw = {
        "prior": load_prior(tiny_depth_sd, "cpu"),
        "config": HandlesConfig(steps=2, inversion_inner_steps=1),
        "intrinsics": case.intrinsics,
    }
    shared = invert_image(case.image, case.mask, case.depth, case.prompt, **kw)
    for method in (edit, depth_only):
        own = method(case.image, case.mask, case.depth, case.transform, case.prompt, **kw)
        reused = method(
            case.image, case.mask, case.depth, case.transform, case.prompt, inversion=shared, **kw
        )
        assert torch.equal(own.image, reused.image)
        assert "inversion_s" in own.timings and "inversion_s" not in reused.timings


def test_quick_run_writes_the_table_with_scores_in_range(tiny_depth_sd, tmp_path, capsys):
    out = tmp_path / "handles.json"
    result = bench.main(
        ["--prior", str(tiny_depth_sd), "--quick", "--steps", "2", "--threads", "1",
         "--out", str(out)]
    )  # fmt: skip
    stored = json.loads(out.read_text())
    assert stored["methods"] == ["handles", "depth_only", "warp_paste_2d"]
    assert stored["config"] == {
        "steps": 2,
        "inversion_inner_steps": 1,
        "keep_background": False,
        "carry_steps": 0,
        "redraw_guidance_scale": 1.0,
    }
    assert len(stored["cases"]) == 3 and stored["resolution"] == 32
    assert sorted(c["kind"] for c in stored["cases"]) == sorted(cases.KINDS)
    for case in stored["cases"]:
        assert case["shared_inversion_s"] > 0
        for method in stored["methods"]:
            s = case["methods"][method]
            assert 0 <= s["object_iou"] <= 1 and 0 <= s["geometry_iou"] <= 1
            assert 0 < s["background_psnr"] <= bench.PSNR_CAP
            assert 0 <= s["object_l1"] <= 1 and s["edit_s"] >= 0
            assert 0 <= s["cycle_l1_x10"] <= 10
            assert 0 <= s["cycle_feature"] <= 2
        # handles and depth_only edit the same depth: the same 3D geometry score
        m = case["methods"]
        assert m["handles"]["geometry_iou"] == m["depth_only"]["geometry_iou"]
    for method, kinds in stored["summary"].items():
        assert set(kinds) == set(report.GROUPS) and kinds["all"]["cases"] == 3
        assert (
            kinds["rotate"]["cases"]
            == 1
            == kinds["rotate_30"]["cases"] + kinds["rotate_45"]["cases"]
        )
        for metric in report.METRICS:
            assert isinstance(kinds["all"][metric], float), (method, metric)
        mean_iou = sum(c["methods"][method]["object_iou"] for c in stored["cases"]) / 3
        assert math.isclose(kinds["all"]["object_iou"], mean_iou)
    # what the model loses before any edit, per input and summarised: the inversion cannot
    # rebuild the input better than the autoencoder alone can (beyond rounding)
    for case in stored["cases"]:
        fidelity = case["fidelity"]
        assert fidelity["inversion_psnr"] <= fidelity["vae_round_trip_psnr"] + 1.0
    values = [c["fidelity"]["vae_round_trip_psnr"] for c in stored["cases"]]
    assert math.isclose(stored["fidelity"]["vae_round_trip_psnr"], sum(values) / 3)
    assert stored["fidelity"]["vae_round_trip_psnr_min"] == min(values)
    ordering = stored["paper_ordering"]
    assert isinstance(ordering["identity_vs_depth_only"]["holds"], bool)
    assert isinstance(ordering["rotation_vs_warp_paste_2d"]["holds"], bool)
    timing = stored["timing"]
    assert timing["steps"] == 2 and timing["resolution"] == 32
    parts = (
        timing["geometry_s"] + timing["inversion_s"] + timing["recording_s"] + timing["guided_s"]
    )
    assert math.isclose(parts, timing["total_s"]) and timing["inversion_s"] > 0
    assert result["summary"] == stored["summary"]
    shown = capsys.readouterr().out
    assert "paper ordering holds?" in shown and "one edit, 32×32, 2 steps" in shown
