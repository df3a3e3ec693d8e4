"""The CTranslate2 -> transformers conversion and the offline set-up (issue 2)."""

import json
import subprocess
import sys

import pytest
import torch

from conftest import AUDIO, REPO
from core import weights
from core.checkpoints import MANIFEST, verify, write_manifest
from core.distill.create import create_student, pick_decoder_layers
from core.models import encoder_matches


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import WhisperTokenizer

    return WhisperTokenizer.from_pretrained(weights.MODELS_DIR / weights.TEACHER_BASE)


def test_setup_is_a_verifying_no_op_the_second_time():
    proc = subprocess.run([sys.executable, "-m", "core", "setup"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for name in (weights.TEACHER_BASE, weights.TEACHER_TINY_EN, weights.STUDENT_BASE):
        assert f"{name}: present, checksums verified" in proc.stdout


def test_verify_detects_a_changed_file(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"weights")
    write_manifest(tmp_path)
    assert verify(tmp_path)
    (tmp_path / "a.bin").write_bytes(b"tampered")
    assert not verify(tmp_path)


def test_tokenizer_matches_openai(tokenizer):
    assert tokenizer.encode(" the", add_special_tokens=False) == [264]  # the first BPE merge is present
    assert tokenizer.convert_ids_to_tokens(tokenizer.all_special_ids[-1]) == "<|notimestamps|>"
    assert tokenizer.convert_tokens_to_ids("<|nospeech|>") == 50362
    assert tokenizer.convert_tokens_to_ids("<|0.00|>") == 50364
    assert tokenizer.convert_tokens_to_ids("<|30.00|>") == 51864
    assert len(tokenizer) == 51865


def test_generation_config_has_task_and_languages():
    from transformers import GenerationConfig

    config = GenerationConfig.from_pretrained(weights.MODELS_DIR / weights.TEACHER_BASE)
    assert config.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert len(config.lang_to_id) == 99 and config.lang_to_id["<|en|>"] == 50259
    assert config.no_timestamps_token_id == 50363 and config.decoder_start_token_id == 50258
    assert config.is_multilingual and len(config.alignment_heads) == 8


def test_tiny_en_converts_and_transcribes():
    """A second architecture (4 layers, English-only vocabulary) through the same converter."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from core.audio import load_audio

    path = weights.MODELS_DIR / weights.TEACHER_TINY_EN
    model = WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    processor = WhisperProcessor.from_pretrained(path)
    assert model.config.vocab_size == 51864 and model.config.decoder_layers == 4
    features = processor(load_audio(AUDIO / "jfk.wav"), sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        ids = model.generate(features, num_beams=1)
    text = processor.batch_decode(ids, skip_special_tokens=True)[0].lower()
    assert "ask not what your country can do for you" in text


@pytest.mark.parametrize("teacher,student,expected", [(6, 2, [0, 5]), (32, 2, [0, 31]), (4, 3, [0, 2, 3]), (6, 1, [0])])
def test_pick_decoder_layers(teacher, student, expected):
    assert pick_decoder_layers(teacher, student) == expected


def test_student_initialisation_copies_the_right_layers():
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=6, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100,
                           num_mel_bins=8, max_source_positions=16, max_target_positions=16,
                           pad_token_id=1, bos_token_id=1, eos_token_id=1, decoder_start_token_id=2)
    teacher = WhisperForConditionalGeneration(config)
    student = create_student(teacher, 2)
    assert student.config.decoder_layers == 2 and teacher.config.decoder_layers == 6
    assert encoder_matches(teacher, student)
    for s, t in ((0, 0), (1, 5)):
        assert torch.equal(student.model.decoder.layers[s].fc1.weight, teacher.model.decoder.layers[t].fc1.weight)
    assert student.proj_out.weight.data_ptr() == student.model.decoder.embed_tokens.weight.data_ptr()


def test_local_student_manifest_records_its_teacher():
    info = json.loads((weights.MODELS_DIR / weights.STUDENT_BASE / MANIFEST).read_text())
    assert info["teacher"] == weights.TEACHER_BASE
