"""The words of a live session: LocalAgreement-2 commits what two hypotheses in a row agree on.

Each update re-decodes the whole buffer, so a word near its end may still change. A word is committed
once the next hypothesis says it again (ignoring case and punctuation), and committed words are never
revised. The committed words still inside the buffer are forced as the decoder's prefix: they cost
one parallel decoder pass instead of one step each, and only the model's continuation after them is
compared with the previous one.

When the buffer drops audio, a decode of that audio says how many committed words leave with it. The
two decodes never line up word for word (a revised word, a dropped word, a phrase said twice), so
they are aligned on their longest matching runs (`covered`, `through`).
"""

from __future__ import annotations

import re
from difflib import Match, SequenceMatcher
from typing import Callable

MAX_SHIFT_WORDS = 3  # a revised hypothesis shifts committed words by at most this many
TRAILING_PUNCTUATION = ".,?!;:"


def norm(word: str) -> str:
    """Agreement ignores case and punctuation: 'Americans,' then 'Americans' is the same word."""
    return re.sub(r"[^\w']+", "", word.lower())


def common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n


def last_aligned_run(ref: list[str], hyp: list[str]) -> Match | None:
    """The last run of words `ref` and `hyp` share, aligned on the longest matching runs, so one revised
    word does not misplace the rest; runs shifted by more than MAX_SHIFT_WORDS are ignored (a repeated
    phrase later on is not a match)."""
    runs = [
        m for m in SequenceMatcher(None, ref, hyp, autojunk=False).get_matching_blocks()
        if m.size and abs(m.b - m.a) <= MAX_SHIFT_WORDS
    ]
    return runs[-1] if runs else None


def covered(ref: list[str], hyp: list[str]) -> int:
    """How many leading words of `hyp` say what all of `ref` says (both start at the same sample).

    Unmatched trailing words of `ref` count one for one.
    """
    if not ref or not hyp:
        return 0
    run = last_aligned_run(ref, hyp)
    end_ref, end_hyp = (run.a + run.size, run.b + run.size) if run else (0, 0)
    return min(end_hyp + len(ref) - end_ref, len(hyp))


def through(ref: list[str], hyp: list[str]) -> int | None:
    """How many words of `ref` all of `hyp` says, if `hyp` ends on a word aligned with `ref` (else None):
    a trim must not trust a decode of the audio to drop that ends on words nobody committed (a loop)."""
    run = last_aligned_run(ref, hyp)
    if not hyp or run is None or run.b + run.size != len(hyp):
        return None
    return run.a + run.size


class Agreement:
    """Committed words (final), those of them still in the buffer, and the tentative tail.

    `clock` gives seconds: a committed piece's latency runs from its latest word's stamp (the arrival
    of the chunk that completed it) to its commit.
    """

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.committed: list[str] = []
        self.in_buffer: list[str] = []  # committed words said inside the buffer: the decoder's prefix
        self.tentative: list[tuple[str, float]] = []  # (word, arrival stamp of its completing chunk)
        self.latencies: list[float] = []

    @property
    def heard(self) -> int:
        """Words the latest hypothesis said, committed or not."""
        return len(self.committed) + len(self.tentative)

    def prefix(self) -> list[str]:
        """The committed words the decoder must say first. The last one goes in without its trailing
        punctuation: a full stop forced there makes the model skip ahead."""
        prefix = [*self.in_buffer[:-1], *(w.rstrip(TRAILING_PUNCTUATION) for w in self.in_buffer[-1:])]
        return [w for w in prefix if w]

    def hypothesis(self, words: list[str], stamp: float) -> None:
        """A new continuation of the buffer: commit what it shares with the previous one, keep the rest tentative."""
        tail, agreed = self._stamped(words, stamp)
        agreed = min(agreed, len(tail) - 1)  # the last word heard may be cut short, its punctuation a guess
        self._commit(tail[:agreed])
        self.tentative = tail[agreed:]

    def commit_all(self, words: list[str], stamp: float) -> None:
        """A pause ended the utterance: commit all of its last continuation; the next buffer starts empty."""
        self._commit(self._stamped(words, stamp)[0])
        self.in_buffer, self.tentative = [], []

    def release(self, dropped: list[str], force: bool, stamp: Callable[[], float]) -> bool:
        """The buffer drops audio whose decode said `dropped`: those committed words leave the prefix.

        False (nothing changes) if that decode does not end on committed words, unless `force` (the buffer
        is at its cap): then what it says beyond the committed words is committed, stamped by `stamp`.
        """
        norm_dropped, in_buffer = [norm(w) for w in dropped], [norm(w) for w in self.in_buffer]
        said = through(in_buffer, norm_dropped) if norm_dropped else 0  # committed words the dropped audio holds
        if said is None and not force:
            return False
        if said is None:
            known = covered(in_buffer, norm_dropped)  # words of the dropped audio already committed
            self._commit([(w, stamp()) for w in dropped[known:]])
            self.in_buffer, self.tentative = [], []
        else:
            self.in_buffer = self.in_buffer[said:]
        return True

    def _stamped(self, words: list[str], stamp: float) -> tuple[list[tuple[str, float]], int]:
        """This hypothesis's words (its spelling: it heard more), each stamped with the arrival that first
        let a hypothesis say it, and how many leading words it shares with the previous hypothesis's
        tail (LocalAgreement-2): those keep their earlier stamp, the rest get `stamp`."""
        agreed = common_prefix([norm(w) for w, _ in self.tentative], [norm(w) for w in words])
        return [(w, self.tentative[i][1] if i < agreed else stamp) for i, w in enumerate(words)], agreed

    def _commit(self, words: list[tuple[str, float]]) -> None:
        """Append words for good; the piece's latency runs from its latest word's completing chunk."""
        if not words:
            return
        self.committed.extend(w for w, _ in words)
        self.in_buffer.extend(w for w, _ in words)
        self.latencies.append(self.clock() - max(s for _, s in words))
