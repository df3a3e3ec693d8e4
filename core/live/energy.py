"""The energy gate: which 30 ms frames are speech, and which pause ends an utterance.

Live audio meets this gate before the model. It keeps silence away from the model (a silent
recording is never decoded) and ends an utterance on a pause: the utterance is then decoded up to
the pause, committed whole, and the buffer restarts after it. A frame is speech when it is louder
than an adaptive noise floor by a margin, so a steady hum or hiss does not hold an utterance open.

Offline audio is planned with silero (core/vad.py). Live keeps this gate because it costs nothing
per chunk, where silero would add a model call over the buffer to every update, and the gate
already separates speech from pauses on the bundled clips, 10 dB SNR white noise included.
"""

from __future__ import annotations

import numpy as np

from core.audio import SAMPLE_RATE

GATE_FRAME_S = 0.03
FRAME = int(GATE_FRAME_S * SAMPLE_RATE)  # 30 ms frames
SPEECH_GATE_DBFS = -60.0  # a frame quieter than this is never speech
SPEECH_MARGIN_DB = 8.0  # a frame is speech when this much louder than the noise floor
NOISE_PERCENTILE = 10  # the noise floor: this percentile of recent (non-digital-silence) frames
NOISE_WINDOW_S = 20.0  # recent audio the floor is estimated on
DIGITAL_SILENCE_DB = -100.0  # zero padding: never counts towards the floor
MIN_SPEECH_S = 0.15  # speech needed to open an utterance (a click is not an utterance)
PREROLL_S = 0.5  # audio kept from before an utterance opens: soft onsets sit under the gate
END_PAUSE_S = 0.6  # a pause this long ends an utterance: commit everything, clear the buffer
PHRASE_PAUSE_S = 0.25  # so does a pause this long once the buffer is past its trim length
FLUSH_TAIL_S = 0.3  # decode this much past the last speech frame when flushing (not the silence)


def frame_db(audio: np.ndarray) -> np.ndarray:
    """The level of each whole frame of `audio`, in dB of full scale."""
    n = len(audio) // FRAME
    x = audio[: n * FRAME].reshape(n, FRAME)
    return 10 * np.log10(np.mean(x * x, axis=1, dtype=np.float64) + 1e-12)


class EnergyGate:
    """Speech frames against the noise floor of recent audio; the pre-roll while no utterance is open."""

    def __init__(self):
        self.recent_db = np.empty(0)  # frame levels for the noise floor
        self.preroll = np.empty(0, np.float32)

    def listen(self, audio: np.ndarray) -> None:
        """Every chunk received moves the noise floor, speech or not."""
        self.recent_db = np.concatenate([self.recent_db, frame_db(audio)])[-int(NOISE_WINDOW_S / GATE_FRAME_S):]

    def speech_frames(self, audio: np.ndarray) -> np.ndarray:
        recent = self.recent_db[self.recent_db > DIGITAL_SILENCE_DB]
        floor = np.percentile(recent, NOISE_PERCENTILE) if len(recent) else -np.inf
        return frame_db(audio) > max(SPEECH_GATE_DBFS, floor + SPEECH_MARGIN_DB)

    def has_speech(self, audio: np.ndarray) -> bool:
        return self.speech_frames(audio).sum() * GATE_FRAME_S >= MIN_SPEECH_S

    def open(self, audio: np.ndarray) -> np.ndarray | None:
        """The utterance `audio` opens, pre-roll first; None (the audio joins the pre-roll) if it opens none.

        Judged on the pre-roll too: a browser chunk (0.1 s) is shorter than MIN_SPEECH_S.
        """
        recent = np.concatenate([self.preroll, audio])
        if not self.has_speech(recent):
            self.preroll = recent[-int(PREROLL_S * SAMPLE_RATE) :]
            return None
        self.preroll = np.empty(0, np.float32)
        return recent

    def resume(self, rest: np.ndarray) -> bool:
        """After a flush: does `rest` hold the next utterance's speech? If not, it becomes the pre-roll."""
        if self.has_speech(rest):
            return True
        self.preroll = rest[-int(PREROLL_S * SAMPLE_RATE) :]
        return False

    def utterance_end(self, audio: np.ndarray, phrase_after: int | None) -> tuple[int, int] | None:
        """(end, resume) around the latest pause of END_PAUSE_S after speech in `audio`: decode up to just
        past the speech, start the next utterance a pre-roll before its speech. None: the utterance goes on.

        `phrase_after` (a sample, or None) lets a PHRASE_PAUSE_S pause after that sample end it too: the
        buffer is past its trim length, and a flush there is a cheap trim.
        """
        speech = np.flatnonzero(self.speech_frames(audio))
        n = len(audio)
        if not len(speech):
            return n, n  # it opened on speech, the floor rose since: decode it all, once
        gaps = np.diff(np.append(speech, n // FRAME)) - 1  # silent frames after each speech frame
        long = np.flatnonzero(gaps * GATE_FRAME_S >= END_PAUSE_S)
        if not len(long) and phrase_after is not None:
            long = np.flatnonzero((gaps * GATE_FRAME_S >= PHRASE_PAUSE_S) & ((speech + 1) * FRAME >= phrase_after))
        if not len(long):
            return None
        k = long[-1]
        speech_end = (speech[k] + 1) * FRAME
        if k + 1 == len(speech):
            return min(n, speech_end + int(FLUSH_TAIL_S * SAMPLE_RATE)), n
        next_start = speech[k + 1] * FRAME
        end = min(speech_end + int(FLUSH_TAIL_S * SAMPLE_RATE), (speech_end + next_start) // 2)  # a short pause: its middle
        return end, max(end, next_start - int(PREROLL_S * SAMPLE_RATE))
