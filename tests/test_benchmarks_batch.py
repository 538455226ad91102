"""benchmarks/batch.py on a tiny random prior: every size runs the same captions in its own
process, the table compares each size with B = 1, and the JSON holds every asset."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")

from benchmark_modules import load_benchmark  # noqa: E402

bench = load_benchmark("batch")


def test_each_size_runs_every_caption_and_is_compared_with_one(tmp_path, capsys, tiny_world_sd):
    out = tmp_path / "batch.json"
    quick = ["score=false", "turntable_frames=2", "turntable_size=16", "gaussians.num_init=200"]
    argv = ["--guidances", "sds", "--sizes", "1", "2", "--captions", "3", "--steps", "3"]
    argv += ["--threads", "1", "--prior", str(tiny_world_sd), "--out", str(out)]
    argv += [x for setting in quick for x in ("--set", setting)]
    result = bench.main(argv)
    table = result["tables"]["sds"]
    assert set(table) == {"1", "2"} and table["1"]["ratio_to_1"] == 1.0
    assert table["2"]["ratio_to_1"] > 0
    for size in ("1", "2"):
        (run,) = result["runs"]["sds"][size]
        assert [a["prompt"] for a in run["assets"]] == list(bench.CAPTION_SET[:3])
        assert all(a["steps_done"] == 3 for a in run["assets"])
    assert json.loads(out.read_text())["captions"] == list(bench.CAPTION_SET[:3])
    assert "assets/min" in capsys.readouterr().out


def test_sizes_without_the_reference_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--sizes", "2", "4", "--out", str(tmp_path / "x.json")])
