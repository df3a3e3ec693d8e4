"""faster-whisper as the benchmark's peer, run in a process of its own.

The peer is what a CPU user would run instead: the same whisper-base weights in CTranslate2, greedy, its own
sequential algorithm with silero VAD (as ours), no timestamps in the output. It must not share the
benchmark's process: once CTranslate2 has run in a process, torch's decoder steps there take ~1.6x as long,
with several times the system time and page faults (docs/benchmarks.md, session 11), so every mode measured
beside an in-process peer was charged for the peer. In a process of its own, each side costs what it costs
alone: the worker sleeps on its pipe between clips and times its own call.
"""

from __future__ import annotations

import multiprocessing
import time

import numpy as np

PEERS = {"faster-whisper fp32": "float32", "faster-whisper int8": "int8"}


class FasterWhisperPeer:
    """One faster-whisper model in a worker process; `transcribe` sends a clip and returns (text, seconds)."""

    def __init__(self, threads: int, compute_type: str):
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of this process's state
        self._pipe, child = context.Pipe()
        self._worker = context.Process(target=_serve, args=(child, threads, compute_type), daemon=True)
        self._worker.start()
        child.close()
        _raise_if_error(self._pipe.recv())  # an ImportError here means faster-whisper is not installed

    @property
    def pid(self) -> int:
        return self._worker.pid

    def transcribe(self, audio: np.ndarray) -> tuple[str, float]:
        self._pipe.send(audio)
        return _raise_if_error(self._pipe.recv())

    def close(self) -> None:
        if self._worker.is_alive():
            self._pipe.send(None)
            self._worker.join(timeout=10)
        self._pipe.close()


def _raise_if_error(message):
    if isinstance(message, BaseException):
        raise message
    return message


def _serve(pipe, threads: int, compute_type: str) -> None:
    """The worker: load the model, then answer one clip at a time until the benchmark is done."""
    try:
        from faster_whisper import WhisperModel

        from core import weights

        model = WhisperModel(str(weights.ctranslate2_dir(weights.TEACHER_BASE)), device="cpu",
                             compute_type=compute_type, cpu_threads=threads)
    except Exception as error:  # sent back, raised in the benchmark's process
        pipe.send(error)
        return
    pipe.send("ready")
    while (audio := _next_clip(pipe)) is not None:
        try:
            pipe.send(_transcribe(model, audio))
        except Exception as error:
            pipe.send(error)


def _next_clip(pipe) -> np.ndarray | None:
    """The next clip, or None when the benchmark is done (it sent None, or exited without closing)."""
    try:
        return pipe.recv()
    except EOFError:
        return None


def _transcribe(model, audio: np.ndarray) -> tuple[str, float]:
    started = time.perf_counter()
    segments, _ = model.transcribe(audio, language="en", beam_size=1, condition_on_previous_text=False,
                                   vad_filter=True, temperature=0.0)
    text = "".join(s.text for s in segments).strip()
    return text, time.perf_counter() - started
