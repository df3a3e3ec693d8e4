"""A mode's result, assembled from what its run decoded: the text, timestamped segments in clip time, a
report per window, and for speculative decoding the trace of every teacher pass with its tokens rendered
as the page shows them. Pure functions of the run's output: nothing here decodes or times anything.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

from core.alignment import TimedWord
from core.audio import SAMPLE_RATE
from core.decoding import Decoded
from core.mode_run import ModeRun
from core.modes import TRAITS
from core.prompt import prefix_ids
from core.results import DraftPass, ModeResult, Segment, Timing, WindowReport, Word
from core.transcribe import WindowTranscript
from core.windows import Window

EDGE_SNAP_S = 0.5  # most a word's edge at a pause moves to meet the voice the VAD heard

BATCH_NOTE = ("The student and the teacher decode {batch} windows at a time; speculative decoding takes one at a "
              "time, so on long audio batching and speculation compete: its speed-up is against the batched teacher.")


def mode_result(run: ModeRun, transcripts: list[WindowTranscript], timing: Timing, algorithm: str) -> ModeResult:
    """The result of `run` (its mode on its request): `transcripts` are what its seek loop kept."""
    arena, request = run.arena, run.request
    options, traits = request.options, TRAITS[run.mode]
    texts = [run.text(t.kept).strip() for t in transcripts]
    audio_s = len(request.audio) / SAMPLE_RATE
    token_ids = [t.kept for t in transcripts]
    preset = arena.models.preset
    result = ModeResult(
        mode=run.mode,
        model=preset.student if traits.model == "student" else preset.teacher,
        text=" ".join(t for t in texts if t),
        segments=segments(transcripts, run.text, audio_s, options.word_timestamps) if options.timestamps else None,
        tokens=sum(len(arena.special.text_only(ids)) for ids in token_ids),
        timing=timing,
        audio_s=audio_s,
        algorithm=algorithm,
        precision=run.precision,
        batch_size=min(run.batch_size, max(len(transcripts), 1)),
        model_passes=sum(d.decoded.model_passes for t in transcripts for d in t.decodes),
        windows=[window_report(t, text) for t, text in zip(transcripts, texts)],
        token_ids=token_ids,
        language=options.language if arena.multilingual else None,
        detected_language=request.detected_language,
    )
    if traits.drafts:
        render = partial(token_text, arena.tokenizer, arena.special)
        result.trace = draft_trace(transcripts, len(prefix_ids(arena.tokenizer, options.prefix)), render)
        # drafting cost of every decode this mode ran (fallbacks and repairs included), not only those kept
        result.draft_tokens = sum(d.drafted for d in run.decodes)
        result.accepted_tokens = sum(d.accepted for d in run.decodes)
    if len(transcripts) > 1 and options.batch_size > 1 and not traits.batches:
        result.note = BATCH_NOTE.format(batch=options.batch_size)
    return result


def window_report(transcript: WindowTranscript, text: str) -> WindowReport:
    """One window as the safeguards saw it, from the decodes it kept."""
    kept = transcript.decodes
    return WindowReport(
        start_s=round(transcript.window.start_s, 2), end_s=round(transcript.window.end_s, 2), text=text,
        temperature=max((d.decoded.temperature for d in kept), default=0.0),
        attempts=max((d.attempts for d in kept), default=1),
        looped=any(d.decoded.looped for d in kept), no_speech=any(d.no_speech for d in kept),
        repaired=transcript.repaired, suspect=any(d.suspect for d in kept))


def segments(transcripts: list[WindowTranscript], text: Callable[[Sequence[int]], str],
             total_s: float, with_words: bool = False) -> list[Segment]:
    """Timestamped pieces of every window in clip time (a window's timestamps count from its own start):
    absolute, monotonic, within the audio. With words, a segment spans its words (their times come from the
    attention path, finer than the segment's timestamps)."""
    out: list[Segment] = []
    for transcript in transcripts:
        window = transcript.window
        for decode_ in transcript.decodes:
            for k, piece in enumerate(decode_.pieces):
                said = text(piece.tokens).strip()
                if not said:
                    continue
                floor = out[-1].end if out else 0.0
                start = max(window.clip_time(piece.start_s), floor)
                end = min(max(window.clip_time(piece.end_s, end=True), start), total_s)
                words = clip_words(decode_.words[k], window, floor, total_s) if with_words else None
                if words:
                    start, end = words[0].start_s, words[-1].end_s
                out.append(Segment(round(start, 2), round(end, 2), said, words))
    return out


def clip_words(timed: Sequence[TimedWord], window: Window, floor: float, total_s: float) -> tuple[Word, ...]:
    """Words in clip time, each starting where the one before ended at the earliest, within the audio, with
    their edges at a pause moved to the voice the VAD heard (`voiced_edges`)."""
    spans = []
    for w in timed:
        start = min(max(window.clip_time(w.start_s), floor), total_s)
        end = min(max(window.clip_time(w.end_s, end=True), start), total_s)
        spans.append((start, end))
        floor = end
    spans = voiced_edges(spans, window)
    return tuple(Word(w.text, round(a, 2), round(b, 2), round(w.probability, 4)) for w, (a, b) in zip(timed, spans))


def voiced_edges(spans: list[tuple[float, float]], window: Window) -> list[tuple[float, float]]:
    """Word spans (clip seconds) whose edges at a pause sit where the VAD heard voice start or stop.

    The attention path starts at its segment's first frame and runs on across the silences the window left
    out, and the last word's end is where the path reaches end-of-text, often early. So the first word of a
    speech region starts at the region's voice (pulled back or forward by at most EDGE_SNAP_S), its last
    word ends at it, and a word reaching back across a join into the region before starts in its own."""
    out = list(spans)
    for i, (start, end) in enumerate(out):
        voice_from = window.voiced_bounds(end)[0]
        if start < voice_from < end:
            start = voice_from
        previous_end = out[i - 1][1] if i else 0.0
        if (i == 0 or window.voiced_bounds(previous_end) != window.voiced_bounds(end)) \
                and voice_from < start <= voice_from + EDGE_SNAP_S:
            start = max(voice_from, previous_end)
        voice_to = window.voiced_bounds(start)[1]
        if start < voice_to < end:
            end = voice_to
        last_in_region = i == len(out) - 1 or window.voiced_bounds(out[i + 1][0]) != window.voiced_bounds(start)
        if last_in_region and end < voice_to <= end + EDGE_SNAP_S:
            end = min(voice_to, out[i + 1][0]) if i < len(out) - 1 else voice_to
        out[i] = (start, max(start, end))
    return out


def draft_trace(transcripts: list[WindowTranscript], start: int, render: Callable[[int], str]) -> list[DraftPass]:
    """Every teacher pass of the decodes kept, window by window: the first reads the prompt (and the forced
    prefix, `start` tokens) and drafts nothing, then one pass per draft."""
    trace = []
    for i, transcript in enumerate(transcripts):
        for segment in transcript.decodes:
            d = segment.decoded
            first = d.tokens[start] if start < len(d.tokens) else None
            trace.append(_draft_pass(i, (), 0, first, render))
            trace += [_draft_pass(i, p.draft, p.accepted, _emitted(d, p), render) for p in d.passes]
    return trace


def _emitted(decoded: Decoded, p) -> int | None:
    """The token a speculative pass added after its kept drafts (None: the window ended there)."""
    index = p.position + p.accepted
    return decoded.tokens[index] if index < len(decoded.tokens) else None


def _draft_pass(window: int, draft: tuple[int, ...], accepted: int, emitted: int | None,
                render: Callable[[int], str]) -> DraftPass:
    return DraftPass(window, draft, accepted, emitted, tuple(render(t) for t in draft),
                     None if emitted is None else render(emitted))


def token_text(tokenizer, special, token: int) -> str:
    """A token as the page shows it: its text, a timestamp as <|1.24|>, other specials by name."""
    if token >= special.timestamp_begin:
        return f"<|{(token - special.timestamp_begin) * 0.02:.2f}|>"
    if token >= special.eot:
        return tokenizer.convert_ids_to_tokens(token)
    return tokenizer.decode([token])
