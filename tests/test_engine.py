"""The engine on real converted weights and real speech: one decoding loop for every mode, checked
against transformers' generate() (the reference), speculative decoding identical to the teacher in every
algorithm, with and without timestamps."""

import copy
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import AUDIO, REPO, THREE_WINDOWS, TWO_WINDOWS, joined_speech, manifest
from core.audio import SAMPLE_RATE, load_audio
from core.decoding import DecoderModel, DraftModel, Task, decode
from core.engine import Options
from core.errors import ArenaError, ModelUnavailableError
from core.gate import is_no_speech
from core.metrics import wer
from core.modes import MODES
from core.transcribe import max_new_tokens
from core.windows import features
from tests.media import noise_clips

JFK = "And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
CLIPS = manifest()
SPEECH_CLIPS = [c for c in CLIPS if c["text"]]


@pytest.fixture(scope="module")
def long_clip():
    """67 s of real speech (three windows, three seeks) and the text it says."""
    return joined_speech(THREE_WINDOWS)


@pytest.fixture(scope="module")
def two_window_clip():
    """35 s of real speech (two windows) and the text it says."""
    return joined_speech(TWO_WINDOWS)


def _states(arena, audio):
    """Features and teacher encoder output of a clip as generate() sees them (one 30 s window)."""
    values = features(arena.processor.feature_extractor, audio).segment(0)[None].to(arena.models.device, arena.models.dtype)
    with torch.inference_mode():
        return values, arena.models.teacher.model.encoder(values).last_hidden_state


def _generate_tokens(model, values, timestamps: bool, limit: int) -> list[int]:
    """generate()'s greedy tokens for one window (its first decoding pass), prompt and end-of-text cut."""
    config = model.generation_config
    with torch.inference_mode():
        out = model.generate(input_features=values, language="en", task="transcribe", return_timestamps=timestamps,
                             num_beams=1, do_sample=False, max_new_tokens=limit, force_unique_generate_call=True)
    row = (out["sequences"] if isinstance(out, dict) else out)[0].tolist()
    prompt = {config.decoder_start_token_id, config.lang_to_id["<|en|>"], config.task_to_id["transcribe"],
              config.no_timestamps_token_id}
    while row and row[0] in prompt:
        row = row[1:]
    return row[: row.index(config.eos_token_id)] if config.eos_token_id in row else row


# ---- the loop against generate() ---------------------------------------------------------------


@pytest.mark.parametrize("timestamps", [False, True], ids=["text", "timestamps"])
@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: c["id"])
def test_each_loop_equals_generate_and_speculative_equals_the_teacher(arena, clip, timestamps):
    """Greedy student and teacher give generate()'s tokens; speculative decoding gives the teacher's."""
    audio = load_audio(AUDIO / clip["file"])
    values, states = _states(arena, audio)
    limit = max_new_tokens(len(audio) / SAMPLE_RATE)
    task = Task(arena._prompt(Options())(timestamps), timestamps, (limit,))
    for name, model in (("student", arena.models.student), ("teacher", arena.models.teacher)):
        (ours,) = decode(arena.decoders[name], states, task, arena.special)
        reference = _generate_tokens(model, values, timestamps, limit)
        if ours.looped:  # the loop guard ended it: the same tokens up to there, and generate() went on
            assert reference[: len(ours.tokens)] == ours.tokens and len(reference) > len(ours.tokens), name
        else:
            assert ours.tokens == reference, name
    teacher = ours
    (speculative,) = decode(arena.decoders["teacher"], states, task, arena.special, arena.draft)
    assert speculative.tokens == teacher.tokens
    assert speculative.avg_logprob == pytest.approx(teacher.avg_logprob, abs=1e-4)
    assert speculative.no_speech_prob == pytest.approx(teacher.no_speech_prob, abs=1e-6)
    assert speculative.model_passes <= teacher.model_passes


