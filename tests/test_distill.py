"""The distillation pipeline (core/distill): the whole of it at toy scale on the real teacher, plus its parts.

Toy scale: 6 windows of espeak-ng speech (<= 8 s), labelled by the real whisper-base teacher, 16
training steps at a high learning rate on the cached encoder outputs, export, assembly, and one
clip through the app's Arena. About 2 minutes on 2 cores.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import AUDIO, REPO
from core import weights
from core.distill import augment, corpus
from core.distill.data import DataConfig, build, make_window, read_manifest
from core.distill.label import keep, load_records
from core.checkpoints import (ALIGNMENT_HEADS_FILE, DRAFT_VOCABULARY_FILE, SHIPPED_FILE, read_shipped_metadata,
                              student_is_current, verify)
from core.distill.ship import MAX_SHIPPED_MB, assemble_student, export
from core.distill.train import (StepBatches, TrainConfig, distill_loss, is_trainable, latest_checkpoint, load_trained,
                                read_log, train)
from core.distill.voices import Voice, engine_available, list_voices, synthesize

TEACHER = weights.MODELS_DIR / weights.TEACHER_BASE
EVAL_SENTENCES = (
    "he was not an ill disposed young man",
    "he might even have been made amiable himself",
    "ask not what your country can do for you",
    "you are about to enter an echo test",
)
needs_espeak = pytest.mark.skipif(not engine_available("espeak-ng"), reason="espeak-ng is not installed (apt-get install espeak-ng)")
TOY_DATA = DataConfig(windows=6, seed=0, engines=("espeak-ng",), max_window_s=8.0, val_every=3, augment=False)
TOY_TRAIN = dict(steps=16, batch_size=2, lr=1e-3, warmup=2, log_every=1, eval_every=8, save_every=8, max_wer=1.0)


# ---- the whole pipeline, toy scale ------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """data -> label -> train, once for the module."""
    if not engine_available("espeak-ng"):
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    if not verify(TEACHER, check_hashes=False):
        pytest.skip("run `make setup` first (no teacher)")
    from core.cli import quiet_libraries
    from core.distill.label import label

    quiet_libraries()
    run = tmp_path_factory.mktemp("distill") / "toy"
    build(run, TOY_DATA, progress=lambda _: None)
    label(run, TEACHER, batch_size=6, timestamp_fraction=0.34, progress=lambda _: None)
    train(run, TEACHER, TrainConfig(**TOY_TRAIN), progress=lambda _: None)
    return run


def test_data_windows_are_made_and_described(toy_run):
    rows = read_manifest(toy_run / "data" / "manifest.jsonl")
    assert [r["id"] for r in rows] == [f"w{i:06d}" for i in range(6)]
    assert {r["split"] for r in rows} == {"train", "val"}
    for r in rows:
        assert r["engine"] == "espeak-ng" and r["text"] and 0.5 < r["duration_s"] <= 8.0 + 0.2
        assert (toy_run / "data" / r["file"]).is_file()
    info = json.loads((toy_run / "data" / "info.json").read_text())
    assert info["engines"] == ["espeak-ng"] and info["voices"] > 100


def test_data_build_resumes_without_redoing(toy_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(toy_run / "data", run / "data")
    manifest = run / "data" / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])  # killed while writing window 4
    (run / "data" / "audio" / "w000005.flac").unlink()
    build(run, TOY_DATA, progress=lambda _: None)
    assert manifest.read_text().splitlines() == lines


def test_labels_cache_encoder_outputs_and_teacher_top_k(toy_run):
    from safetensors.torch import load_file

    records = load_records(toy_run)
    assert len(records) == 6
    assert {r["timestamps"] for r in records} == {True, False}  # both modes are labelled
    for r in records:
        cached = load_file(str(toy_run / "labels" / "cache" / f"{r['id']}.safetensors"))
        assert cached["enc"].shape == (1500, 512) and cached["enc"].dtype == torch.float16
        assert cached["tokens"][-1] == 50257  # end-of-text closes every label
        assert cached["topk_ids"].shape == (len(cached["tokens"]), 64)
        # the teacher's own greedy token is its top-1 at (almost) every position
        agree = (cached["topk_ids"][:, 0] == cached["tokens"]).float().mean()
        assert agree > 0.9
        assert cached["prompt"].tolist()[:3] == [50258, 50259, 50359]
        assert (50363 in cached["prompt"].tolist()) != r["timestamps"]
        assert 0.0 <= r["wer"] and r["teacher_text"]
    assert sum(r["wer"] < 0.5 for r in records) >= 3  # the teacher understands clean espeak-ng speech


def test_training_loss_decreases(toy_run):
    losses = [x["loss"] for x in read_log(toy_run) if "loss" in x]
    assert len(losses) == TOY_TRAIN["steps"]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    evals = [x for x in read_log(toy_run) if "val_agree" in x]
    assert [x["step"] for x in evals] == [0, 8, 16]


def test_training_resumes_exactly(toy_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(toy_run / "labels", run / "labels")
    train(run, TEACHER, TrainConfig(**TOY_TRAIN, stop_at=8), progress=lambda _: None)
    assert latest_checkpoint(run).name == "step_000008.pt"
    train(run, TEACHER, TrainConfig(**TOY_TRAIN), progress=lambda _: None)  # a second invocation goes on
    resumed, meta = load_trained(run)
    straight, _ = load_trained(toy_run)
    assert meta["step"] == 16 and resumed.keys() == straight.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=1e-5)
    assert [x["step"] for x in read_log(run) if "loss" in x] == list(range(1, 17))


def test_export_ships_only_the_decoder_and_assembles_the_student(toy_run, tmp_path):
    from transformers import WhisperForConditionalGeneration

    shipped_dir, student_dir = export(toy_run, TEACHER, progress=lambda _: None)
    shipped = shipped_dir / SHIPPED_FILE
    assert shipped.stat().st_size < MAX_SHIPPED_MB * 1e6
    from safetensors.torch import load_file

    tensors = load_file(str(shipped))
    assert tensors and all(is_trainable(name) and t.dtype == torch.float16 for name, t in tensors.items())
    assert read_shipped_metadata(shipped_dir)["distilled_from_layers"] == "[0, 5]"
    vocabulary = json.loads((shipped_dir / DRAFT_VOCABULARY_FILE).read_text())
    assert 10_000 < vocabulary["size"] < 30_000 and vocabulary["label_token_coverage"] > 0.9

    out = assemble_student(TEACHER, shipped_dir, tmp_path / "student")
    assert verify(out) and student_is_current(out, shipped_dir) and (out / DRAFT_VOCABULARY_FILE).is_file()
    student = WhisperForConditionalGeneration.from_pretrained(out, dtype=torch.float32)
    teacher = WhisperForConditionalGeneration.from_pretrained(TEACHER, dtype=torch.float32)
    trained, _ = load_trained(toy_run)
    state = student.state_dict()
    for name, value in trained.items():
        assert torch.equal(state[name], value.to(torch.float16).float()), name
    teacher_state = teacher.state_dict()
    for name, value in state.items():
        if name.startswith("model.encoder.") or name in ("model.decoder.embed_tokens.weight",
                                                          "model.decoder.embed_positions.weight"):
            assert torch.equal(value, teacher_state[name]), name
    assert student.config.decoder_layers == 2
    heads = json.loads((shipped_dir / ALIGNMENT_HEADS_FILE).read_text())  # measured on the held-out windows
    assert heads["windows"] >= 1 and heads["alignment_heads"]
    assert student.generation_config.alignment_heads == heads["alignment_heads"]
    assert all(layer < 2 for layer, _ in heads["alignment_heads"]) and heads["error_s"] <= heads["starting_heads_error_s"]
    assert not student_is_current(TEACHER, shipped_dir)  # a folder not assembled from it must be rebuilt


def test_evaluate_through_the_arena(toy_run, tmp_path):
    from core.distill.evaluate import evaluate

    export(toy_run, TEACHER, progress=lambda _: None)
    manifest = tmp_path / "clips.jsonl"
    clip = {"file": str(AUDIO / "goforward.wav"), "text": "go forward ten meters"}
    manifest.write_text(json.dumps(clip) + "\n")
    result = evaluate(toy_run / "student", TEACHER, [manifest], repeat=1, progress=lambda _: None, warmup=False)
    summary = result["summary"]
    assert summary["clips"] == 1 and summary["wer_teacher"] == 0.0
    assert summary["speculative_identical"] == "1/1"  # the teacher verifies every draft token
    assert summary["latency_student_s"] > 0 and summary["acceptance_rate"] is not None
    assert set(summary["targets"]) and result["clips"][0]["student"]["text"] is not None


# ---- parts -------------------------------------------------------------------------------------------


def test_cli_lists_every_stage():
    out = subprocess.run([sys.executable, "-m", "core.distill", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0
    for stage in ("data", "real", "label", "train", "export", "eval", "ship", "assemble", "create", "all"):
        assert stage in out.stdout


def test_blocklist_drops_evaluation_sentences():
    blocklist = corpus.Blocklist.default()
    assert blocklist.blocks("He was not an ill-disposed young man, unless to be rather cold-hearted.")
    assert blocklist.blocks("And so, my fellow Americans: ask not what your country can do for you!")
    assert blocklist.blocks("Go forward 10 meters.")
    assert blocklist.blocks("The purpose of this test is to give you an audible sense of the latency.")
    assert not blocklist.blocks("It is a truth universally acknowledged.")


def test_corpus_holds_no_evaluation_text():
    text = corpus.Corpus.load()
    if not text.sentences:
        pytest.skip("no text source installed (apt-get install r-cran-janeaustenr wordnet-base fortunes)")
    joined = " ".join(" ".join(corpus._words(s)) for sentences in text.sentences.values() for s in sentences)
    for sentence in EVAL_SENTENCES:
        assert sentence not in joined
    assert "kennedy" not in joined


def test_builtin_text_when_no_text_package_is_installed():
    text = corpus.Corpus.load(sources=())
    assert text.names == ["builtin"] and len(text.sentences["builtin"]) >= 20
    assert all(s and not corpus.Blocklist.default().blocks(s) for s in text.sentences["builtin"])


@pytest.mark.skipif(not (corpus.AUSTEN_DIR / "Rdata.rdb").is_file(), reason="r-cran-janeaustenr is not installed")
def test_r_reader_reads_the_novels():
    novels = corpus.read_r_lazyload(corpus.AUSTEN_DIR / "Rdata")
    assert set(novels) == {"emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility"}
    assert novels["prideprejudice"][0] == "PRIDE AND PREJUDICE"
    assert any("truth universally acknowledged" in (line or "") for line in novels["prideprejudice"][:40])


def test_clean_keeps_prose_and_rejects_the_rest():
    assert corpus.clean("Then they came for me -- and by that time no one was left") == \
        "Then they came for me, and by that time no one was left."
    assert corpus.clean("CHAPTER XII") is None
    assert corpus.clean("for (i = 0; i < n; i++) { x[i] = 0; }") is None
    assert corpus.clean("Too short.") is None
    assert corpus.split_sentences("Mr. Dashwood came. He sat down! Did he?") == ["Mr. Dashwood came.", "He sat down!", "Did he?"]


@needs_espeak
def test_windows_are_deterministic_in_seed_and_index():
    voices = list_voices(("espeak-ng",))
    text = corpus.Corpus({"austen": ["One sentence is read here.", "Then another one follows it.", "And a third."]})
    config = DataConfig(windows=2, engines=("espeak-ng",), max_window_s=6.0)
    a, ra = make_window(3, config, voices, text)
    b, rb = make_window(3, config, voices, text)
    c, rc = make_window(4, config, voices, text)
    assert ra == rb and np.array_equal(a, b)
    assert (ra["voice"], ra["text"], ra["augment"]) != (rc["voice"], rc["text"], rc["augment"])
    assert len(a) <= 6.0 * 16000 and np.isfinite(a).all() and np.abs(a).max() <= 1.0


@needs_espeak
def test_a_sentence_a_voice_cannot_read_is_skipped(monkeypatch):
    """festival's ked voice fails on a sentence that starts with "...": the window reads the next one."""
    import core.distill.data as data

    voices = [Voice("espeak-ng", "en-us")]
    text = corpus.Corpus({"austen": ["... an unreadable start here.", "One sentence is read here.", "Then another."]})
    config = DataConfig(windows=1, engines=("espeak-ng",), max_window_s=6.0, augment=False)

    refused = []

    def fussy(voice, sentence, **kwargs):
        if sentence.startswith("..."):
            refused.append(sentence)
            raise RuntimeError(f"{voice.id} failed: ")
        return synthesize(voice, sentence, **kwargs)

    monkeypatch.setattr(data, "synthesize", fussy)
    texts = {make_window(i, config, voices, text)[1]["text"] for i in range(6)}
    assert refused and texts and not any("unreadable" in t for t in texts)


