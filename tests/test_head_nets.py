"""The head helper networks' recipes (tiny sizes): train, export, load, evaluate; metrics."""

from __future__ import annotations

import pytest
import torch

from dreamlift.errors import ModelError
from dreamlift.world.heads_geometry import PART_LABELS
from dreamlift.zoo.recipes import run_stage
from dreamlift.zoo.recipes.head_nets import HeadNet, identity_pairs, part_miou, roc_auc


@pytest.mark.parametrize("model", ["toy-pose", "toy-parts", "toy-light", "toy-id"])
def test_tiny_recipe_trains_exports_and_evaluates(model, tmp_path):
    report = run_stage(
        model, "net", tmp_path / "work" / model, size="tiny", root=tmp_path / "zoo", quiet=True
    )
    assert report.steps == 2
    net = HeadNet.from_pretrained(tmp_path / "zoo" / model)
    out = net(torch.rand(2, 3, 16, 16))
    expected = {
        "toy-pose": (2, 2),
        "toy-light": (2, 9),
        "toy-id": (2, 8),
        "toy-parts": (2, len(PART_LABELS), 16, 16),
    }[model]
    assert tuple(out.shape) == expected
    assert report.figures and all(v == v for v in report.figures.values())  # measured, not NaN
    if model == "toy-id":
        assert torch.allclose(out.norm(dim=-1), torch.ones(2))


def test_missing_network_files_are_clear(tmp_path):
    with pytest.raises(ModelError, match="missing config.json"):
        HeadNet.from_pretrained(tmp_path)


def test_roc_auc_of_perfect_random_and_inverted_scores():
    same = torch.tensor([True] * 50 + [False] * 50)
    assert roc_auc(same.float(), same) == 1.0
    assert roc_auc(1 - same.float(), same) == 0.0
    assert roc_auc(torch.zeros(100), same) == 0.5  # ties count half


def test_part_miou_ignores_background_and_absent_parts():
    truth = torch.zeros(1, 4, 4, dtype=torch.long)
    truth[0, :2] = 1  # skin
    pred = truth.clone()
    assert part_miou(pred, truth) == 1.0
    pred[0, 0] = 2  # half the skin called hair
    assert part_miou(pred, truth) == pytest.approx(0.5)


def test_identity_pairs_are_what_they_say():
    heads = torch.tensor([0, 0, 1, 1, 2, 2, 3])
    a, b, same = identity_pairs(heads, 10, seed=0)
    assert torch.equal(heads[a] == heads[b], same) and same.sum() == 10
    assert (a != b).all()
