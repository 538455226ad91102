"""benchmarks/heads.py end to end on a tiny random generator (tables, JSON, bars judged)."""

from __future__ import annotations

import json

from benchmark_modules import load_benchmark

bench = load_benchmark("heads")


def test_heads_benchmark_runs_and_judges_its_bars(tiny_generator_folder, tmp_path):
    out = tmp_path / "heads.json"
    argv = f"--generator {tiny_generator_folder} --heads 1 --samples 4 --steps 2 1 1"
    argv += f" --resolution 16 --mesh-threshold 0.001 --threads 1 --out {out}"
    result = bench.main(argv.split())
    saved = json.loads(out.read_text())
    assert saved["all_pass"] is False  # a random generator meets no bar
    assert set(saved["inversion"]["table"]) == {
        "w",
        "wplus",
        "pti_none",
        "pti_views",
        "pti_locality",
    }
    assert saved["samples"]["n"] == 4 and "fid" in saved["samples"]
    assert result["bars"]["novel_psnr"] is False
