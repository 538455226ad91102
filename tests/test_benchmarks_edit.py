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
