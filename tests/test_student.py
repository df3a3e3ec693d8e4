"""The shipped local student (issue 4): it loads at set-up, beats its untrained initialisation by a
wide margin, and speculative decoding with it still gives exactly the teacher's output."""

import json

import pytest

from conftest import AUDIO
from core import weights
from core.audio import load_audio
from core.distill.create import create_student
from core.checkpoints import MANIFEST
from core.decoding import DecoderModel
from core.engine import Options
from core.metrics import wer

JFK = "And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country."

shipped = pytest.mark.skipif(
    not (weights.SHIPPED_STUDENT / "decoder.safetensors").is_file(), reason="no trained student shipped in assets/student"
)


@shipped
def test_setup_assembled_the_shipped_student():
    manifest = json.loads((weights.MODELS_DIR / weights.STUDENT_BASE / MANIFEST).read_text())
    assert manifest.get("trained") is True


@shipped
def test_trained_student_beats_its_initialisation(arena):
    audio = load_audio(AUDIO / "jfk.wav")
    (trained,) = arena.transcribe(audio, Options(modes=("student",)))
    saved = arena.decoders["student"]
    arena.decoders["student"] = DecoderModel(create_student(arena.models.teacher,
                                                            arena.models.student.config.decoder_layers))
    try:
        (untrained,) = arena.transcribe(audio, Options(modes=("student",)))
    finally:
        arena.decoders["student"] = saved
    # the first shipped student repeats a phrase on jfk (WER 32%); the untrained one is garbage (> 100%)
    assert wer(JFK, untrained.text) - wer(JFK, trained.text) >= 0.5
    assert "fellow americans" in trained.text.lower()


@shipped
def test_speculative_with_the_trained_student_is_identical_and_accepts_drafts(arena):
    results = {r.mode: r for r in arena.transcribe(load_audio(AUDIO / "jfk.wav"), Options(modes=("teacher", "speculative")))}
    assert results["speculative"].identical_to_teacher is True
    assert results["speculative"].acceptance_rate > 0.3