def test_a_grown_student_keeps_its_trained_layers():
    """2 -> 3 decoder layers: the trained layers stand where their teacher layers would, the new one is the
    teacher's, and the decoder's final norm stays the trained one."""
    from transformers import WhisperForConditionalGeneration

    from core.distill.create import create_student, grow_student

    teacher = WhisperForConditionalGeneration.from_pretrained(TEACHER, dtype=torch.float32)
    student = create_student(teacher, 2)
    with torch.no_grad():
        for name, param in student.named_parameters():
            if is_trainable(name):
                param.add_(0.01)  # "trained"
    grown = grow_student(student, teacher, 3)
    assert grown.config.distilled_from_layers == [0, 2, 5] and grown.config.decoder_layers == 3
    layers = grown.model.decoder.layers
    for mine, theirs in ((layers[0], student.model.decoder.layers[0]), (layers[2], student.model.decoder.layers[1]),
                         (layers[1], teacher.model.decoder.layers[2])):
        ours, reference = mine.state_dict(), theirs.state_dict()
        assert all(torch.equal(ours[k], reference[k]) for k in ours)
    assert torch.equal(grown.model.decoder.layer_norm.weight, student.model.decoder.layer_norm.weight)
    assert grown.model.decoder.embed_tokens.weight.data_ptr() == grown.proj_out.weight.data_ptr()