def test_sampling_is_reproducible_and_speculative_follows_the_teacher(arena):
    """Temperature fallback samples with noise fixed by seed and position: the same tokens every time, and
    speculative decoding samples exactly the teacher's."""
    _, states = _states(arena, load_audio(AUDIO / "jfk_white_snr10.wav"))
    task = Task(arena._prompt(Options())(False), False, (150,), seeds=(1234,), temperature=0.8)
    teacher = arena.decoders["teacher"]
    with torch.inference_mode():
        first, again = (decode(teacher, states, task, arena.special)[0] for _ in range(2))
        (speculative,) = decode(teacher, states, task, arena.special, arena.draft)
        (greedy,) = decode(teacher, states, Task(task.prompt, False, (150,)), arena.special)
    assert first.tokens == again.tokens == speculative.tokens
    other = decode(teacher, states, Task(task.prompt, False, (150,), seeds=(99,), temperature=0.8), arena.special)[0]
    assert first.tokens != greedy.tokens or other.tokens != greedy.tokens  # it does sample


def test_the_seek_loop_equals_generates_sequential_algorithm(long_clip, monkeypatch):
    """Our sequential algorithm is transformers' (and openai's) seek loop, token for token, on 67 s of speech.

    On the fp32 encoder: with the bf16 encoder of a native-bf16 CPU one teacher token differed between the two
    loops (identical in fp32); what is compared here is the algorithm, not bf16 rounding. With generate()'s
    safeguards: temperature 0 alone, and no loop guard (ours cuts a repeating window, which generate() lets
    run to the length cap: round 4's student loops in this clip's first window). Both have their own tests
    (tests/test_safeguards.py)."""
    from core import decoding
    from core.engine import Arena, EncoderCache
    from core.mode_run import ModeRun as _ModeRun
    from core.models import BF16_ENCODER_ENV
    from core.request import Request as _Request
    from core.transcribe import transcribe
    from core.vad import Region
    from core.windows import Window

    monkeypatch.setenv(BF16_ENCODER_ENV, "0")
    monkeypatch.setattr(decoding.LoopGuard, "cut", lambda self, sampled: None)
    arena = Arena.load("local", warmup=False)

    audio, _ = long_clip
    window = Window((Region(0, len(audio), 0, 0),))  # no voiced spans: transformers' rule, not our early-stop one
    extracted = arena.processor.feature_extractor([audio], sampling_rate=SAMPLE_RATE, return_tensors="pt",
                                                  truncation=False, padding="longest", return_attention_mask=True)
    for mode in ("teacher", "student"):
        request = _Request(audio, Options(timestamps=True, no_speech_rule=False), encoded=EncoderCache(arena.models.device))
        run = _ModeRun(arena, mode, request)
        model = arena.models.teacher if mode == "teacher" else arena.models.student
        with torch.inference_mode():
            (ours,) = transcribe([window], run.features_of, run, arena._prompt(request.options), True,
                                 no_speech_rule=False, temperatures=(0.0,))
            out = model.generate(input_features=extracted.input_features, attention_mask=extracted.attention_mask,
                                 language="en", task="transcribe", return_timestamps=True, num_beams=1,
                                 do_sample=False, condition_on_prev_tokens=False, temperature=0.0,
                                 return_segments=True, max_new_tokens=440)
        reference = [t for segment in out["segments"][0] for t in segment["tokens"].tolist()]
        assert len(ours.decodes) >= 3, mode  # it did seek
        assert ours.kept == reference, mode


def test_perfect_draft_model_is_always_accepted(arena):
    """Counting check: a copy of the teacher as draft model has every draft kept."""
    _, states = _states(arena, load_audio(AUDIO / "jfk.wav"))
    task = Task(arena._prompt(Options())(False), False, (150,))
    perfect = DraftModel(copy.deepcopy(arena.models.teacher), None, int8=False)  # int8 would round off a perfect copy
    with torch.inference_mode():
        (spec,) = decode(arena.decoders["teacher"], states, task, arena.special, perfect)
        (teacher,) = decode(arena.decoders["teacher"], states, task, arena.special)
    assert spec.tokens == teacher.tokens
    assert spec.accepted == spec.drafted  # every drafted token kept, end-of-text included
    assert spec.model_passes < teacher.model_passes / 3


def test_draft_vocabulary_never_changes_the_output(arena):
    """The local student drafts from its draft vocabulary; even a 500-token one (most drafts rejected) leaves
    the teacher's tokens unchanged."""
    models = arena.models
    assert models.draft_vocabulary and len(models.draft_vocabulary) < models.teacher.config.vocab_size
    _, states = _states(arena, load_audio(AUDIO / "jfk.wav"))
    task = Task(arena._prompt(Options())(True), True, (150,))
    tiny = DraftModel(models.student, range(500))
    with torch.inference_mode():
        (spec,) = decode(arena.decoders["teacher"], states, task, arena.special, tiny)
        (teacher,) = decode(arena.decoders["teacher"], states, task, arena.special)
    assert spec.tokens == teacher.tokens
    assert spec.accepted / spec.drafted < 0.9  # the words of this clip are mostly outside the list


