"""A word-level CLIP tokenizer for a closed vocabulary (the world's captions).

Why not ``CLIPTokenizer(vocab_file=..., merges_file=...)``: under transformers 5.x that
constructor silently ignores the files and maps every word to ``unk``. Hand-written merge
lists also collide between words. So the vocabulary is learnt by the ``tokenizers`` BPE
trainer — with enough merges every word becomes one ``</w>``-terminated token — and saved as
the ``vocab.json`` + ``merges.txt`` pair that ``CLIPTokenizer.from_pretrained`` reads, exactly
like the files shipped with Stable Diffusion.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
PUNCTUATION = (",", ".")
WORLD_VOCAB_MAX = 2000
"""A closed-vocabulary tokenizer is far smaller than a real CLIP's (49,408 entries)."""


def caption_words() -> list[str]:
    """Every word of the world's caption grammar plus the punctuation captions use."""
    from dreamlift.world.captions import vocabulary

    words = [w for group in vocabulary().values() for w in group]
    return list(dict.fromkeys([*words, *PUNCTUATION]))


def uses_world_vocabulary(tokenizer: Any) -> bool:
    """Whether a (prior's) tokenizer is the world's closed vocabulary, as a toy prior's is:
    small, and holding every caption word as one token."""
    vocab = tokenizer.get_vocab()
    if len(vocab) > WORLD_VOCAB_MAX:
        return False
    return all(f"{w}</w>" in vocab for w in caption_words() if w.isalpha())


def build_tokenizer(words: Iterable[str], folder: Path, max_length: int) -> CLIPTokenizer:
    """Train a tokenizer on ``words``, save it into ``folder`` and load it back as CLIP's.

    Every word (lowercased) maps to exactly one token; ``max_length`` becomes the tokenizer's
    ``model_max_length`` and must not exceed the text encoder's position embeddings (the
    CLIP default of 77 overflows small encoders).
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    vocab = list(dict.fromkeys(w.lower() for w in words if w.strip()))
    if not vocab:
        raise ValueError("build_tokenizer needs at least one word")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token=EOS, end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.Lowercase()
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        # Large enough that merging never stops before every word is whole.
        vocab_size=len(vocab) * 64 + 1024,
        special_tokens=[BOS, EOS],
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    bpe.train_from_iterator(vocab, trainer=trainer)
    bpe.model.save(str(folder))
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=max_length)
    tokenizer.save_pretrained(folder)
    return tokenizer
