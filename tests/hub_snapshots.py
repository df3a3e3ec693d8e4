"""Hugging Face cache snapshots of every hub checkpoint the presets name, for rehearsing the GPU Space offline.

Each snapshot has what the real repository has where the code can tell: config.json with the real layer
counts, mel bins and vocabulary size, generation_config.json with the real special-token ids, language and
task tables, suppress lists; the matching tokenizer (v2: 51865 tokens; v3: 51866, <|yue|> shifting every
later special id by one; .en: 51864, end-of-text 50256); preprocessor_config.json (the hub's file name);
fp16 safetensors. Widths, and the encoder's depth (which nothing reads), are shrunk and the weights are
random, so a snapshot is a few MB. A distilled student gets its teacher's encoder, as Distil-Whisper's do;
large-v3-turbo, fine-tuned after pruning, gets one of its own.

The layout is the one `huggingface_hub.snapshot_download(local_files_only=True)` reads:
    <cache>/models--<org>--<name>/refs/main            the commit hash
    <cache>/models--<org>--<name>/snapshots/<hash>/     the files
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
V3_SHIFT_FROM = 50358  # <|yue|> takes this id in v3; every special token from here on moves up by one

# real sizes (what the hub's config.json says) and the family of ids each checkpoint uses
CHECKPOINTS = {
    "openai/whisper-large-v3": dict(family="v3", width=1280, encoder_layers=32, decoder_layers=32),
    "openai/whisper-large-v3-turbo": dict(family="v3", width=1280, encoder_layers=32, decoder_layers=4),
    "distil-whisper/distil-large-v3": dict(family="v3", width=1280, encoder_layers=32, decoder_layers=2,
                                           encoder_of="openai/whisper-large-v3"),
    "distil-whisper/distil-large-v3.5": dict(family="v3", width=1280, encoder_layers=32, decoder_layers=2,
                                             encoder_of="openai/whisper-large-v3"),
    "openai/whisper-large-v2": dict(family="v2", width=1280, encoder_layers=32, decoder_layers=32),
    "distil-whisper/distil-large-v2": dict(family="v2", width=1280, encoder_layers=32, decoder_layers=2,
                                           encoder_of="openai/whisper-large-v2"),
    "openai/whisper-medium.en": dict(family="en", width=1024, encoder_layers=24, decoder_layers=24),
    "distil-whisper/distil-medium.en": dict(family="en", width=1024, encoder_layers=24, decoder_layers=2,
                                            encoder_of="openai/whisper-medium.en"),
    "openai/whisper-small.en": dict(family="en", width=768, encoder_layers=12, decoder_layers=12),
    "distil-whisper/distil-small.en": dict(family="en", width=768, encoder_layers=12, decoder_layers=4,
                                           encoder_of="openai/whisper-small.en"),
}
FAMILY = {
    "v2": dict(source=MODELS / "whisper-base", vocab_size=51865, mel_bins=80),
    "v3": dict(source=MODELS / "whisper-base", vocab_size=51866, mel_bins=128),
    "en": dict(source=MODELS / "whisper-tiny.en", vocab_size=51864, mel_bins=80),
}
V3_ALIGNMENT_HEADS = [[7, 0], [10, 17], [12, 18], [13, 12], [16, 1], [17, 14], [19, 11], [21, 4], [24, 1], [25, 6]]
SHRUNK = dict(d_model=64, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
              decoder_ffn_dim=128, encoder_layers=2)


def _shift(i: int) -> int:
    return i + 1 if i >= V3_SHIFT_FROM else i


def _tokenizer_files(family: str, out: Path) -> None:
    source = FAMILY[family]["source"]
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(source / name, out / name)
    if family != "v3":
        return
    tokenizer = json.loads((out / "tokenizer.json").read_text())
    added = [{**t, "id": _shift(t["id"])} for t in tokenizer["added_tokens"]]
    yue = next(t for t in tokenizer["added_tokens"] if t["content"] == "<|su|>")
    added.append({**yue, "id": V3_SHIFT_FROM, "content": "<|yue|>"})
    tokenizer["added_tokens"] = sorted(added, key=lambda t: t["id"])
    for special in tokenizer["post_processor"]["special_tokens"].values():
        special["ids"] = [_shift(i) for i in special["ids"]]
    (out / "tokenizer.json").write_text(json.dumps(tokenizer))
    config = json.loads((out / "tokenizer_config.json").read_text())
    names = config.get("extra_special_tokens")
    if isinstance(names, list) and "<|su|>" in names:
        names.insert(names.index("<|su|>") + 1, "<|yue|>")
    (out / "tokenizer_config.json").write_text(json.dumps(config))


def _generation_config(family: str) -> dict:
    config = json.loads((FAMILY[family]["source"] / "generation_config.json").read_text())
    if family != "v3":
        return config
    config = copy.deepcopy(config)
    config["lang_to_id"] = {k: _shift(v) for k, v in config["lang_to_id"].items()} | {"<|yue|>": V3_SHIFT_FROM}
    config["task_to_id"] = {k: _shift(v) for k, v in config["task_to_id"].items()}
    for key in ("no_timestamps_token_id", "prev_sot_token_id"):
        config[key] = _shift(config[key])
    config["suppress_tokens"] = [_shift(i) for i in config["suppress_tokens"]]
    config["alignment_heads"] = V3_ALIGNMENT_HEADS
    return config


def _model_config(spec: dict, generation: dict):
    from transformers import WhisperConfig

    family = FAMILY[spec["family"]]
    heads = spec["width"] // 64
    real = dict(d_model=spec["width"], encoder_attention_heads=heads, decoder_attention_heads=heads,
                encoder_ffn_dim=4 * spec["width"], decoder_ffn_dim=4 * spec["width"],
                encoder_layers=spec["encoder_layers"])
    config = WhisperConfig(
        vocab_size=family["vocab_size"], num_mel_bins=family["mel_bins"], decoder_layers=spec["decoder_layers"],
        max_source_positions=1500, max_target_positions=448, bos_token_id=generation["bos_token_id"],
        eos_token_id=generation["eos_token_id"], pad_token_id=generation["pad_token_id"],
        decoder_start_token_id=generation["decoder_start_token_id"],
        begin_suppress_tokens=generation["begin_suppress_tokens"], **SHRUNK,
    )
    config.arena_rehearsal = {"real_sizes": real, "shrunk": sorted(SHRUNK)}
    return config


def build_cache(cache: Path, repos: list[str] | None = None) -> Path:
    """Write a snapshot for each repository (every preset's by default) under `cache` (an HF hub cache)."""
    import torch
    from transformers import GenerationConfig, WhisperForConditionalGeneration

    cache = Path(cache)
    models = {}
    order = sorted(repos or CHECKPOINTS, key=lambda r: "encoder_of" in CHECKPOINTS[r])  # teachers first
    for repo in order:
        spec = CHECKPOINTS[repo]
        commit = hashlib.sha1(repo.encode()).hexdigest()
        root = cache / f"models--{repo.replace('/', '--')}"
        out = root / "snapshots" / commit
        out.mkdir(parents=True, exist_ok=True)
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / "main").write_text(commit)

        generation = _generation_config(spec["family"])
        torch.manual_seed(int(commit[:8], 16))
        model = WhisperForConditionalGeneration(_model_config(spec, generation)).eval()
        if "encoder_of" in spec:
            teacher = models.get(spec["encoder_of"])
            if teacher is None:
                teacher = WhisperForConditionalGeneration.from_pretrained(
                    cache / f"models--{spec['encoder_of'].replace('/', '--')}" / "snapshots"
                    / hashlib.sha1(spec["encoder_of"].encode()).hexdigest())
            model.model.encoder.load_state_dict(teacher.model.encoder.state_dict())
        model.generation_config = GenerationConfig.from_dict(generation)
        model.half().save_pretrained(out)
        models[repo] = model.float()
        _tokenizer_files(spec["family"], out)
        extractor = json.loads((FAMILY[spec["family"]]["source"] / "processor_config.json").read_text())["feature_extractor"]
        extractor["feature_size"] = FAMILY[spec["family"]]["mel_bins"]
        (out / "preprocessor_config.json").write_text(json.dumps({**extractor, "processor_class": "WhisperProcessor"}))
    return cache