@pytest.mark.parametrize("engine", ["espeak-ng", "flite", "festival", "piper"])
def test_each_tts_engine_speaks(engine):
    if not engine_available(engine):
        pytest.skip(f"{engine} is not installed (optional: the data step uses whichever engines are present)")
    voice = next(v for v in list_voices((engine,)))
    first = synthesize(voice, "Hello there, how are you today?", rate=1.1, pitch=0.2)
    assert 0.8 < len(first) / 16000 < 5 and np.abs(first).max() > 0.05
    assert np.array_equal(first, synthesize(voice, "Hello there, how are you today?", rate=1.1, pitch=0.2))


@needs_espeak
def test_augmentations_keep_speech_usable():
    speech = synthesize(Voice("espeak-ng", "en-us"), "Augmented speech is still speech.")
    rng = np.random.default_rng(0)
    outputs = [augment.tempo(speech, 1.1), augment.reverb(speech, rng, 0.4), augment.phone_band(speech, gsm=True),
               augment.noise(speech, rng, "pink", 10.0), augment.noise(speech, rng, "hum", 20.0)]
    outputs += [augment.codec(speech, name) for name, _, _ in augment.CODECS]
    for out in outputs:
        assert out.dtype == np.float32 and np.isfinite(out).all()
        assert 0.8 * len(speech) < len(out) < 1.2 * len(speech)
    noisy = augment.noise(speech, np.random.default_rng(1), "white", 0.0)
    assert np.std(noisy - speech) > 0.3 * np.std(speech)


