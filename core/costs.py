"""The cost model of speculative decoding, measured on the device at hand.

A speculative pass drafts k tokens (k draft steps of cost c each) and has the teacher read them in one
verify pass of cost V(k); it keeps expected_tokens(alpha, k) tokens. With costs in teacher decoder steps (T),
speculative decoding's decode speed against the teacher's is

    expected_tokens(alpha, k) / (V(k) + k * c)

so c, V(k) and the per-token acceptance alpha say what any change buys before it is made, and which draft
length is best (core/draft.py `DraftPolicy`). Every cost here is one model pass at batch 1 with a KV cache of
a typical length, the logit rules and the token picker included, as the decoding loop runs it; the median of
`repeats` passes.

Long recordings are where the teacher decodes BATCH windows per pass and speculative decoding one. Whether
drafting and verifying a batch of windows together could pay is read from the same passes at batch BATCH
(`BatchedCosts`): with T_B one teacher step over the batch and V_B(k) a pass over k drafted tokens in every
window, even a free draft moves each window expected_tokens(alpha, k) tokens per V_B(k), so
max_k expected_tokens(alpha, k) / V_B(k) bounds what batched speculative decoding can gain over the batched
teacher. Where a CPU's batched pass is bound by arithmetic, V_B(k) grows almost as k + 1 and the bound is
near 1. A real draft adds c_B per drafted token, its step over the batch: estimated as the lean draft's
one-window step c scaled by how much the student's own decoder step grows from one window to BATCH (a
batched lean draft does not exist to time), which gives the estimate max_k expected_tokens(alpha, k) /
(V_B(k) + k c_B).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from core.decoding import DecoderModel, SpecialTokens, _apply, logit_rules, new_cache, truncate_cache
from core.draft import DraftModel, DraftPolicy, expected_tokens

MAX_K = 12
CONTEXT_TOKENS = 24  # tokens in the caches when a pass is timed: mid-sentence
REPEATS = 25
ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9)
BATCH = 8  # Options.batch_size's default: the windows a long recording's teacher decodes per pass
BATCH_MAX_K = 6


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


@dataclass(frozen=True)
class BatchedCosts:
    """The teacher's passes over `batch` windows at once: T_B in ms, V_B(k) in T_B (module docstring)."""

    batch: int
    teacher_step_ms: float  # T_B: one step of every window in the batch
    verify: tuple[float, ...]  # V_B(k) for k = 1..BATCH_MAX_K: k drafted tokens in every window
    draft_step: float = 0.0  # c_B, in T_B: one draft step over the batch (an estimate: module docstring)

    def speed(self, alpha: float, k: int, draft_step: float) -> float:
        return expected_tokens(alpha, k) / (self.verify[k - 1] + k * draft_step)

    def bound(self, alpha: float) -> tuple[int, float]:
        """The best draft length and what batched speculative decoding could at most gain over the batched
        teacher at acceptance alpha, its draft free."""
        return self._best(alpha, 0.0)

    def estimate(self, alpha: float) -> tuple[int, float]:
        """The same with the draft's estimated step c_B."""
        return self._best(alpha, self.draft_step)

    def _best(self, alpha: float, draft_step: float) -> tuple[int, float]:
        k = max(range(1, len(self.verify) + 1), key=lambda n: self.speed(alpha, n, draft_step))
        return k, self.speed(alpha, k, draft_step)

    def to_dict(self) -> dict:
        return {"batch": self.batch, "teacher_step_ms": round(self.teacher_step_ms, 2),
                "verify_T_B": [round(v, 3) for v in self.verify], "draft_step_T_B": round(self.draft_step, 3),
                "bound_with_free_draft": {str(a): round(self.bound(a)[1], 3) for a in ALPHAS},
                "estimate_with_draft": {str(a): round(self.estimate(a)[1], 3) for a in ALPHAS}}


def _medians_ms(runs: list[Callable[[], None]], repeats: int) -> list[float]:
    """Median ms of each of `runs`, timed in turn round after round (after one warm-up round), so that a drift
    in the machine's speed moves every pass alike instead of the ones timed last."""
    samples: list[list[float]] = [[] for _ in runs]
    for round_ in range(repeats + 1):
        for run, times in zip(runs, samples):
            started = time.perf_counter()
            run()
            if round_:
                times.append(time.perf_counter() - started)
    return [1000 * statistics.median(times) for times in samples]


def _passes(model: DecoderModel, rules, encoder_states: torch.Tensor, context: list[int],
            sizes: range) -> list[Callable[[], None]]:
    """One pass of `model` over n new tokens in every row of `encoder_states` after `context`, for n in `sizes`:
    logits, rules and picker, then the cache cut back."""
    rows, device = len(encoder_states), encoder_states.device
    cache = new_cache()
    model.logits(torch.tensor([context[:-1]] * rows, device=device), encoder_states, cache)
    sampled = context[-CONTEXT_TOKENS:]  # what the rules see; any text tokens time the same

    def model_pass(n: int):
        def run():
            logits = model.logits(torch.tensor([context[-1:] + sampled[:n - 1]] * rows, device=device),
                                  encoder_states, cache)
            logits = logits.reshape(rows * n, -1)
            _apply(rules, logits, [sampled[:j] for j in range(n)] * rows).argmax(-1).tolist()
            truncate_cache(cache, len(context) - 1)
        return run

    return [model_pass(n) for n in sizes]


