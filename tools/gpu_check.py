"""The GPU check: `python tools/gpu_check.py` on a machine with a CUDA GPU (no internet needed), under 5 minutes.

It builds whisper-large-v3-sized and distil-large-v3-sized models with random weights (fp16, sdpa; the
student shares the teacher's encoder, as the real pair does), runs the app's three decoding loops
(core/decoding.py) on one 30 s window, checks that speculative decoding gives the teacher's tokens, and
times the pieces a real pair's speed depends on: the encoder, one teacher step, one draft step, and one
teacher pass verifying k drafted tokens. Random weights decide no acceptance rate, so the ratios a real
pair would reach are computed from those costs at 60%, 75% and 90% acceptance (Leviathan et al.'s
expected tokens per pass, (1 - a^(k+1)) / (1 - a), at the best draft length k).

    python tools/gpu_check.py [--tokens 128] [--window-tokens 120] [--json out.json]
    python tools/gpu_check.py --tiny --device cpu      # a seconds-long smoke run (the test suite's)

Only torch and transformers are needed (any versions with EncoderDecoderCache).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.draft import expected_tokens  # noqa: E402
from core.decoding import (DecoderModel, DraftModel, LoopGuard, SpecialTokens, Task, decode, new_cache,  # noqa: E402
                           truncate_cache)

LARGE_V3 = dict(d_model=1280, encoder_layers=32, decoder_layers=32, encoder_attention_heads=20,
                decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120, num_mel_bins=128,
                vocab_size=51866, max_source_positions=1500, max_target_positions=448)
TINY = dict(d_model=64, encoder_layers=2, decoder_layers=4, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=128, vocab_size=51866,
            max_source_positions=1500, max_target_positions=448)
STUDENT_LAYERS = {"large": 2, "tiny": 2}
ACCEPTANCE = (0.60, 0.75, 0.90)
MAX_K = 12
PROMPT = (50258, 50259, 50360, 50364)  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|> (v3 ids)


def build(sizes: dict, student_layers: int, device: str, dtype: torch.dtype):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(**sizes, decoder_start_token_id=50258, eos_token_id=50257, pad_token_id=50257,
                           bos_token_id=50257)
    with torch.device(device):
        teacher = WhisperForConditionalGeneration(config).to(dtype).eval()
        student = WhisperForConditionalGeneration(replace_layers(config, student_layers)).to(dtype).eval()
    student.model.encoder = teacher.model.encoder  # Distil-Whisper keeps the teacher's encoder
    student.model.decoder.embed_tokens = teacher.model.decoder.embed_tokens
    student.proj_out = teacher.proj_out
    return teacher, student


def replace_layers(config, layers: int):
    import copy

    config = copy.deepcopy(config)
    config.decoder_layers = layers
    return config


def special_tokens(vocab_size: int) -> SpecialTokens:
    """v3 ids; end-of-text suppressed so every loop runs its fixed number of tokens."""
    return SpecialTokens(eot=50257, sot=50258, no_speech=50363, no_timestamps=50364, timestamp_begin=50365,
                         vocab_size=vocab_size, suppress=(50257,), begin_suppress=(220,),
                         max_initial_timestamp_index=50)


def timed(fn, device: str, repeat: int) -> float:
    """Median seconds of `fn()` over `repeat` runs, after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def step_costs(teacher, student, states, context: int, device: str, repeat: int) -> dict:
    """Seconds for one teacher step, one draft step and one verifying pass over k+1 tokens, after `context`
    tokens are cached (the middle of a typical window)."""
    teacher_model, draft_model = DecoderModel(teacher), DecoderModel(student)
    ids = torch.randint(0, 50000, (1, context), device=device)

    def primed(model):
        cache = new_cache()
        model.logits(ids, states, cache, positions=[context - 1])
        return cache

    def one(model, cache, n, positions=None):
        def run():
            model.logits(torch.randint(0, 50000, (1, n), device=device), states, cache, positions)
            truncate_cache(cache, context)
        return run

    t_cache, d_cache = primed(teacher_model), primed(draft_model)
    costs = {"teacher_step_s": timed(one(teacher_model, t_cache, 1, [0]), device, repeat),
             "draft_step_s": timed(one(draft_model, d_cache, 1, [0]), device, repeat),
             "verify_s": {}}
    for k in range(1, MAX_K + 1):
        costs["verify_s"][k] = timed(one(teacher_model, t_cache, k + 1), device, max(3, repeat // 3))
    return costs


def modelled(costs: dict, encoder_s: float, tokens: int) -> dict:
    """Per acceptance rate: the best draft length and the speed ratios against the teacher (decode only and
    for a whole window of `tokens` tokens, encoder included)."""
    teacher_decode = tokens * costs["teacher_step_s"]
    student_decode = tokens * costs["draft_step_s"]
    out = {"student_vs_teacher_decode": teacher_decode / student_decode,
           "student_vs_teacher_window": (encoder_s + teacher_decode) / (encoder_s + student_decode)}
    for a in ACCEPTANCE:
        best = None
        for k, verify in costs["verify_s"].items():
            per_pass = expected_tokens(a, k)
            per_token = (k * costs["draft_step_s"] + verify) / per_pass
            if best is None or per_token < best[1]:
                best = (k, per_token)
        k, per_token = best
        out[f"speculative_at_{a:.0%}"] = {
            "draft_tokens": k,
            "decode": costs["teacher_step_s"] / per_token,
            "window": (encoder_s + teacher_decode) / (encoder_s + tokens * per_token),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="float16 on a GPU, float32 on a CPU")
    parser.add_argument("--tokens", type=int, default=96, help="tokens each loop decodes")
    parser.add_argument("--window-tokens", type=int, default=120, help="tokens of the modelled 30 s window")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="tiny random models: a smoke run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    device = args.device
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.float16 if device == "cuda" else torch.float32)
    sizes = TINY if args.tiny else LARGE_V3
    started = time.perf_counter()
    teacher, student = build(sizes, STUDENT_LAYERS["tiny" if args.tiny else "large"], device, dtype)
    print(f"built teacher ({sizes['decoder_layers']} decoder layers) and student "
          f"({student.config.decoder_layers}) in {time.perf_counter() - started:.1f} s on {device} ({dtype}), "
          f"attention {teacher.config._attn_implementation}")
    special = special_tokens(sizes["vocab_size"])
    features = torch.randn(1, sizes["num_mel_bins"], 3000, device=device, dtype=dtype)
    with torch.inference_mode():
        encoder_s = timed(lambda: teacher.model.encoder(features), device, max(3, args.repeat // 4))
        states = teacher.model.encoder(features).last_hidden_state

    task = Task(PROMPT, False, (args.tokens,))
    no_guard = LoopGuard(special.eot, max_period=0)  # random weights repeat themselves: decode every token
    loops = {}
    results = {}
    for name, model, draft in (("student", student, None), ("teacher", teacher, None),
                               ("speculative", teacher, DraftModel(student, None))):
        decoder = DecoderModel(model)
        run = lambda: results.__setitem__(name, decode(decoder, states, task, special, draft, guard=no_guard)[0])  # noqa: E731
        loops[name] = timed(run, device, 3)
    identical = results["speculative"].tokens == results["teacher"].tokens
    costs = step_costs(teacher, student, states, 64, device, args.repeat)
    ratios = modelled(costs, encoder_s, args.window_tokens)
    gpu = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    summary = {
        "device": gpu, "dtype": str(dtype), "sizes": sizes, "student_decoder_layers": student.config.decoder_layers,
        "encoder_s": encoder_s, "loop_s": loops, "loop_tokens": {k: len(v.tokens) for k, v in results.items()},
        "speculative_identical": identical, "acceptance_random_weights": results["speculative"].accepted
        / max(results["speculative"].drafted, 1), "costs": costs, "modelled": ratios,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
        "seconds": time.perf_counter() - started,
    }
    print(f"encoder {encoder_s * 1e3:.1f} ms per 30 s window")
    print("loops, {} tokens: ".format(args.tokens) + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in loops.items()))
    print(f"speculative identical to the teacher: {identical}")
    print(f"teacher step {costs['teacher_step_s'] * 1e3:.2f} ms, draft step {costs['draft_step_s'] * 1e3:.2f} ms, "
          "verify k=1/3/5/8: " + ", ".join(f"{costs['verify_s'][k] * 1e3:.2f}" for k in (1, 3, 5, 8)) + " ms")
    print(f"student/teacher speed: decode {ratios['student_vs_teacher_decode']:.2f}x, "
          f"a {args.window_tokens}-token window {ratios['student_vs_teacher_window']:.2f}x")
    for a in ACCEPTANCE:
        r = ratios[f"speculative_at_{a:.0%}"]
        print(f"speculative/teacher at {a:.0%} acceptance: decode {r['decode']:.2f}x, window {r['window']:.2f}x "
              f"(best draft length {r['draft_tokens']})")
    print(f"done in {summary['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1, default=str))
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
