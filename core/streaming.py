"""Live transcription: one rolling buffer, re-decoded as audio arrives, committed by LocalAgreement-2.

Modelled on ufal/whisper_streaming's OnlineASRProcessor. Chunks (any rate, any channel layout) are
resampled to 16 kHz and appended to ONE buffer; each update re-decodes the whole buffer with one
mode and commits the longest run of words on which this hypothesis and the previous one agree.
Committed words are never revised. Every mode runs this same rule, timestamp-free.

`LiveTranscriber` only joins the parts in core/live/, one job each, so that it reads as the
algorithm: `Intake` keeps the recording up to the session cap, `EnergyGate` keeps silence away from
the model and ends an utterance on a pause (decoded up to the pause, committed whole), `Agreement`
holds the words and the commit rule, `RollingBuffer` bounds the audio an update decodes and trims it,
`Pace` says when an update is due, and `LiveDecoder` calls the engine. Their modules say why each
rule is what it is. The last decode (`finish`) always runs.

`LiveSession` runs a LiveTranscriber on a thread of its own, because a browser stream drops the
chunks recorded while its handler runs.
"""

from __future__ import annotations

import logging
import queue
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from core.audio import SAMPLE_RATE
from core.errors import ArenaError
from core.live.agreement import Agreement
from core.live.buffer import BUFFER_CAP_S, TRIM_S, RollingBuffer
from core.live.decoder import LiveDecoder
from core.live.energy import EnergyGate
from core.live.intake import MAX_SESSION_S, Intake, StreamTooLongError
from core.live.pace import DECODE_EVERY_S, Pace
from core.modes import MODES

IDLE_END_S = 30.0  # a LiveSession that gets no chunk for this long (a closed tab) finishes by itself
SETTLE_S = 0.3  # on finish, wait until no chunk came for this long: the browser sends its last ones after "stop"
MAX_SETTLE_S = 2.0

