"""ClipScorer and FID/KID on a tiny, randomly initialised CLIP of toy-clip's architecture.

Scores of a random model mean nothing, so the tests check behaviour: shapes, ranges, layout
invariance, and — with embeddings replaced by known vectors — that R-precision and direction
similarity measure what they claim.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("transformers")
pytest.importorskip("torchmetrics")

from dreamlift.errors import DataError, ModelError  # noqa: E402
from dreamlift.metrics.clip import ClipScorer  # noqa: E402
from dreamlift.metrics.fid import fid_kid  # noqa: E402
from dreamlift.world.assets import COLOURS  # noqa: E402
from dreamlift.world.shapes import SHAPES  # noqa: E402


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """toy-clip's architecture at test size, saved as toy-clip is (weights + tokenizer)."""
    from dreamlift.zoo.recipes.clip import CLIPConfig, build_clip
    from dreamlift.zoo.tokenizer import build_tokenizer, caption_words

    cfg = CLIPConfig.tiny()
    tokenizer = build_tokenizer(caption_words(), folder, cfg.max_length)
    torch.manual_seed(seed)
    build_clip(cfg, len(tokenizer)).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture(scope="module")
def scorer(clip_folder) -> ClipScorer:
    return ClipScorer.load(clip_folder)


def _images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_embeddings_are_unit_vectors_in_any_layout_size_and_dtype(scorer):
    images = _images(3)
    emb = scorer.image_embeddings(images)
    assert emb.shape == (3, 16)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(scorer.image_embeddings(images.permute(0, 2, 3, 1)), emb, atol=1e-6)
    as_uint8 = (images * 255).round().to(torch.uint8)
    assert torch.allclose(scorer.image_embeddings(as_uint8), emb, atol=1e-2)
    assert scorer.image_embeddings(_images(2, size=32)).shape == (2, 16)  # resized to 64
    text = scorer.text_embeddings(["a red cube", "a blue sphere, side view"])
    assert text.shape == (2, 16)
    assert torch.allclose(text.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_clip_similarity_is_a_per_pair_cosine(scorer):
    images = _images(4)
    sims = scorer.clip_similarity(images, ["a red cube"] * 4)
    assert sims.shape == (4,) and (sims.abs() <= 1 + 1e-6).all()
    assert torch.allclose(scorer.clip_similarity(images, "a red cube"), sims)
    expected = (scorer.image_embeddings(images) * scorer.text_embeddings("a red cube")).sum(-1)
    assert torch.allclose(sims, expected, atol=1e-6)
    with pytest.raises(DataError):
        scorer.clip_similarity(images, ["a red cube"] * 3)


def _known_embeddings(monkeypatch, scorer: ClipScorer, texts: list[str], image_vectors):
    """Text i ↦ basis vector e_i; images ↦ the given vectors (normalised)."""
    basis = {t: F.one_hot(torch.tensor(i), len(texts)).float() for i, t in enumerate(texts)}
    monkeypatch.setattr(scorer, "text_embeddings", lambda ts: torch.stack([basis[t] for t in ts]))
    monkeypatch.setattr(
        scorer, "image_embeddings", lambda images: F.normalize(image_vectors(images), dim=-1)
    )
    return basis


def test_r_precision_is_one_when_each_image_matches_its_caption(scorer, monkeypatch):
    texts = ["a red cube", "a blue sphere", "a green cone", "a white torus"]

    # Image i carries its index in its first pixel; its embedding leans towards text i.
    def vectors(images):
        idx = images[:, 0, 0, 0].long()
        return F.one_hot(idx, len(texts)).float() + 0.1

    _known_embeddings(monkeypatch, scorer, texts, vectors)
    images = torch.zeros(4, 3, 8, 8)
    images[:, 0, 0, 0] = torch.arange(4).float()
    assert scorer.r_precision(images, texts, texts) == 1.0  # true caption dropped from distractors
    shifted = texts[1:] + texts[:1]
    assert scorer.r_precision(images, shifted, [[t] for t in texts]) == 0.0


def test_r_precision_is_at_chance_for_unrelated_embeddings(scorer, monkeypatch):
    texts = ["a red cube", "a blue sphere", "a green cone", "a white torus"]
    gen = torch.Generator().manual_seed(0)
    _known_embeddings(
        monkeypatch, scorer, texts, lambda images: torch.randn(len(images), 4, generator=gen)
    )
    n = 2000
    true = [texts[i % 4] for i in range(n)]
    score = scorer.r_precision(torch.zeros(n, 3, 2, 2), true, texts)
    assert abs(score - 0.25) < 0.05  # 1 of 4 candidates


def test_r_precision_counts_ties_as_misses(scorer, monkeypatch):
    texts = ["a red cube", "a blue sphere"]
    monkeypatch.setattr(scorer, "text_embeddings", lambda ts: torch.ones(len(ts), 16) / 4)
    assert scorer.r_precision(_images(3), [texts[0]] * 3, texts[1:]) == 0.0


def test_direction_similarity_follows_the_caption_change(scorer, monkeypatch):
    texts = ["a red cube", "a blue cube", "a red cone"]
    # Editing moves the image embedding along +e1 (towards "a blue cube").
    _known_embeddings(monkeypatch, scorer, texts, lambda images: images.flatten(1)[:, :3])
    src = torch.tensor([[1.0, 0.0, 0.0]]).repeat(2, 1)
    dst = torch.tensor([[1.0, 1.0, 0.0]]).repeat(2, 1)
    toward = scorer.clip_direction_similarity(src, dst, "a red cube", "a blue cube")
    away = scorer.clip_direction_similarity(dst, src, "a red cube", "a blue cube")
    other = scorer.clip_direction_similarity(src, dst, "a red cube", "a red cone")
    assert toward.shape == (2,)
    assert (toward > 0.9).all() and (away < -0.9).all() and (other.abs() < toward).all()


def test_direction_similarity_on_the_real_model_is_a_cosine(scorer):
    d = scorer.clip_direction_similarity(
        _images(3), _images(3, seed=1), "a red cube", "a blue cube"
    )
    assert d.shape == (3,) and (d.abs() <= 1 + 1e-6).all()


def test_classify_names_world_attributes(scorer):
    images = _images(3)
    assert set(scorer.classify(images, "shape")) <= set(SHAPES)
    assert set(scorer.classify(images, "colour")) <= set(COLOURS)
    assert set(scorer.classify(images, "view")) <= {"front", "side", "back"}
    with pytest.raises(ValueError):
        scorer.classify(images, "size")


def test_normalisation_is_read_from_the_folder(clip_folder, tmp_path):
    import shutil

    copy = Path(shutil.copytree(clip_folder, tmp_path / "clip"))
    mean, std = [0.48, 0.46, 0.41], [0.27, 0.26, 0.28]
    (copy / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": mean, "image_std": std})
    )
    scorer = ClipScorer.load(copy)
    assert torch.allclose(scorer.mean.flatten(), torch.tensor(mean))
    x = torch.full((1, 3, 64, 64), 0.48)
    assert scorer.pixel_values(x)[0, 0].abs().max() < 1e-5


def test_missing_models_raise_one_line_model_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="not found") as err:
        ClipScorer.load(tmp_path / "nowhere")
    assert "\n" not in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no CLIP weights"):
        ClipScorer.load(tmp_path / "empty")
    monkeypatch.setenv("DREAMLIFT_ZOO_DIR", str(tmp_path / "zoo"))
    with pytest.raises(ModelError, match="dreamlift zoo train toy-clip"):
        ClipScorer.load("toy-clip")


