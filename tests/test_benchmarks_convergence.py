"""benchmarks/convergence.py on a tiny random prior: every rule watches one run, each records
its checks at its own steps and a stop no later than the run's end; shards merge."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")

from benchmark_modules import load_benchmark  # noqa: E402

from dreamlift.priors import DiffusionPrior  # noqa: E402

bench = load_benchmark("convergence")


def test_every_rule_watches_the_same_run_and_shards_merge(
    tmp_path, monkeypatch, capsys, tiny_world_sd
):
    prior = DiffusionPrior.load(tiny_world_sd, device="cpu")
    row = bench.watched_run(prior, "a red cube", threads=1, steps=100)
    assert row["caption"] == "a red cube" and 0.0 <= row["quick_iou_last"] <= 1.0
    assert set(row["rules"]) == set(bench.RULES)
    for name, rule in row["rules"].items():
        every = {**vars(bench.ConvergenceConfig()), **bench.RULES[name]}["every"]
        checked = [h[0] for h in rule["history"]]
        assert checked == list(range(2 * every, 101, every)), name  # the first has no previous
        assert 40 <= rule["stop"] <= 100 and 0.0 <= rule["quick_iou"] <= 1.0

    parts = []
    for i in range(2):
        part = tmp_path / f"part{i}.json"
        part.write_text(json.dumps({"rows": [{**row, "caption": f"caption {i}"}]}))
        parts.append(str(part))
    out = tmp_path / "merged.json"
    monkeypatch.setattr("sys.argv", ["convergence.py", "--merge", *parts, "--out", str(out)])
    bench.main()
    merged = json.loads(out.read_text())
    assert [r["caption"] for r in merged["rows"]] == ["caption 0", "caption 1"]
    assert "mean stop" in capsys.readouterr().out