# ---- the engine ----------------------------------------------------------------------------------


def test_teacher_transcribes_jfk_exactly(arena):
    (teacher,) = arena.transcribe(load_audio(AUDIO / "jfk.wav"), Options(modes=("teacher",)))
    assert wer(JFK, teacher.text) == 0.0


@pytest.mark.parametrize("clip", [c for c in CLIPS if c["id"].startswith("sense_and_sensibility")], ids=lambda c: c["id"])
def test_teacher_librivox_wer(arena, clip):
    (teacher,) = arena.transcribe(load_audio(AUDIO / clip["file"]), Options(modes=("teacher",)))
    assert wer(clip["text"], teacher.text) <= 0.05


@pytest.mark.parametrize("timestamps", [False, True], ids=["text", "timestamps"])
@pytest.mark.parametrize("clip", [c for c in CLIPS if c["id"] in ("jfk", "asterisk_demo-echotest_8k")], ids=lambda c: c["id"])
def test_speculative_identical_to_teacher(arena, clip, timestamps):
    """Through the engine (windows, safeguards, merge); every clip is checked at the loop above."""
    results = {r.mode: r for r in arena.transcribe(load_audio(AUDIO / clip["file"]),
                                                   Options(modes=("teacher", "speculative"), timestamps=timestamps))}
    spec, teacher = results["speculative"], results["teacher"]
    assert spec.identical_to_teacher is True
    assert spec.token_ids == teacher.token_ids and spec.text == teacher.text and spec.segments == teacher.segments


def test_result_fields_are_consistent(arena):
    results = arena.transcribe(load_audio(AUDIO / "jfk.wav"))
    assert [r.mode for r in results] == list(MODES)
    for r in results:
        t = r.timing
        assert r.latency_s == pytest.approx(t.vad_s + t.features_s + t.encoder_s + t.judge_s + t.draft_s + t.verify_s)
        assert t.vad_s > 0 and t.features_s > 0 and r.encoder_s > 0 and r.decode_s > 0
        assert r.audio_s == pytest.approx(11.0, abs=0.05)
        assert r.rtfx == pytest.approx(r.audio_s / r.latency_s)
        assert r.tokens > 0 and r.tokens_per_s == pytest.approx(r.tokens / r.latency_s)
        assert r.batch_size == 1 and len(r.windows) == 1
    student, teacher, spec = results
    assert teacher.windows[0].attempts == spec.windows[0].attempts == 1  # no fallback needed (the student's may)
    assert student.timing.judge_s > 0 and teacher.timing.judge_s == 0  # the teacher judges the student's window
    assert spec.draft_tokens > 0 and 0 <= spec.accepted_tokens <= spec.draft_tokens
    assert 0.0 <= spec.acceptance_rate <= 1.0 and spec.timing.draft_s > 0
    assert teacher.model_passes == teacher.tokens + 1 and spec.model_passes < teacher.model_passes
    assert len(spec.trace) == spec.model_passes  # one entry per teacher pass, the first over the prompt
    assert spec.trace[0].draft == () and spec.trace[0].emitted == spec.token_ids[0][0]
    assert sum(p.accepted for p in spec.trace) == spec.accepted_tokens
    assert "".join(t for p in spec.trace for t in (*p.draft_text[: p.accepted], p.emitted_text or "")).strip() \
        .startswith("And so")  # the pieces spell the transcript


@pytest.mark.parametrize("timestamps", [False, True], ids=["text", "timestamps"])
def test_encoder_runs_once_per_segment_for_all_modes(arena, timestamps):
    """One encoder pass per 30 s segment a mode decodes, shared by every mode that decodes the same one (with
    timestamps a mode may also decode the rest of a window after its last timestamp), and charged to each."""
    calls = []
    hook = arena.models.teacher.model.encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        student, teacher, spec = arena.transcribe(load_audio(AUDIO / "jfk.wav"), Options(timestamps=timestamps))
    finally:
        hook.remove()
    assert teacher.encoder_s == spec.encoder_s
    if timestamps:
        assert 1 <= len(calls) <= 3
    else:
        assert len(calls) == 1 and student.encoder_s == teacher.encoder_s