def test_malformed_clip_folders_raise_one_line_model_errors(clip_folder, tmp_path):
    import shutil

    def broken(name: str) -> Path:
        return Path(shutil.copytree(clip_folder, tmp_path / name))

    truncated = broken("truncated")  # transformers: SafetensorError
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    garbled = broken("garbled")  # transformers: OSError
    (garbled / "config.json").write_text("{not json")
    listed = broken("listed")  # transformers: TypeError, caught by the JSON check
    (listed / "config.json").write_text("[1, 2]")
    wider = broken("wider")  # transformers: its size-mismatch RuntimeError
    config = json.loads((wider / "config.json").read_text())
    config["text_config"]["hidden_size"] *= 2
    (wider / "config.json").write_text(json.dumps(config))
    for folder, match in (
        (truncated, "cannot load CLIP"),
        (garbled, "unreadable"),
        (listed, "not a JSON object"),
        (wider, "do not fit its config.json"),
    ):
        with pytest.raises(ModelError, match=match) as err:
            ClipScorer.load(folder)
        assert "\n" not in str(err.value) and str(folder) in str(err.value)


@pytest.mark.parametrize(
    "error",
    [ZeroDivisionError("a bug"), RuntimeError("out of memory"), torch.OutOfMemoryError("CUDA")],
    ids=["bug", "cpu-oom", "cuda-oom"],
)
def test_bugs_and_out_of_memory_while_loading_clip_propagate_unchanged(
    clip_folder, monkeypatch, error
):
    from transformers import CLIPModel

    def fail(cls, *args, **kwargs):
        raise error

    monkeypatch.setattr(CLIPModel, "from_pretrained", classmethod(fail))
    with pytest.raises(type(error)) as info:
        ClipScorer.load(clip_folder)
    assert info.value is error


def test_fid_kid_are_zero_for_identical_sets_and_grow_with_a_shift(scorer):
    real = _images(24)
    same = fid_kid(real, real.clone(), scorer)
    assert abs(same["fid"]) < 1e-6 and abs(same["kid_mean"]) < 1e-3
    assert same["kid_subset_size"] < 24
    shifted = fid_kid(real, (real * 0.4).clamp(0, 1), scorer)
    assert shifted["fid"] > 100 * max(abs(same["fid"]), 1e-8)
    assert shifted["kid_mean"] > same["kid_mean"] + 1e-3
    further = fid_kid(real, torch.zeros_like(real) + 0.05, scorer)
    assert further["fid"] > shifted["fid"]


def test_fid_kid_accepts_channels_last_uint8_and_is_reproducible(scorer):
    real = _images(6)
    fake = _images(5, seed=3)
    a = fid_kid(real, fake, scorer)
    b = fid_kid((real * 255).round().byte().permute(0, 2, 3, 1), fake, scorer)
    assert a["kid_subset_size"] == 4  # below the smaller set
    assert a == pytest.approx(b, rel=1e-4, abs=1e-6)
    with pytest.raises(DataError):
        fid_kid(real[:1], fake, scorer)
