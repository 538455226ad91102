"""benchmarks/rasterize_cpu.py: the ellipse binning keeps fewer pairs and renders the same."""

from __future__ import annotations

import json

from benchmark_modules import load_benchmark

bench = load_benchmark("rasterize_cpu")


def test_quick_run_writes_the_table_and_the_modes_agree(tmp_path):
    out = tmp_path / "rasterize_cpu.json"
    result = bench.main(["--quick", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [row["scene"] for row in result["rows"]] == ["random 500", "random 2000"]
    for row in result["rows"]:
        assert 0 < row["pairs"]["ellipse"] < row["pairs"]["box"]
        assert row["image_max_abs_diff"] < 1e-5
        assert row["gradient_max_diff_over_max"] < 1e-4
        assert row["forward_backward_ms"]["box"] > 0 and row["speedup"] > 0
