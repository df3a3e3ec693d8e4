"""Word error rate on Whisper-normalised text.

Modes are compared the way the Whisper and Distil-Whisper papers compare them:
both sides go through Whisper's English normaliser first, so casing,
punctuation, British spellings and spelled-out numbers are not counted as errors.
"""

from typing import Iterable, Optional

import jiwer
from whisper_normalizer.english import EnglishTextNormalizer

# What WER means when the normalised reference has no words: there is nothing
# to divide by, so any hypothesis words are simply "all wrong" (1.0) and
# silence against silence is perfect (0.0). jiwer itself returns a raw count
# here, which is not a rate and can exceed any sensible display range.
EMPTY_REFERENCE_WER = 1.0

_normalizer: Optional[EnglishTextNormalizer] = None


def _get_normalizer() -> EnglishTextNormalizer:
    """Build lazily: loading english.json costs a little and not every caller needs it."""
    global _normalizer
    if _normalizer is None:
        _normalizer = EnglishTextNormalizer()
    return _normalizer


def normalize(text: Optional[str]) -> str:
    """Whisper's English normalisation, with whitespace collapsed; None reads as ''."""
    if not text:
        return ""
    return " ".join(_get_normalizer()(text).split())


def wer(reference: str, hypothesis: str) -> float:
    """WER of `hypothesis` against `reference`, both normalised first.

    Empty normalised reference: 0.0 if the hypothesis is empty too, else
    EMPTY_REFERENCE_WER (1.0). The result can exceed 1.0 when the hypothesis
    inserts many words.
    """
    ref = normalize(reference)
    hyp = normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else EMPTY_REFERENCE_WER
    if not hyp:
        return 1.0  # every reference word deleted
    return float(jiwer.wer(ref, hyp))


def corpus_wer(references: Iterable[str], hypotheses: Iterable[str]) -> float:
    """Corpus WER: total edits over total reference words, not a mean of per-item WERs.

    Pairs whose normalised reference is empty are skipped, since they have no
    words to weigh against; if every pair is skipped the result is 0.0.
    Raises ValueError when the two lists differ in length.
    """
    references = list(references)
    hypotheses = list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(
            f"got {len(references)} references but {len(hypotheses)} hypotheses"
        )

    edits = 0
    ref_words = 0
    for reference, hypothesis in zip(references, hypotheses):
        ref = normalize(reference)
        if not ref:
            continue
        hyp = normalize(hypothesis)
        n = len(ref.split())
        ref_words += n
        if not hyp:
            edits += n
            continue
        out = jiwer.process_words(ref, hyp)
        edits += out.substitutions + out.deletions + out.insertions

    if ref_words == 0:
        return 0.0
    return edits / ref_words


def insertion_rate(references: Iterable[str], hypotheses: Iterable[str]) -> float:
    """Inserted words over reference words, corpus-wide (the Distil-Whisper paper's hallucination measure:
    words that are in no reference, e.g. text invented in silence or noise). Empty references count their
    hypothesis words as insertions against nothing, so they raise the rate but add no reference words."""
    inserted = words = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        ref, hyp = normalize(reference), normalize(hypothesis)
        words += len(ref.split())
        if not hyp:
            continue
        if not ref:
            inserted += len(hyp.split())
            continue
        inserted += jiwer.process_words(ref, hyp).insertions
    return inserted / words if words else 0.0


def repetition_rate(texts: Iterable[str], n: int = 5) -> float:
    """Share of word n-grams that repeat an earlier n-gram of the same text (the paper's 5-gram repetitions:
    a looping decoder scores high; so does a menu that repeats itself, hence the reference's own rate)."""
    repeated = total = 0
    for text in texts:
        words = normalize(text).split()
        seen = set()
        for i in range(len(words) - n + 1):
            gram = tuple(words[i : i + n])
            repeated += gram in seen
            seen.add(gram)
            total += 1
    return repeated / total if total else 0.0


def word_diff(reference: str, hypothesis: str) -> list[tuple[str, str, str]]:
    """The hypothesis aligned on the reference, word by word, both normalised (jiwer's alignment):
    (op, reference word, hypothesis word) with op "equal", "substitute", "insert" (no reference word) or
    "delete" (no hypothesis word)."""
    ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
    if not ref or not hyp:
        return [("insert", "", w) for w in hyp] + [("delete", w, "") for w in ref]
    out = []
    for chunk in jiwer.process_words(" ".join(ref), " ".join(hyp)).alignments[0]:
        r, h = ref[chunk.ref_start_idx : chunk.ref_end_idx], hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if chunk.type == "insert":
            out += [("insert", "", w) for w in h]
        elif chunk.type == "delete":
            out += [("delete", w, "") for w in r]
        else:
            out += [(chunk.type, a, b) for a, b in zip(r, h)]
    return out


LOUD_DB = -20.0  # an utterance's speech, by energy: 50 ms frames within this many dB of its loudest


def loud_span(audio, sample_rate: int = 16000, db: float = LOUD_DB) -> tuple[float, float]:
    """(start, end) seconds of the first and last 50 ms frame of `audio` within `db` of its loudest frame: where
    a clean recorded utterance starts and ends, by energy alone (the reference that word times are checked
    against, independent of the VAD that cuts the app's windows)."""
    import numpy as np

    frame = sample_rate // 20
    n = len(audio) // frame
    rms = np.sqrt((np.asarray(audio[: n * frame], dtype=np.float64).reshape(n, frame) ** 2).mean(1))
    loud = np.nonzero(rms >= rms.max() * 10 ** (db / 20))[0]
    return loud[0] * frame / sample_rate, (loud[-1] + 1) * frame / sample_rate
