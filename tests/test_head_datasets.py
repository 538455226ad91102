"""The head dataset: deterministic items, the held-out heads never in training, labels and
cameras consistent with the renders."""

import pytest
import torch

from dreamlift.world.head_datasets import HeadDataset, HeadDatasetConfig
from dreamlift.world.heads import HELD_OUT_HEADS, cameras_from_eg3d, head_params


def test_items_are_deterministic_and_independent_of_access_order():
    data = HeadDataset(HeadDatasetConfig(resolution=24, supersample=1), length=6)
    late = data[5]
    again = HeadDataset(HeadDatasetConfig(resolution=24, supersample=1), length=6)
    for key in ("image", "labels", "camera", "sh"):
        assert torch.equal(late[key], again[5][key])
    assert [data.draw(i)[0] for i in range(6)] == [again.draw(i)[0] for i in range(6)]


def test_training_never_draws_a_held_out_head_and_held_out_only_those():
    train = HeadDataset(HeadDatasetConfig(split="train"), length=2000)
    held = HeadDataset(HeadDatasetConfig(split="held_out"), length=300)
    drawn_train = {train.draw(i)[0] for i in range(2000)}
    drawn_held = {held.draw(i)[0] for i in range(300)}
    assert not drawn_train & set(HELD_OUT_HEADS)
    assert drawn_held <= set(HELD_OUT_HEADS) and len(drawn_held) > 40
    with pytest.raises(ValueError, match="split"):
        HeadDatasetConfig(split="test")


def test_an_item_is_consistent_labels_mask_camera_and_caption():
    item = HeadDataset(HeadDatasetConfig(resolution=32, supersample=1), length=3)[2]
    assert item["image"].shape == (3, 32, 32) and item["labels"].shape == (32, 32)
    assert torch.equal(item["labels"] > 0, item["mask"][0] > 0.5)
    cams = cameras_from_eg3d(item["camera"][None], 32)
    config = HeadDatasetConfig()
    assert config.yaw_deg[0] <= float(item["yaw"]) <= config.yaw_deg[1]
    assert torch.allclose(cams.c2w[0, :3, 3].norm(), torch.tensor(2.7), atol=1e-4)
    assert item["caption"].startswith("a person")
    assert head_params(item["head"]) is not None
