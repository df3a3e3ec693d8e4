"""Decoder precisions (core/precision.py): what runs, that speculative decoding stays the teacher's output in
each, to the token, and how far int8's text may drift from fp32's on the bundled clips.

What may differ in int8: the teacher's and the student's text against their fp32 text (int8 weights, inputs
rounded to bf16), at most INT8_TEXT_WER per mode over the bundled clips (measured: 0 on every clip for the
teacher, session 8). What may not: speculative decoding against the teacher of the same precision (0 token
mismatches), with and without timestamps, short-form, chunked and sequential.
"""

from __future__ import annotations

import pytest
import torch

from core.attention import row_exact_attention
from core.audio import load_audio
from core.decoding import new_cache
from core.errors import ArenaError
from core.metrics import corpus_wer
from core.options import Options
from core.precision import INT8, Int8Linear, available, native_bf16
from tests.conftest import AUDIO, THREE_WINDOWS, joined_speech, manifest

INT8_TEXT_WER = 0.05  # per mode, all bundled clips together, int8 text against fp32 text

needs_bf16 = pytest.mark.skipif(not native_bf16(), reason="int8 runs with bf16 activations: needs a CPU with native bf16")
CLIPS = manifest()


class _Causal:
    is_causal = True


class _Cross:
    is_causal = False


def test_the_cpu_offers_fp32_first_and_int8_where_bf16_is_native():
    offered = available(torch.device("cpu"))
    assert offered[0] == "fp32"
    assert ("int8" in offered) == native_bf16()


def test_an_unknown_precision_is_refused_before_any_model_work(arena):
    with pytest.raises(ArenaError, match="does not run here"):
        arena.transcribe(load_audio(AUDIO / "jfk.wav"), Options(precision="fp8"))


def test_results_say_which_precision_ran(arena):
    results = arena.transcribe(load_audio(AUDIO / "silence_5s.wav"), Options(modes=("teacher",)))
    assert results[0].precision == "fp32" and arena.info.precisions[0] == "fp32"
    assert results[0].to_dict()["precision"] == "fp32"


@pytest.mark.parametrize("causal", [True, False], ids=["self-attention", "cross-attention"])
def test_row_exact_attention_gives_each_row_what_a_one_token_step_gives(causal):
    """A pass over n rows equals n passes over one row each (the cache ending at that row), to the bit,
    at every key length around the padding block, in a batch of windows too; and it is attention (close to
    torch's own)."""
    torch.manual_seed(0)
    module = _Causal if causal else _Cross
    for keys in (3, 40, 64, 65, 1500):
        rows = min(keys, 13)
        q, k, v = (torch.randn(2, 8, n, 64) for n in (rows, keys, keys))
        together = row_exact_attention(module, q, k, v, None, scaling=1.0)[0]
        for i in range(rows):
            seen = keys - rows + 1 + i if causal else keys
            alone = row_exact_attention(module, q[:, :, i : i + 1], k[:, :, :seen], v[:, :, :seen], None, scaling=1.0)[0]
            assert torch.equal(alone, together[:, i : i + 1]), (keys, i)
        mask = torch.ones(rows, keys, dtype=torch.bool).tril(keys - rows) if causal else None
        reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
        assert torch.allclose(together, reference.transpose(1, 2), atol=1e-5)


@needs_bf16
def test_int8_linear_is_exact_per_row_and_close_to_the_float_layer():
    torch.manual_seed(0)
    linear = torch.nn.Linear(512, 2048)
    layer = Int8Linear(linear)
    x = torch.randn(13, 512)
    together = layer(x)
    assert all(torch.equal(layer(x[i : i + 1]), together[i : i + 1]) for i in range(13))
    exact = linear(x)
    assert (together - exact).abs().max() < 0.02 * exact.abs().max()


@needs_bf16
def test_an_int8_verify_pass_equals_one_token_steps_to_the_bit(arena):
    """The teacher in int8 reading 2..13 tokens at once gives, position by position, the logits it gives
    reading them one at a time."""
    models, decoders = arena.in_precision(INT8)
    audio = load_audio(AUDIO / "jfk.wav")
    features = arena.processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    tokens = [50258, 50259, 50359, *arena.tokenizer.encode(" And so my fellow Americans, ask not", add_special_tokens=False)]
    teacher = decoders["teacher"]
    with torch.inference_mode():
        states = models.teacher.model.encoder(features).last_hidden_state
        cache = new_cache()
        steps = [teacher.logits(torch.tensor([tokens[:3]]), states, cache)[0, -1]]
        steps += [teacher.logits(torch.tensor([[t]]), states, cache)[0, -1] for t in tokens[3:]]
        for split in (3, 5):
            cache = new_cache()
            teacher.logits(torch.tensor([tokens[:split]]), states, cache)
            together = teacher.logits(torch.tensor([tokens[split:]]), states, cache)[0]
            for i, row in enumerate(together):
                assert torch.equal(row, steps[split - 2 + i]), (split, i)


@needs_bf16
@pytest.mark.parametrize("timestamps", [False, True], ids=["text", "timestamps"])
def test_int8_speculative_is_the_int8_teacher_and_text_stays_near_fp32(arena, timestamps):
    texts = {INT8: {}, "fp32": {}}
    for clip in CLIPS:
        audio = load_audio(AUDIO / clip["file"])
        for precision in texts:
            results = {r.mode: r for r in arena.transcribe(audio, Options(precision=precision, timestamps=timestamps))}
            assert all(r.precision == precision for r in results.values())
            spec, teacher = results["speculative"], results["teacher"]
            assert spec.identical_to_teacher is True, (clip["id"], precision)
            assert spec.segments == teacher.segments
            texts[precision][clip["id"]] = {mode: r.text for mode, r in results.items()}
    for mode in ("student", "teacher"):
        fp32 = [texts["fp32"][c["id"]][mode] for c in CLIPS if texts["fp32"][c["id"]][mode]]
        int8 = [texts[INT8][c["id"]][mode] for c in CLIPS if texts["fp32"][c["id"]][mode]]
        assert corpus_wer(fp32, int8) <= INT8_TEXT_WER, mode


@needs_bf16
@pytest.mark.slow
@pytest.mark.parametrize("long_form", ["chunked", "sequential"])
def test_int8_speculative_is_the_int8_teacher_on_long_audio(arena, long_form):
    """67 s of speech: the int8 teacher batches its windows (chunked) or walks them (sequential); speculative
    decoding takes one at a time and gives the same tokens and segments."""
    audio, text = joined_speech(THREE_WINDOWS)
    results = {r.mode: r for r in arena.transcribe(
        audio, Options(modes=("teacher", "speculative"), precision=INT8, long_form=long_form, timestamps=True))}
    spec, teacher = results["speculative"], results["teacher"]
    assert spec.identical_to_teacher is True and spec.segments == teacher.segments
    assert corpus_wer([text], [teacher.text]) <= 0.05
