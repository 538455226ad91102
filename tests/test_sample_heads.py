"""``dreamlift sample`` with a 3D generator: n latents × views, deterministic by seed."""

from __future__ import annotations

import json

import numpy as np
from cli_helpers import run_main
from PIL import Image


def test_generator_samples_rows_of_views(capsys, tiny_generator_folder, tmp_path):
    args = ("sample", "--prior", str(tiny_generator_folder), "--n", "2", "--views", "3", "--quiet")
    code, err = run_main(capsys, *args, "--out", str(tmp_path / "a"))
    assert code == 0, err
    files = sorted(p.name for p in (tmp_path / "a" / "samples").iterdir())
    assert len(files) == 6 and files[0] == "sample_000_view_0.png"
    grid = np.asarray(Image.open(tmp_path / "a" / "grid.png"))
    views = [np.asarray(Image.open(tmp_path / "a" / "samples" / f)) for f in files[:3]]
    assert not np.array_equal(views[0], views[2])  # the head turns along a row
    assert grid.shape[1] >= 3 * views[0].shape[1]
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["config"]["truncation"] == 0.7
    code, _ = run_main(capsys, *args, "--out", str(tmp_path / "b"))
    assert code == 0
    for f in files:  # same seed, same samples
        a = np.asarray(Image.open(tmp_path / "a" / "samples" / f))
        assert np.array_equal(a, np.asarray(Image.open(tmp_path / "b" / "samples" / f)))


def test_a_generator_takes_no_prompt_and_a_prior_needs_one(capsys, tiny_generator_folder, tmp_path):
    code, err = run_main(
        capsys,
        "sample",
        "a red cube",
        "--prior",
        str(tiny_generator_folder),
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 2 and "takes no prompt" in err
    code, err = run_main(capsys, "sample", "--out", str(tmp_path / "p"))
    assert code == 2 and "no prompt given" in err