def test_distill_loss_is_zero_only_when_the_student_matches():
    torch.manual_seed(0)
    teacher = torch.randn(5, 10) * 3
    targets = teacher.argmax(-1)
    ids = torch.arange(10).expand(5, 10)
    _, same = distill_loss(teacher.clone(), targets, ids, teacher, temperature=2.0)
    loss, other = distill_loss(torch.randn(5, 10), targets, ids, teacher, temperature=2.0)
    assert abs(float(same["kl"])) < 1e-5 and float(same["agree"]) == 1.0
    assert float(other["kl"]) > 0.1 and float(loss) > float(other["ce"])


def test_step_batches_are_permutations_split_between_processes():
    ranks = [StepBatches(10, 2, 0, 10, seed=0, world=2, rank=r) for r in (0, 1)]
    epoch0 = [i for step in range(2) for sampler in ranks for i in sampler.indices(step)]
    assert sorted(epoch0) == sorted(set(epoch0)) and len(epoch0) == 8
    assert list(StepBatches(10, 2, 3, 6, seed=0)) == [StepBatches(10, 2, 0, 6, seed=0).indices(s) for s in (3, 4, 5)]
    assert StepBatches(3, 4, 0, 1, seed=0).indices(0)  # fewer windows than a batch still trains


def test_wer_filter_and_confidence_filter():
    record = {"wer": 0.1, "truncated": False, "n_tokens": 20}
    assert keep(record, 0.2) and not keep(record, 0.05)
    assert not keep({**record, "truncated": True}, 0.2) and not keep({**record, "n_tokens": 1}, 0.2)
    real = {"wer": None, "truncated": False, "n_tokens": 20, "avg_logprob": -0.2, "no_speech_prob": 0.01,
            "compression_ratio": 1.3, "language": "en"}
    assert keep(real)
    for change in ({"avg_logprob": -0.8}, {"no_speech_prob": 0.7}, {"compression_ratio": 3.0}, {"language": "es"}):
        assert not keep({**real, **change}), change


