"""The cost model of speculative decoding, measured on the device at hand.

A speculative pass drafts k tokens (k draft steps of cost c each) and has the teacher read them in one
verify pass of cost V(k); it keeps expected_tokens(alpha, k) tokens. With costs in teacher decoder steps (T),
speculative decoding's decode speed against the teacher's is

    expected_tokens(alpha, k) / (V(k) + k * c)

so c, V(k) and the per-token acceptance alpha say what any change buys before it is made, and which draft
length is best (core/draft.py `DraftPolicy`). Every cost here is one model pass at batch 1 with a KV cache of
a typical length, the logit rules and the token picker included, as the decoding loop runs it; the median of
`repeats` passes.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from core.decoding import DecoderModel, SpecialTokens, _apply, logit_rules, new_cache, truncate_cache
from core.draft import DraftModel, DraftPolicy, expected_tokens

MAX_K = 12
CONTEXT_TOKENS = 24  # tokens in the caches when a pass is timed: mid-sentence
REPEATS = 25
ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class CostTable:
    """Step costs of one preset on one device: T in ms, the rest in T."""

    teacher_step_ms: float
    draft_step: float  # c
    verify: tuple[float, ...]  # V(k) for k = 1..MAX_K: a teacher pass over the last kept token and k drafted

    @property
    def verify_slope(self) -> float:
        """Least-squares slope of V(k) over k: what each further drafted token costs to check."""
        ks = range(1, len(self.verify) + 1)
        mean_k, mean_v = statistics.fmean(ks), statistics.fmean(self.verify)
        return sum((k - mean_k) * (v - mean_v) for k, v in zip(ks, self.verify)) / sum((k - mean_k) ** 2 for k in ks)

    @property
    def verify_base(self) -> float:
        """The least-squares line's V(0): what a verify pass costs whatever the draft."""
        return statistics.fmean(self.verify) - self.verify_slope * statistics.fmean(range(1, len(self.verify) + 1))

    def speed(self, alpha: float, k: int) -> float:
        """Modelled decode speed against the teacher at per-token acceptance alpha and draft length k."""
        return expected_tokens(alpha, k) / (self.verify[k - 1] + k * self.draft_step)

    def best(self, alpha: float) -> tuple[int, float]:
        k = max(range(1, len(self.verify) + 1), key=lambda n: self.speed(alpha, n))
        return k, self.speed(alpha, k)

    def policy(self, base: DraftPolicy) -> DraftPolicy:
        """`base` with this table's draft step cost and verify slope."""
        return replace(base, step_cost=round(self.draft_step, 3), verify_base=round(self.verify_base, 3),
                       verify_slope=round(self.verify_slope, 3))

    @classmethod
    def from_dict(cls, d: dict) -> "CostTable":
        return cls(d["teacher_step_ms"], d["draft_step_T"], tuple(d["verify_T"]))

    def to_dict(self) -> dict:
        return {"teacher_step_ms": round(self.teacher_step_ms, 2), "draft_step_T": round(self.draft_step, 3),
                "verify_T": [round(v, 3) for v in self.verify], "verify_slope_T": round(self.verify_slope, 3),
                "verify_base_T": round(self.verify_base, 3),
                "best_k": {str(a): self.best(a)[0] for a in ALPHAS},
                "modelled_speed": {str(a): round(self.best(a)[1], 3) for a in ALPHAS}}


def _median_ms(run, repeats: int) -> float:
    run()  # warm-up
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return 1000 * statistics.median(samples)


@torch.inference_mode()
def measure(teacher: DecoderModel, draft: DraftModel, special: SpecialTokens, encoder_states: torch.Tensor,
            context: list[int], repeats: int = REPEATS) -> CostTable:
    """Time one teacher pass over 1..MAX_K+1 new tokens and one draft step, after `context` (prompt + text)."""
    rules = logit_rules(special, False, False, encoder_states.device)
    device = encoder_states.device
    cache = new_cache()
    teacher.logits(torch.tensor([context[:-1]], device=device), encoder_states, cache)
    sampled = context[-CONTEXT_TOKENS:]  # what the rules see; any text tokens time the same

    def teacher_pass(n: int):
        def run():
            logits = teacher.logits(torch.tensor([context[-1:] + sampled[:n - 1]], device=device), encoder_states,
                                    cache)[0]
            _apply(rules, logits, [sampled[:j] for j in range(n)]).argmax(-1).tolist()
            truncate_cache(cache, len(context) - 1)
        return run

    state = draft.decoder.start(encoder_states)
    draft.decoder.read(state, context[:-1])

    def draft_step():
        logits = _apply(rules, draft.decoder.read(state, context[-1:]), [sampled])
        logits.argmax(-1).tolist()
        draft.decoder.truncate(state, len(context) - 1)

    step_ms = _median_ms(teacher_pass(1), repeats)
    verify = tuple(_median_ms(teacher_pass(k + 1), repeats) / step_ms for k in range(1, MAX_K + 1))
    return CostTable(step_ms, _median_ms(draft_step, repeats) / step_ms, verify)


def device_name(models) -> str:
    """The GPU's name, or the CPU's model, thread count and the flags that change the picture (bf16, AMX)."""
    if models.device.type == "cuda":
        return torch.cuda.get_device_name(models.device)
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"CPU x{torch.get_num_threads()} threads"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags]
    return f"{model}, {torch.get_num_threads()} threads ({' '.join(shown) or 'no AVX-512'})"


def markdown(table: CostTable, device: str) -> str:
    rows = [f"Step costs on {device} (T = one teacher decoder step = {table.teacher_step_ms:.1f} ms; batch 1, KV cache, "
            f"logit rules and picker included)", "",
            "| draft step c | " + " | ".join(f"V({k})" for k in range(1, len(table.verify) + 1)) + " | slope |",
            "|---" * (len(table.verify) + 2) + "|",
            f"| {table.draft_step:.2f} T | " + " | ".join(f"{v:.2f}" for v in table.verify)
            + f" | {table.verify_slope:.3f} T/token |", "",
            "| per-token acceptance | " + " | ".join(str(a) for a in ALPHAS) + " |", "|---" * (len(ALPHAS) + 1) + "|",
            "| best draft length | " + " | ".join(str(table.best(a)[0]) for a in ALPHAS) + " |",
            "| modelled speed vs teacher (decode) | " + " | ".join(f"{table.best(a)[1]:.2f}x" for a in ALPHAS) + " |"]
    return "\n".join(rows)


SAMPLE_TEXT = " And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country."


def measure_models(models, draft: DraftModel, audio, repeats: int = REPEATS) -> CostTable:
    """The cost table of a loaded preset's teacher (core/models.py) in its precision and `draft`, the encoder
    run once on `audio` (16 kHz)."""
    from core.prompt import prompt

    config = models.teacher.generation_config
    special = SpecialTokens.from_config(config, models.teacher.config.vocab_size)
    head = prompt(config, bool(getattr(config, "is_multilingual", False)), "en")(False)
    text = models.processor.tokenizer.encode(SAMPLE_TEXT, add_special_tokens=False)
    features = models.processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        states = models.teacher.model.encoder(features.to(models.device, models.dtype)).last_hidden_state
    context = [*head, *(text * 2)[:CONTEXT_TOKENS]]
    return measure(DecoderModel(models.teacher), draft, special, states, context, repeats)
