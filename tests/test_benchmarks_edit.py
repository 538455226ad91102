"""benchmarks/edit.py end to end on a tiny random prior: one edit, two methods, the verdicts."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")

from benchmark_modules import load_benchmark  # noqa: E402

bench = load_benchmark("edit")


def test_edit_benchmark_runs_methods_side_by_side(tmp_path, tiny_world_sd):
    prior = tiny_world_sd
    out = tmp_path / "edit.json"
    argv = [
        "--edits",
        "1",
        "--methods",
        "pnr",
        "sds",
        "--prior",
        str(prior),
        "--source-steps",
        "3",
        "--steps",
        "4",
        "2",
        "2",
        "--threads",
        "1",
        "--work",
        str(tmp_path / "w"),
        "--out",
        str(out),
        "--set",
        "probe_window=2",
        "--set",
        "ipg_perceptual=0",
        "--set",
        "step.turntable_frames=2",
        "--set",
        "step.score_refinements=2",
        "--set",
        "step.nerf.resolutions=[[0, 12]]",
    ]
    result = bench.main(argv)
    saved = json.loads(out.read_text())
    assert [r["method"] for r in saved["rows"]] == ["pnr", "sds"]
    assert saved["rows"][1]["eta"] == 0.0
    assert set(result["bars"]) == {"time_5_min", "colour_shape_edits", "additions_keep_25db"}
    assert isinstance(saved["all_pass"], bool)

    # the same results split by method, as two processes side by side would write them
    parts = []
    for method in ("sds", "pnr"):
        part = dict(saved, rows=[r for r in saved["rows"] if r["method"] == method])
        parts.append(tmp_path / f"{method}.json")
        parts[-1].write_text(json.dumps(part))
    merged = bench.main(["--merge", *map(str, parts), "--out", str(tmp_path / "merged.json")])
    assert merged["rows"] == saved["rows"]  # edit by edit, methods in the benchmark's order
    same = json.loads(json.dumps(merged["summary"]))  # NaN fidelity: compare as written
    assert json.dumps(same) == json.dumps(saved["summary"]) and merged["bars"] == saved["bars"]


@pytest.mark.parametrize("index", [8, 11], ids=["add", "remove"])
def test_unaligned_fidelity_charges_the_truth_for_the_worlds_layout(index, monkeypatch):
    """The world's true target as the edit, compared in the source's frame as it is: low (the
    world laid the target out anew; the run's own fidelity_psnr undoes that). A recolouring
    keeps nothing and has no fidelity."""
    from dreamlift.metrics.ground_truth import asset_renderer
    from dreamlift.world import asset_from_caption

    case = bench.CASES[index]
    monkeypatch.setattr(bench, "field_renderer", lambda asset: asset_renderer(asset, 3))
    source, target = asset_from_caption(case.source), asset_from_caption(case.target)
    assert bench.kept_pairs(case) == [(0, 0)]
    assert bench.unaligned_fidelity(case, target, source, bench.views()) < 15.0
    assert bench.unaligned_fidelity(case, source, source, bench.views()) > 40.0
    recolour = bench.CASES[0]
    assert recolour.kind == "colour" and not bench.kept_pairs(recolour)
    assert bench.unaligned_fidelity(recolour, target, source, bench.views()) is None