def test_real_speech_without_transcripts_is_windowed_labelled_and_filtered(tmp_path):
    """The unlabelled-audio path on real speech: a voice pack (here: the bundled JFK and Asterisk clips as a
    stand-in for a package) is cut to speech, joined into windows with speed copies, labelled by the teacher
    and kept by its confidence; noise never becomes a window."""
    import soundfile as sf

    from core.audio import load_audio
    from core.distill import real
    from core.distill.label import label

    if not verify(TEACHER, check_hashes=False):
        pytest.skip("run `make setup` first (no teacher)")
    pack = tmp_path / "cache" / "root" / "usr/share/games/hedgewars/Data/Sounds/voices" / "Default"
    pack.mkdir(parents=True)
    for name in ("jfk.wav", "goforward.wav"):
        sf.write(pack / name, load_audio(AUDIO / name), 16000)
    sf.write(pack / "hiss.wav", (0.01 * np.random.default_rng(0).standard_normal(48000)).astype("float32"), 16000)
    (tmp_path / "cache" / "root" / ".unpacked").write_text("\n".join(real.PACKAGES))  # as if all were fetched
    run = tmp_path / "run"
    added = real.build(run / "data", tmp_path / "cache", progress=lambda _: None)
    rows = read_manifest(run / "data" / "manifest.jsonl")
    assert added == len(rows) == len(real.SPEEDS) * (len(rows) // len(real.SPEEDS)) and rows
    assert all(r["engine"] == "real" and r["text"] == "" and "hiss.wav" not in r["files"] for r in rows)
    assert {r["augment"][0] for r in rows if r["rate"] != 1.0} == {"speed 0.9", "speed 1.1"}
    label(run, TEACHER, batch_size=6, progress=lambda _: None)
    records = load_records(run)
    assert len(records) == len(rows) and all(r["wer"] is None and r["language"] == "en" for r in records)
    plain = [r for r in records if not r["augment"]]
    assert plain and all(keep(r) for r in plain)  # clean real speech: the teacher is sure of it
