"""The GPU Space rehearsed offline: every hub preset loads through the Space's own code path (a Hugging Face
cache read with HF_HUB_OFFLINE=1) from snapshots with each checkpoint's real configuration and tokenizer
(tests/hub_snapshots.py), runs the three modes, and keeps speculative decoding identical to the teacher."""

import numpy as np
import pytest

from conftest import AUDIO
from core.audio import load_audio
from core.engine import Arena, Options
from core.presets import PRESETS
from tests.hub_snapshots import CHECKPOINTS, FAMILY, build_cache
from ui import render

HUB_PRESETS = [name for name, p in PRESETS.items() if not p.local]


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory):
    return build_cache(tmp_path_factory.mktemp("hf-home") / "hub")


@pytest.fixture()
def offline_hub(hub_cache, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    return hub_cache


def test_every_hub_checkpoint_of_a_preset_has_a_snapshot():
    named = {repo for name in HUB_PRESETS for repo in (PRESETS[name].teacher, PRESETS[name].student)}
    assert named <= set(CHECKPOINTS)


@pytest.mark.slow
@pytest.mark.parametrize("name", HUB_PRESETS)
def test_hub_preset_runs_every_mode_offline(offline_hub, name):
    preset = PRESETS[name]
    teacher, student = CHECKPOINTS[preset.teacher], CHECKPOINTS[preset.student]
    family = FAMILY[teacher["family"]]
    arena = Arena.load(name)
    info = arena.info
    assert (info.teacher_decoder_layers, info.student_decoder_layers) == (teacher["decoder_layers"], student["decoder_layers"])
    header = render.header_markdown(info)
    assert f"{teacher['decoder_layers']} decoder layers" in header and f"{student['decoder_layers']} decoder layers" in header
    assert arena.processor.feature_extractor.feature_size == family["mel_bins"]
    assert len(arena.tokenizer) == family["vocab_size"] == arena.special.vocab_size
    assert info.shared_encoder == ("encoder_of" in student and student["encoder_of"] == preset.teacher)

    audio = load_audio(AUDIO / "goforward.wav")
    for timestamps in (False, True):  # random weights: every temperature of the fallback would fail alike
        results = {r.mode: r for r in arena.transcribe(audio, Options(timestamps=timestamps, fallback=False))}
        assert list(results) == ["student", "teacher", "speculative"]
        assert results["speculative"].identical_to_teacher is True, timestamps
        assert all(r.latency_s > 0 and r.windows for r in results.values())

    auto = arena.transcribe(audio, Options(modes=("teacher",), language=None, fallback=False))[0]
    if teacher["family"] == "en":  # English-only: no language token, nothing to detect, "auto" means English
        assert not info.multilingual and auto.language is None and auto.detected_language is None
        assert arena._prompt(Options())(False) == (arena.special.sot, arena.special.no_timestamps)
    else:
        codes = {code.strip("<|>") for code in arena.config.lang_to_id}
        assert info.multilingual and auto.language in codes and auto.detected_language == auto.language
        assert ("yue" in codes) == (teacher["family"] == "v3")
        sot, language, task = arena._prompt(Options(language="de"))(True)
        assert arena.tokenizer.convert_ids_to_tokens([language, task]) == ["<|de|>", "<|transcribe|>"]


def test_english_only_models_have_their_own_special_ids(offline_hub):
    arena = Arena.load("small.en", warmup=False)
    assert (arena.special.eot, arena.special.sot, arena.special.no_timestamps) == (50256, 50257, 50362)
    assert arena.tokenizer.convert_ids_to_tokens(arena.special.timestamp_begin) == "<|0.00|>"


def test_v3_ids_are_shifted_by_cantonese(offline_hub):
    arena = Arena.load("large-v3", warmup=False)
    ids = arena.tokenizer.convert_tokens_to_ids(["<|yue|>", "<|translate|>", "<|transcribe|>", "<|notimestamps|>"])
    assert ids == [50358, 50359, 50360, 50364] and arena.special.timestamp_begin == 50365
    assert arena.config.task_to_id["transcribe"] == 50360 and arena.special.no_speech == 50363
    silence = np.zeros(16000 * 3, np.float32)
    assert all(r.text == "" for r in arena.transcribe(silence))
