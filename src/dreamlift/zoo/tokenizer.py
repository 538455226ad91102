"""A word-level CLIP tokenizer for a closed vocabulary (the world's captions).

Why not ``CLIPTokenizer(vocab_file=..., merges_file=...)``: under transformers 5.x that
constructor silently ignores the files and maps every word to ``unk``. Hand-written merge
lists also collide between words. So the merges are learnt by byte-pair encoding until every
word is one ``</w>``-terminated token, and saved as the ``vocab.json`` + ``merges.txt`` pair
that ``CLIPTokenizer.from_pretrained`` reads, exactly like the files shipped with Stable
Diffusion.

Why not the ``tokenizers`` BPE trainer: it breaks ties between equally frequent pairs in hash
order, which changes from process to process, so the same words got different ids in every
run. A model trained across resumed runs, or a test prior built per session, then saw words
swap ids. :func:`learn_merges` breaks ties by the pair itself, so the files are a pure
function of the word list.
"""

from __future__ import annotations

import json
from collections import Counter
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
    from transformers import CLIPTokenizer

    vocab = list(dict.fromkeys(w.strip().lower() for w in words if w.strip()))
    if not vocab:
        raise ValueError("build_tokenizer needs at least one word")
    if any(" " in w for w in vocab):
        raise ValueError("build_tokenizer takes single words, not phrases")
    merges = learn_merges(vocab)
    alphabet = sorted({symbol for word in vocab for symbol in _symbols(word)})
    tokens = [BOS, EOS, *alphabet, *("".join(pair) for pair in merges)]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        # from_pretrained prefers these over vocab.json + merges.txt: a rebuild must drop them.
        (folder / stale).unlink(missing_ok=True)
    ids = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(ids, ensure_ascii=False))
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n")
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=max_length)
    tokenizer.save_pretrained(folder)
    return tokenizer


def reuse_or_build_tokenizer(words: Iterable[str], folder: Path, max_length: int) -> CLIPTokenizer:
    """The tokenizer already in ``folder`` when it holds every word, else a new one there.

    Trainers call this so that a resumed run keeps the word ids its checkpoint was trained
    with, even when the folder was written by an older build of :func:`build_tokenizer`.
    """
    from transformers import CLIPTokenizer

    words = list(words)
    folder = Path(folder)
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=max_length)
        if all(len(tokenizer(w).input_ids) == 3 for w in words if w.strip()):
            return tokenizer
    return build_tokenizer(words, folder, max_length)


def _symbols(word: str) -> tuple[str, ...]:
    """A word as BPE starts it: its characters, the last one carrying CLIP's ``</w>``."""
    return (*word[:-1], word[-1] + "</w>")


def learn_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """Byte-pair merges, most frequent pair first, until every word is a single token.

    Ties go to the smallest pair, so the result depends on the words alone. Applying the
    merges by rank, as CLIP's tokenizer does, replays this loop on each word: when a merge's
    turn comes, no lower-ranked pair is left in the word, so every word ends whole.
    """
    pieces = [list(_symbols(w)) for w in dict.fromkeys(words)]
    merges: list[tuple[str, str]] = []
    while True:
        counts = Counter(pair for p in pieces for pair in zip(p, p[1:], strict=False))
        if not counts:
            return merges
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        for p in pieces:
            i = 0
            while i < len(p) - 1:
                if (p[i], p[i + 1]) == best:
                    p[i : i + 2] = [p[i] + p[i + 1]]
                i += 1