def test_silence_gives_empty_text_in_every_mode(arena):
    for r in arena.transcribe(load_audio(AUDIO / "silence_5s.wav"), Options(timestamps=True)):
        assert r.text == "" and r.windows == [], r.mode


@pytest.mark.parametrize("timestamps", [False, True], ids=["text", "timestamps"])
def test_noise_gives_empty_text_in_every_mode(arena, tmp_path, timestamps):
    """Hiss, hum, clicks and tones: no text in any mode, and no model call (the VAD keeps them out)."""
    calls = []
    hook = arena.models.teacher.model.encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        for name, path in noise_clips(tmp_path).items():
            for r in arena.transcribe(load_audio(path), Options(timestamps=timestamps)):
                assert r.text == "" and r.windows == [], (name, r.mode, r.text)
    finally:
        hook.remove()
    assert calls == []


def test_the_no_speech_rule_alone_drops_noise_for_the_teacher(arena, tmp_path):
    """Without the VAD (a live buffer), Whisper's rule decides, judged by the teacher from the first decoding
    step: noise the teacher would transcribe is dropped in the teacher's and speculative mode. (The student's
    mode reads the text's likelihood from the student's own decode, which is surer of itself: its words on
    noise are kept, as a student alone would keep them.)"""
    dropped = 0
    for name, path in noise_clips(tmp_path).items():
        results = {r.mode: r for r in arena.transcribe(load_audio(path), Options(vad=False))}
        assert results["speculative"].text == results["teacher"].text, name
        assert results["teacher"].text in ("", "you"), name  # "you" on mains hum: P(no speech) <= 0.6
        dropped += results["teacher"].windows[0].no_speech
    assert dropped >= 5


def test_short_phrase_at_the_end_of_a_quiet_window_is_kept(arena):
    """The hardest speech window measured for the rule: P(no speech) ~0.46, close to the 0.6 threshold."""
    phrase = load_audio(AUDIO / "goforward.wav")
    window = np.zeros(30 * SAMPLE_RATE, dtype=np.float32)
    window[-len(phrase):] = phrase
    for vad in (True, False):
        for r in arena.transcribe(window, Options(vad=vad)):
            assert "forward" in r.text.lower(), (r.mode, vad)


def test_no_speech_rule_keeps_a_confident_transcript_and_drops_a_hallucination(arena, tmp_path):
    """Both branches of Whisper's rule on values the loop computed: with P(no speech) forced high, the
    teacher's transcript of jfk stays (confident); what it says on white noise is dropped."""
    (jfk,) = arena.transcribe(load_audio(AUDIO / "jfk.wav"), Options(modes=("teacher",)))
    _, states = _states(arena, load_audio(AUDIO / "jfk.wav"))
    task = Task(arena._prompt(Options())(False), False, (150,))
    with torch.inference_mode():
        (decoded,) = decode(arena.decoders["teacher"], states, task, arena.special)
    assert decoded.tokens == jfk.token_ids[0]
    assert not is_no_speech(0.9, decoded.avg_logprob, jfk.text)

    noise = load_audio(noise_clips(tmp_path)["white_noise"])
    (said,) = arena.transcribe(noise, Options(modes=("teacher",), vad=False, no_speech_rule=False))
    _, noise_states = _states(arena, noise)
    with torch.inference_mode():
        (decoded,) = decode(arena.decoders["teacher"], noise_states, task, arena.special)
    assert said.text and decoded.no_speech_prob > 0.6
    assert is_no_speech(decoded.no_speech_prob, decoded.avg_logprob, said.text)


def test_no_speech_rule_can_be_skipped_for_audio_known_to_hold_speech(arena, tmp_path):
    """Live updates of an utterance the rule already passed skip it; on noise that shows what it guards."""
    noise = load_audio(noise_clips(tmp_path)["white_noise"])
    (judged,) = arena.transcribe(noise, Options(modes=("teacher",), vad=False))
    (unjudged,) = arena.transcribe(noise, Options(modes=("teacher",), vad=False, no_speech_rule=False))
    assert judged.text == "" and unjudged.text != ""


