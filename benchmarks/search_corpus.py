"""A seeded synthetic video catalog and query mix for search benchmarks.

The catalog has the shape of a short-video platform's text:

* titles of 3 to 8 words drawn from a Zipf (exponent 1) vocabulary of 50,000 words, so
  the commonest word is in about 39% of titles;
* 0 to 5 hashtags per video from a Zipf vocabulary of 20,000 tags;
* 100,000 creators (a handle and a two-word display name) with Zipf-distributed output;
* a sound on 60% of videos, from 30,000 Zipf-distributed sound names of 2 to 4 words.

Words are pronounceable pseudo-words (so prefixes such as ``abc*`` expand to realistic
numbers of terms). Everything is drawn with numpy from one seed; only the final
strings are assembled in Python.

:func:`query_mix` draws the six query kinds a search box sees: one common word, two
words from one title, a rare word, a three-letter prefix (``abc*``), a hashtag, and an
as-you-type query whose last term is unfinished.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from reelrank import SearchDocument

__all__ = ["SIZES", "Corpus", "Query", "make_corpus", "mode_size", "query_mix"]

SIZES = {"10k": 10_000, "100k": 100_000, "1M": 1_000_000}
"""Catalog sizes the benchmarks run at."""

_WORDS = 50_000
_TAGS = 20_000
_CREATORS = 100_000
_SOUNDS = 30_000
_FIRST_NAMES = 3_000
_SOUND_SHARE = 0.6
_ONSETS = [*"bcdfghjklmnprstvwz", "ch", "sh", "th", "tr", "st", "br", "pl"]
_VOWELS = [*"aeiou", "ai", "ea", "oo", "ou"]
_CODAS = ["", "", "", "n", "r", "s", "l", "t", "ck", "ng"]


def mode_size() -> int:
    """10,000 videos with ``REELRANK_BENCH_QUICK=1``, else 1,000,000."""
    return SIZES["10k"] if os.environ.get("REELRANK_BENCH_QUICK") == "1" else SIZES["1M"]


def _pseudo_words(rng: np.random.Generator, count: int, *, exclude: set[str]) -> list[str]:
    """``count`` distinct pronounceable words of 1 to 4 syllables, none in ``exclude``."""
    words: list[str] = []
    seen = set(exclude)
    while len(words) < count:
        batch = 2 * (count - len(words)) + 16
        syllables = rng.integers(1, 5, size=batch)
        onsets = rng.integers(0, len(_ONSETS), size=(batch, 4))
        vowels = rng.integers(0, len(_VOWELS), size=(batch, 4))
        codas = rng.integers(0, len(_CODAS), size=(batch, 4))
        for row in range(batch):
            word = "".join(
                _ONSETS[onsets[row, s]] + _VOWELS[vowels[row, s]] + _CODAS[codas[row, s]]
                for s in range(syllables[row])
            )
            if word not in seen:
                seen.add(word)
                words.append(word)
                if len(words) == count:
                    break
    return words


def _zipf(rng: np.random.Generator, vocabulary: int, size: int) -> np.ndarray:
    """``size`` ranks in ``[0, vocabulary)`` with probability proportional to 1 / (rank + 1)."""
    cdf = np.cumsum(1.0 / np.arange(1, vocabulary + 1))
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size)), vocabulary - 1).astype(np.int32)


@dataclass(frozen=True)
class Corpus:
    """Column-wise catalog text: row ``i`` describes ``video_ids[i]``."""

    video_ids: np.ndarray
    """int64 video ids (shuffled, so insertion order is not id order)."""
    titles: list[str]
    """Titles, 3 to 8 words."""
    hashtags: list[tuple[str, ...]]
    """0 to 5 hashtags per video, without ``#``."""
    sound_names: list[str]
    """Sound name, empty for the 40% of videos without a sound."""
    creator_names: list[str]
    """The creator's handle and display name."""
    words: list[str]
    """Title vocabulary, commonest first."""
    tags: list[str]
    """Hashtag vocabulary, commonest first."""
    title_words: np.ndarray
    """int32 word ranks of all titles, concatenated."""
    title_starts: np.ndarray
    """int64 offsets of each title in :attr:`title_words`."""
    creator_ranks: np.ndarray
    """int32 creator of each video, ``0`` to ``99,999`` (the commonest first)."""

    def __len__(self) -> int:
        return int(self.video_ids.shape[0])

    def documents(self) -> list[SearchDocument]:
        """The catalog as the search index takes it, one document per video."""
        from reelrank import SearchDocument

        return [
            SearchDocument(
                video_id=video_id,
                title=title,
                hashtags=hashtags,
                sound_name=sound,
                creator_name=creator,
            )
            for video_id, title, hashtags, sound, creator in zip(
                self.video_ids.tolist(),
                self.titles,
                self.hashtags,
                self.sound_names,
                self.creator_names,
                strict=True,
            )
        ]