__all__ = ["LiveSession", "LiveTranscriber", "StreamState", "StreamTooLongError", "percentile"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamState:
    """What a live view shows after each update."""

    committed_text: str  # final: only ever extended
    tentative_text: str  # the unconfirmed tail of the latest hypothesis
    audio_s: float  # audio received so far
    buffer_s: float  # audio in the rolling buffer now
    max_buffer_s: float
    decodes: int
    last_update_s: float  # compute time of the latest update that decoded
    rtfx: float  # buffer seconds decoded per compute second, latest update
    commit_latencies: tuple[float, ...]  # per committed piece: completing chunk's arrival -> commit
    falling_behind: bool
    decode_every_s: float  # seconds between updates: DECODE_EVERY_S, or the compute time when falling behind
    message: str
    finished: bool

    @property
    def text(self) -> str:
        return " ".join(t for t in (self.committed_text, self.tentative_text) if t)

    @property
    def latency_median_s(self) -> float | None:
        return statistics.median(self.commit_latencies) if self.commit_latencies else None

    @property
    def latency_p95_s(self) -> float | None:
        return percentile(self.commit_latencies, 95)


def percentile(values, q: float) -> float | None:
    """Nearest-rank percentile (None for no values): honest on the few dozen commits of a clip."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(np.ceil(q / 100 * len(ordered))) - 1))]


class LiveTranscriber:
    """Feed chunks with `insert` + `process` (or `update`), read `state`, end with `finish`.

    `arena` is a core.engine.Arena (anything with `transcribe(audio, Options)`); `clock` gives
    seconds and is used for arrival stamps, commit times and compute time (tests may fake it).
    """

    def __init__(
        self,
        arena,
        mode: str = "student",
        *,
        language: str | None = "en",
        decode_every_s: float = DECODE_EVERY_S,
        trim_s: float = TRIM_S,
        buffer_cap_s: float = BUFFER_CAP_S,
        max_session_s: float = MAX_SESSION_S,
        clock: Callable[[], float] = time.perf_counter,
    ):
        if mode not in MODES:
            raise ArenaError(f"Live transcription runs one mode among {', '.join(MODES)}, not {mode!r}.")
        self.buffer = RollingBuffer(trim_s, buffer_cap_s)
        self.arena, self.mode, self.clock = arena, mode, clock
        self.intake = Intake(max_session_s)
        self.gate = EnergyGate()
        self.words = Agreement(clock)
        self.pace = Pace(clock, decode_every_s)
        self.decoder = LiveDecoder(arena, mode, language, clock)
        self.finished = False

    def update(self, samples: np.ndarray, sample_rate: int) -> StreamState:
        """One call per browser chunk: append it, decode if due."""
        self.insert(samples, sample_rate)
        return self.process()

    def insert(self, samples: np.ndarray, sample_rate: int, arrived_at: float | None = None) -> None:
        """Append a chunk ((N,) or (N, channels), any dtype/rate). Cheap unless the buffer hits its cap.

        Raises StreamTooLongError once the session cap is reached (audio up to the cap is kept).
        """
        if self.finished:
            raise ArenaError("This live session has ended; start a new recording.")
        if np.asarray(samples).size == 0:
            return
        arrived_at = self.clock() if arrived_at is None else arrived_at
        audio, over = self.intake.take(samples, sample_rate)
        self.pace.arrived(len(audio), self.intake.received, arrived_at)
        self.gate.listen(audio)
        piece = int(self.buffer.cap_s / 2 * SAMPLE_RATE)  # a huge chunk must not overflow the buffer
        for start in range(0, len(audio), piece):
            self._append(audio[start : start + piece], self.intake.received - len(audio) + start, arrived_at)
        if over:
            raise self.intake.cap_error()

    def process(self) -> StreamState:
        """Re-decode the buffer if enough new audio arrived; commit what two hypotheses agree on, or
        all of an utterance that a pause ended."""
        if not self.finished and self.pace.due() and not self.pace.queued(self.intake.received):
            phrase_after = self.buffer.phrase_pauses_after(len(self.words.committed))
            split = self.gate.utterance_end(self.buffer.samples, phrase_after)
            self._timed(self._decode_and_commit if split is None else lambda stamp: self._flush(stamp, *split))
        self.pace.returned()
        return self.state

    def finish(self) -> StreamState:
        """The speaker stopped: commit the tentative tail; the final state (its text: `committed_text`)."""
        if not self.finished:
            if len(self.buffer):
                self._timed(lambda stamp: self._flush(stamp, len(self.buffer), len(self.buffer)))
            self.finished = True
        return self.state

    def recording(self) -> np.ndarray:
        """All 16 kHz audio received (silence included, up to the session cap): for the offline modes."""
        return self.intake.recording()

    @property
    def state(self) -> StreamState:
        words, pace = self.words, self.pace
        return StreamState(
            committed_text=" ".join(words.committed),
            tentative_text=" ".join(w for w, _ in words.tentative),
            audio_s=self.intake.seconds,
            buffer_s=self.buffer.seconds,
            max_buffer_s=self.buffer.max_len / SAMPLE_RATE,
            decodes=self.decoder.decodes,
            last_update_s=pace.last_update_s,
            rtfx=pace.rtfx,
            commit_latencies=tuple(words.latencies),
            falling_behind=pace.falling_behind,
            decode_every_s=pace.every_s,
            message=self.intake.too_long_message() if self.intake.capped else pace.lag_message(self.mode),
            finished=self.finished,
        )

    def _append(self, audio: np.ndarray, position: int, arrived_at: float) -> None:
        """Open an utterance on speech (with its pre-roll), extend it otherwise; keep under the cap."""
        if not len(self.buffer):
            opened = self.gate.open(audio)
            if opened is None:
                return
            self.buffer.offset = position + len(audio) - len(opened)  # where the pre-roll starts
            audio = opened
        elif self.buffer.overflows(len(audio)):
            self._trim(force=True)
        self.buffer.append(audio)
        self.pace.appended(len(audio), arrived_at)

    def _timed(self, step: Callable[[float], None]) -> None:
        """Run one decoding step; track its compute time against the pace."""
        buffer_s, stamp = self.buffer.seconds, self.pace.begin()
        self.decoder.lap()  # forced trims while appending do not count towards this update
        step(stamp)
        self.pace.ended(self.decoder.lap(), buffer_s)

    def _decode_and_commit(self, stamp: float) -> None:
        self.words.hypothesis(self.decoder.continuation(self.buffer.samples, self.words.prefix()), stamp)
        self.buffer.decoded(self.words.heard)
        if self.buffer.trim_due():
            self._trim(force=False)

    def _flush(self, stamp: float, end: int, resume: int) -> None:
        """End of an utterance: decode the buffer up to `end`, commit all of it, go on from `resume`."""
        self.words.commit_all(self.decoder.continuation(self.buffer.samples[:end], self.words.prefix()), stamp)
        rest = self.buffer.restart(resume)
        self.decoder.new_buffer()
        if self.gate.resume(rest):  # the next utterance began
            self.pace.carry_over(len(rest))
        else:
            self.buffer.clear()

    def _trim(self, force: bool) -> None:
        """Drop committed audio up to a quiet point; `force` (buffer at its cap) commits what it must."""
        cut = self.buffer.cut_point(len(self.words.committed), force)
        if not cut:
            return
        if not self.words.release(self.decoder.decode(self.buffer.samples[:cut]), force, self.pace.stamp):
            self.buffer.refuse_trim()
            return
        self.buffer.drop(cut)
        self.decoder.new_buffer()


class LiveSession:
    """A LiveTranscriber decoded on a thread of its own, fed from any other without waiting.

    A browser stream drops the chunks recorded while its handler runs, so the handler must only hand
    a chunk over: `feed` queues it and returns the state of the latest update. The worker appends
    everything that has arrived, then decodes, back to back (the caller core.bench_stream models).
    """

    def __init__(self, transcriber: LiveTranscriber, idle_end_s: float = IDLE_END_S):
        self.transcriber = transcriber
        self.idle_end_s = idle_end_s
        self._inbox: queue.Queue = queue.Queue()
        self._state = transcriber.state
        self._error: Exception | None = None
        self._fed_at = transcriber.clock()
        self._worker = threading.Thread(target=self._run, name="live-session", daemon=True)
        self._worker.start()

    @property
    def state(self) -> StreamState:
        """The latest update's state; raises what the worker failed with (an ArenaError reads as a message)."""
        if self._error is not None:
            raise self._error
        return self._state

    def feed(self, samples: np.ndarray, sample_rate: int) -> StreamState:
        """Queue one chunk (stamped now, as it arrived) and return at once."""
        self._fed_at = self.transcriber.clock()
        self._inbox.put((samples, sample_rate, self._fed_at))
        return self.state

    def finish(self, timeout_s: float | None = None) -> StreamState:
        """Take the chunks still on their way, decode what is queued, commit the tail, stop the worker."""
        clock, waited = self.transcriber.clock, 0.0
        while clock() - self._fed_at < SETTLE_S and waited < MAX_SETTLE_S:
            time.sleep(SETTLE_S / 3)
            waited += SETTLE_S / 3
        self._inbox.put(None)
        self._worker.join(timeout_s)
        return self.state

    def recording(self) -> np.ndarray:
        return self.transcriber.recording()

    def _run(self) -> None:
        live, ended = self.transcriber, False
        try:
            while not ended:
                try:
                    items = [self._inbox.get(timeout=self.idle_end_s)]
                except queue.Empty:
                    items = [None]  # nobody feeds this session any more
                while not self._inbox.empty():
                    items.append(self._inbox.get_nowait())
                for item in items:
                    if item is None:
                        ended = True
                    elif not ended:
                        try:
                            live.insert(*item)
                        except StreamTooLongError:
                            pass  # kept up to the cap; the state says so
                self._state = live.state if ended else live.process()
            self._state = live.finish()
        except Exception as err:  # noqa: BLE001 - handed to the feeding thread
            log.exception("live session failed")
            self._error = err