def test_short_form_timestamps_in_every_mode(arena):
    results = {r.mode: r for r in arena.transcribe(load_audio(AUDIO / "jfk.wav"), Options(timestamps=True))}
    for mode, r in results.items():
        assert r.segments and r.segments[0].start < 1.0 and 9.0 < r.segments[-1].end <= 11.0, mode
        assert all(isinstance(s.start, float) for s in r.segments)
    assert results["speculative"].segments == results["teacher"].segments and not results["speculative"].note


@pytest.mark.slow
@pytest.mark.parametrize("long_form", ["chunked", "sequential"])
@pytest.mark.parametrize("timestamps", [False, True], ids=["text", "timestamps"])
def test_long_form_all_modes(arena, long_clip, long_form, timestamps):
    """67 s of speech: every mode in both algorithms, speculative identical to the teacher, segments in clip
    time, absolute and monotonic."""
    audio, text = long_clip
    duration = len(audio) / SAMPLE_RATE
    results = {r.mode: r for r in arena.transcribe(audio, Options(long_form=long_form, timestamps=timestamps))}
    teacher, spec = results["teacher"], results["speculative"]
    assert teacher.algorithm == spec.algorithm == long_form
    assert wer(text, teacher.text) <= 0.05
    assert spec.identical_to_teacher is True and spec.text == teacher.text and spec.segments == teacher.segments
    if long_form == "chunked":
        assert teacher.batch_size > 1 and spec.batch_size == 1 and "one at a time" in spec.note
    if timestamps:
        for r in results.values():
            starts = [s.start for s in r.segments]
            assert starts == sorted(starts) and all(s.end >= s.start for s in r.segments), r.mode
            assert all(a.end <= b.start + 1e-6 for a, b in zip(r.segments, r.segments[1:])), r.mode
            assert duration - 15 < r.segments[-1].end <= duration + 1e-6, r.mode
        echo = next(s for s in teacher.segments if "echo test" in s.text.lower())
        assert 12.0 < echo.start < 25.0, echo  # "echo test" is said ~15-37 s in: an absolute time