def make_corpus(size: int, *, seed: int = 7) -> Corpus:
    """The catalog of ``size`` videos for ``seed`` (the same seed gives the same catalog)."""
    rng = np.random.default_rng(seed)
    words = _pseudo_words(rng, _WORDS, exclude=set())
    tags = _pseudo_words(rng, _TAGS, exclude=set(words))
    first_names = _pseudo_words(rng, _FIRST_NAMES, exclude=set())
    video_ids = rng.permutation(np.arange(1, size + 1, dtype=np.int64) * 3)

    lengths = rng.integers(3, 9, size=size)
    title_starts = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(lengths, out=title_starts[1:])
    title_words = _zipf(rng, _WORDS, int(title_starts[-1]))
    flat = [words[w] for w in title_words.tolist()]
    starts = title_starts.tolist()
    titles = [" ".join(flat[starts[i] : starts[i + 1]]) for i in range(size)]

    tag_counts = rng.integers(0, 6, size=size)
    tag_ranks = _zipf(rng, _TAGS, int(tag_counts.sum())).tolist()
    hashtags: list[tuple[str, ...]] = []
    position = 0
    for count in tag_counts.tolist():
        hashtags.append(
            tuple(dict.fromkeys(tags[r] for r in tag_ranks[position : position + count]))
        )
        position += count

    handles = [
        f"{words[w]}{n}"
        for w, n in zip(
            rng.integers(0, _WORDS, size=_CREATORS).tolist(),
            rng.integers(0, 1000, size=_CREATORS).tolist(),
            strict=True,
        )
    ]
    display = rng.integers(0, _FIRST_NAMES, size=(_CREATORS, 2)).tolist()
    creators = [
        f"{handle} {first_names[a].title()} {first_names[b].title()}"
        for handle, (a, b) in zip(handles, display, strict=True)
    ]
    creator_ranks = _zipf(rng, _CREATORS, size)
    creator_names = [creators[c] for c in creator_ranks.tolist()]

    sound_words = rng.integers(2, 5, size=_SOUNDS)
    sound_ranks = _zipf(rng, _WORDS, int(sound_words.sum())).tolist()
    sounds: list[str] = []
    position = 0
    for count in sound_words.tolist():
        sounds.append(" ".join(words[r] for r in sound_ranks[position : position + count]).title())
        position += count
    has_sound = rng.random(size) < _SOUND_SHARE
    sound_of = _zipf(rng, _SOUNDS, size).tolist()
    sound_names = [
        sounds[s] if present else ""
        for s, present in zip(sound_of, has_sound.tolist(), strict=True)
    ]
    return Corpus(
        video_ids=video_ids,
        titles=titles,
        hashtags=hashtags,
        sound_names=sound_names,
        creator_names=creator_names,
        words=words,
        tags=tags,
        title_words=title_words,
        title_starts=title_starts,
        creator_ranks=creator_ranks,
    )


@dataclass(frozen=True)
class Query:
    """One query of the mix."""

    kind: str
    """``common``, ``two_words``, ``rare``, ``prefix``, ``hashtag`` or ``as_you_type``."""
    text: str
    """What the user typed."""
    as_you_type: bool
    """Whether the last term is unfinished (searched as a prefix)."""


QUERY_KINDS = ("common", "two_words", "rare", "prefix", "hashtag", "as_you_type")


def query_mix(corpus: Corpus, count: int = 200, *, seed: int = 11) -> list[Query]:
    """``count`` queries cycling through the six kinds, drawn from ``corpus``'s vocabularies."""
    rng = np.random.default_rng(seed)
    queries: list[Query] = []
    rows = len(corpus)
    for number in range(count):
        kind = QUERY_KINDS[number % len(QUERY_KINDS)]
        if kind == "common":
            text, as_you_type = corpus.words[int(rng.integers(0, 100))], False
        elif kind == "rare":
            text, as_you_type = corpus.words[int(rng.integers(5_000, _WORDS))], False
        elif kind == "prefix":
            word = corpus.words[int(_zipf(rng, 2_000, 1)[0])]
            text, as_you_type = word[:3] + "*", False
        elif kind == "hashtag":
            text, as_you_type = "#" + corpus.tags[int(_zipf(rng, _TAGS, 1)[0])], False
        else:
            row = int(rng.integers(0, rows))
            start, end = int(corpus.title_starts[row]), int(corpus.title_starts[row + 1])
            picked = sorted(rng.choice(end - start, size=2, replace=False).tolist())
            first, second = (corpus.words[int(corpus.title_words[start + i])] for i in picked)
            if kind == "two_words":
                text, as_you_type = f"{first} {second}", False
            else:
                typed = int(rng.integers(1, min(4, len(second)) + 1))
                text, as_you_type = f"{first} {second[:typed]}", True
        queries.append(Query(kind=kind, text=text, as_you_type=as_you_type))
    return queries
