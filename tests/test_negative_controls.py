"""Negative controls: for every ground-truth score, the world's true render of a wrong asset
(another shape, another colour, the two objects swapped, one object missing, an empty field,
a grey blob, and the issue's two reports: two pink pyramids for a pyramid next to a torus,
a cone on a grey cylinder for a cone on top of a white cube) scored against the caption is
judged wrong, and the true asset right. The
controls and verdicts are those of benchmarks/negative_controls.py (docs/scores.md)."""

from __future__ import annotations

import pytest
from benchmark_modules import load_benchmark

controls = load_benchmark("negative_controls")
CONTROLS = controls.controls()


@pytest.mark.parametrize("control", CONTROLS, ids=[f"{c.caption}: {c.name}" for c in CONTROLS])
def test_scores_judge_the_control(control):
    scores = controls.judge(control)
    if not control.wrong:  # the caption's own asset
        assert all(right for _, right in scores.values()), scores
        return
    assert not scores["caption"][1], scores["caption"]
    for key in control.wrong & scores.keys():
        assert not scores[key][1], (key, scores[key])


HANDLES = controls.handles_controls()


@pytest.mark.parametrize("name,inputs,expected", HANDLES, ids=[h[0] for h in HANDLES])
def test_handles_scores_judge_the_control(name, inputs, expected):
    case, image = inputs
    verdicts = controls.judge_edit(case, image)
    for key, right in expected.items():
        assert verdicts[key] == right, (name, key, verdicts)