def test_cli_json_gives_segments_for_every_mode():
    proc = subprocess.run(
        [sys.executable, "-m", "core", "transcribe", str(AUDIO / "jfk.wav"), "--mode", "all", "--timestamps",
         "--json", "--preset", "local"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["mode"] for r in rows] == list(MODES)
    for r in rows:
        for key in ("file", "mode", "text", "segments", "latency_s", "audio_s", "rtfx", "tokens", "tokens_per_s",
                    "encoder_s", "decode_s", "timing", "batch_size", "model_passes", "windows"):
            assert key in r, key
        assert r["segments"] and r["latency_s"] > 0
        assert r["rtfx"] == pytest.approx(r["audio_s"] / r["latency_s"], rel=1e-2)
    spec = rows[2]
    assert "acceptance_rate" in spec and spec["identical_to_teacher"] is True
    assert spec["segments"] == rows[1]["segments"]


def test_hub_preset_offline_fails_fast_with_clear_message():
    from core.engine import Arena

    started = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as err:
        Arena.load("large-v3")
    assert time.perf_counter() - started < 5
    message = str(err.value)
    assert "large-v3" in message and "--preset local" in message


def test_cli_hub_preset_offline_exit_code():
    proc = subprocess.run(
        [sys.executable, "-m", "core", "transcribe", str(AUDIO / "jfk.wav"), "--preset", "large-v2"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "large-v2" in proc.stderr


def test_bf16_encoder_reads_and_returns_fp32(arena):
    """The CPU bf16 encoder (used where bf16 is native) is a drop-in: fp32 in, fp32 out, ~1% apart."""
    from transformers import WhisperForConditionalGeneration

    from core.models import run_encoder_in_bf16
    from core.weights import MODELS_DIR, TEACHER_BASE

    encoder = WhisperForConditionalGeneration.from_pretrained(MODELS_DIR / TEACHER_BASE, dtype=torch.float32).model.encoder
    values, _ = _states(arena, load_audio(AUDIO / "jfk.wav"))
    with torch.inference_mode():
        reference = encoder(values.float()).last_hidden_state
        run_encoder_in_bf16(encoder)
        fast = encoder(input_features=values.float()).last_hidden_state
    assert encoder.conv1.weight.dtype == torch.bfloat16 and fast.dtype == torch.float32
    assert float((fast - reference).norm() / reference.norm()) < 0.05


# ---- the forced prefix (live updates) ----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_forced_prefix_continues_the_modes_own_transcript(arena, mode):
    """Forcing the first half of what a mode said gives back the rest; forcing all of it lets the model
    end at once (Whisper's begin rule holds at the transcript's start, not after a prefix)."""
    audio = load_audio(AUDIO / "asterisk_demo-echotest_8k.wav")
    (free,) = arena.transcribe(audio, Options(modes=(mode,), vad=False))
    words = free.text.split()
    for prefix in (" ".join(words[: len(words) // 2]), free.text):
        (forced,) = arena.transcribe(audio, Options(modes=(mode,), prefix=prefix, vad=False))
        assert forced.text == free.text, (prefix, forced.text)


def test_forced_prefix_keeps_speculative_identical_to_the_teacher(arena):
    audio = load_audio(AUDIO / "jfk.wav")
    results = arena.transcribe(audio, Options(modes=("teacher", "speculative"), prefix="And so, my fellow"))
    assert results[1].identical_to_teacher is True and results[0].text.startswith("And so, my fellow")


def test_forced_prefix_and_whole_window_are_refused_where_they_cannot_hold(arena, long_clip):
    with pytest.raises(ArenaError, match="prefix"):
        arena.transcribe(load_audio(AUDIO / "jfk.wav"), Options(prefix="And so", timestamps=True))
    with pytest.raises(ArenaError, match="prefix"):
        arena.transcribe(long_clip[0], Options(modes=("student",), prefix="And so"))
    with pytest.raises(ArenaError, match="VAD"):
        arena.transcribe(long_clip[0], Options(modes=("student",), vad=False))


def test_the_cheap_first_position_equals_the_decoder(arena):
    """The no-speech judge's shortcut (no cross-attention keys and values) gives the decoder's own logits."""
    from core.decoding import first_position_logits, new_cache

    for name in ("jfk.wav", "silence_5s.wav"):
        _, states = _states(arena, load_audio(AUDIO / name))
        for model in ("teacher", "student"):
            with torch.inference_mode():
                full = arena.decoders[model].logits(torch.tensor([[arena.special.sot]]), states, new_cache())[:, 0]
                fast = first_position_logits(getattr(arena.models, model), arena.special.sot, states)
            assert torch.allclose(full, fast, atol=1e-3), (name, model)


def test_the_encoder_cache_stays_within_its_budget():
    """Outputs kept for the other modes of a request are bounded (on a GPU they wait in host memory);
    what an evicted one cost is still charged to every mode that uses it."""
    from core.engine import EncoderCache

    cache = EncoderCache(torch.device("cpu"), max_bytes=3 * 1500 * 512 * 4)
    for i in range(5):
        cache.put(i, torch.zeros(1, 1500, 512), 0.1 * i)
    assert cache.bytes <= cache.max_bytes and cache.get(0) is None and cache.get(4) is not None
    assert cache.seconds[0] == 0.0 and cache.seconds[4] == pytest.approx(0.4)


@pytest.mark.slow
def test_a_long_request_with_a_small_encoder_cache_gives_the_same_output(arena, two_window_clip, monkeypatch):
    import core.engine

    audio, _ = two_window_clip
    reference = arena.transcribe(audio, Options(modes=("teacher", "speculative")))
    monkeypatch.setattr(core.engine, "ENCODER_CACHE_BYTES", 1500 * 512 * 4)  # one window
    small = arena.transcribe(audio, Options(modes=("teacher", "speculative")))
    assert [r.token_ids for r in small] == [r.token_ids for r in reference]
    assert small[1].identical_to_teacher is True


def test_the_teacher_hears_german(arena, tmp_path):
    """The language guard's input: German speech (espeak-ng) is detected as German whatever was asked."""
    import shutil

    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed")
    path = tmp_path / "de.wav"
    subprocess.run(["espeak-ng", "-v", "de", "-w", str(path),
                    "Guten Morgen. Heute ist das Wetter schön, und wir gehen zusammen in den Park."], check=True)
    (teacher,) = arena.transcribe(load_audio(path), Options(modes=("teacher",)))
    assert teacher.detected_language == "de" and teacher.language == "en"
