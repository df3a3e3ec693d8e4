"""Is there speech in this window? Whisper invents text for silence and noise, so this decides first.

Two checks, cheapest first. The energy gate drops digital silence and near-silence before any model
runs. Sounds above it (hiss, hum, clicks, music) go through Whisper's own rule, as in
openai/whisper's transcribe.py: a window is no speech when the teacher's probability of
<|nospeech|> at the start-of-transcript position is above NO_SPEECH_THRESHOLD *and* the decoded
text is unlikely under the teacher (average log-probability below LOGPROB_THRESHOLD) or a loop
(gzip compression ratio above COMPRESSION_RATIO_THRESHOLD: Whisper's sign of a decoder repeating itself,
which it answers by resampling; we decode greedily, so a loop on a no-speech window is dropped). The
second condition keeps speech the teacher is sure of even when P(no speech) is high: a 3 s phrase at
the end of 30 s of silence came to 0.46 here.
Both signals come from the teacher, so every mode shares one notion of speech and speculative
decoding stays identical to the teacher.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from core.audio import SAMPLE_RATE

SPEECH_GATE_DBFS = -60.0  # a window whose loudest 30 ms frame is quieter than this holds no speech
GATE_FRAME_S = 0.03
NO_SPEECH_THRESHOLD = 0.6  # openai/whisper's defaults
LOGPROB_THRESHOLD = -1.0
COMPRESSION_RATIO_THRESHOLD = 2.4


def has_speech(audio: np.ndarray) -> bool:
    """Energy gate: digital silence and near-silence never reach a model."""
    frame = int(GATE_FRAME_S * SAMPLE_RATE)
    usable = len(audio) // frame * frame
    if usable == 0:
        return bool(np.abs(audio).max(initial=0.0) > 10 ** (SPEECH_GATE_DBFS / 20))
    rms = np.sqrt(np.mean(audio[:usable].reshape(-1, frame) ** 2, axis=1))
    return bool(rms.max() > 10 ** (SPEECH_GATE_DBFS / 20))


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


class NoSpeechRule:
    """Whisper's no-speech rule, with the teacher's decoder as the judge."""

    def __init__(self, teacher, start_token: int, no_speech_token: int):
        self.teacher = teacher
        self.start_token = start_token
        self.no_speech_token = no_speech_token

    @torch.inference_mode()
    def no_speech_prob(self, encoder_states: torch.Tensor) -> list[float]:
        """P(<|nospeech|>) right after start-of-transcript, one decoder step for a batch of windows."""
        tokens = torch.full((len(encoder_states), 1), self.start_token, device=encoder_states.device)
        logits = self._logits(tokens, encoder_states)[:, -1]
        return torch.softmax(logits, dim=-1)[:, self.no_speech_token].tolist()

    @torch.inference_mode()
    def avg_logprob(self, encoder_states: torch.Tensor, prompt: list[int], tokens: list[int], eot: int) -> float:
        """Mean teacher log-probability of `tokens` + end-of-text after `prompt` (one window)."""
        target = [*tokens, eot]
        ids = torch.tensor([[*prompt, *target[:-1]]], device=encoder_states.device)
        logprobs = torch.log_softmax(self._logits(ids, encoder_states)[0, len(prompt) - 1 :], dim=-1)
        picked = logprobs.gather(-1, torch.tensor(target, device=logprobs.device)[:, None])
        return float(picked.mean())

    def is_no_speech(self, no_speech_prob: float, encoder_states, prompt: list[int], tokens: list[int], eot: int,
                     text: str) -> bool:
        if no_speech_prob <= NO_SPEECH_THRESHOLD:
            return False
        if not tokens or compression_ratio(text) > COMPRESSION_RATIO_THRESHOLD:
            return True
        return self.avg_logprob(encoder_states, prompt, tokens, eot) < LOGPROB_THRESHOLD

    def _logits(self, ids: torch.Tensor, encoder_states: torch.Tensor) -> torch.Tensor:
        hidden = self.teacher.model.decoder(input_ids=ids, encoder_hidden_states=encoder_states).last_hidden_state
        return self.teacher.proj_out(hidden).float()