def _draft_step(draft: DraftModel, rules, encoder_states: torch.Tensor, context: list[int]) -> Callable[[], None]:
    """One step of the lean draft after `context`, its rules and picker included."""
    sampled = context[-CONTEXT_TOKENS:]
    state = draft.decoder.start(encoder_states)
    draft.decoder.read(state, context[:-1])

    def run():
        logits = _apply(rules, draft.decoder.read(state, context[-1:]), [sampled])
        logits.argmax(-1).tolist()
        draft.decoder.truncate(state, len(context) - 1)
    return run


@torch.inference_mode()
def measure(teacher: DecoderModel, draft: DraftModel, special: SpecialTokens, encoder_states: torch.Tensor,
            context: list[int], repeats: int = REPEATS) -> CostTable:
    """Time one teacher pass over 1..MAX_K+1 new tokens and one draft step, after `context` (prompt + text)."""
    rules = logit_rules(special, False, False, encoder_states.device)
    runs = _passes(teacher, rules, encoder_states, context, range(1, MAX_K + 2))
    step_ms, *verify, draft_ms = _medians_ms([*runs, _draft_step(draft, rules, encoder_states, context)], repeats)
    return CostTable(step_ms, draft_ms / step_ms, tuple(v / step_ms for v in verify))


@torch.inference_mode()
def measure_batched(teacher: DecoderModel, student: DecoderModel, special: SpecialTokens, encoder_states: torch.Tensor,
                    context: list[int], draft_step_ms: float, batch: int = BATCH,
                    repeats: int = REPEATS) -> BatchedCosts:
    """T_B and V_B(1..BATCH_MAX_K) with `batch` copies of one window (`encoder_states`: (1, frames, d)), and c_B:
    the one-window draft step `draft_step_ms` scaled by the student's own step at `batch` windows over one."""
    rules = logit_rules(special, False, False, encoder_states.device)
    states = encoder_states.expand(batch, -1, -1).contiguous()
    runs = [*_passes(teacher, rules, states, context, range(1, BATCH_MAX_K + 2)),
            *_passes(student, rules, encoder_states, context, range(1, 2)),
            *_passes(student, rules, states, context, range(1, 2))]
    step_ms, *verify, student_one, student_batch = _medians_ms(runs, max(5, repeats // 3))
    draft_step = draft_step_ms * student_batch / student_one / step_ms
    return BatchedCosts(batch, step_ms, tuple(v / step_ms for v in verify), draft_step)


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


def batched_markdown(batched: BatchedCosts, table: CostTable) -> str:
    per_window = batched.teacher_step_ms / batched.batch / table.teacher_step_ms
    return "\n".join([
        f"Batches of {batched.batch} windows (long recordings): T_B = one teacher step over all of them = "
        f"{batched.teacher_step_ms:.1f} ms, {per_window:.2f} T per window; a verify pass of k drafted tokens in "
        "every window, in T_B:", "",
        "| " + " | ".join(f"V_B({k})" for k in range(1, len(batched.verify) + 1)) + " |",
        "|---" * len(batched.verify) + "|",
        "| " + " | ".join(f"{v:.2f}" for v in batched.verify) + " |", "",
        "| per-token acceptance | " + " | ".join(str(a) for a in ALPHAS) + " |", "|---" * (len(ALPHAS) + 1) + "|",
        "| batched speculative vs batched teacher, draft free (a bound) | "
        + " | ".join(f"{batched.bound(a)[1]:.2f}x" for a in ALPHAS) + " |",
        f"| the same with the draft's step over the batch, c_B ~ {batched.draft_step:.2f} T_B (an estimate) | "
        + " | ".join(f"{batched.estimate(a)[1]:.2f}x" for a in ALPHAS) + " |"])


SAMPLE_TEXT = " And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country."


def measure_models(models, draft: DraftModel, audio, repeats: int = REPEATS) -> tuple[CostTable, BatchedCosts]:
    """The cost table of a loaded preset's teacher (core/models.py) in its precision and `draft`, and its
    batched passes, the encoder run once on `audio` (16 kHz)."""
    from core.prompt import prompt

    config = models.teacher.generation_config
    special = SpecialTokens.from_config(config, models.teacher.config.vocab_size)
    head = prompt(config, bool(getattr(config, "is_multilingual", False)), "en")(False)
    text = models.processor.tokenizer.encode(SAMPLE_TEXT, add_special_tokens=False)
    features = models.processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        states = models.teacher.model.encoder(features.to(models.device, models.dtype)).last_hidden_state
    context = [*head, *(text * 2)[:CONTEXT_TOKENS]]
    teacher = DecoderModel(models.teacher)
    table = measure(teacher, draft, special, states, context, repeats)
    draft_step_ms = table.draft_step * table.teacher_step_ms
    return table, measure_batched(teacher, DecoderModel(models.student), special, states, context, draft_step_ms,
                                  BATCH, repeats)
