"""The draft model of speculative decoding (core/draft.py) and its cost model (core/costs.py), on the real
local student and teacher: the lean step computes the student's logits, int8 keeps its choices, the draft
length follows the cost model, and whatever the draft does the output stays the teacher's."""

import numpy as np
import pytest
import torch

from conftest import AUDIO, manifest
from core import costs
from core.audio import load_audio
from core.decoding import DecoderModel, Task, decode, new_cache
from core.draft import DraftModel, DraftPolicy, LeanDraft, expected_tokens
from core.engine import Options
from core.windows import features

JFK_TEXT = " And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
SPEECH_CLIPS = [c for c in manifest() if c["text"]][:3]  # every clip runs with the preset's draft in test_engine


def _states(arena, audio):
    values = features(arena.processor.feature_extractor, audio).segment(0)[None].to(arena.models.device,
                                                                                     arena.models.dtype)
    with torch.inference_mode():
        return arena.models.teacher.model.encoder(values).last_hidden_state


@pytest.fixture(scope="module")
def jfk(arena):
    tokens = [*arena._prompt(Options())(False),
              *arena.processor.tokenizer.encode(JFK_TEXT, add_special_tokens=False)]
    return _states(arena, load_audio(AUDIO / "jfk.wav")), tokens


def _lean_logits(lean: LeanDraft, states, tokens, first: int) -> list[torch.Tensor]:
    """Logits after tokens[:first] (read at once), then after each further token (read one by one)."""
    state = lean.start(states)
    rows = [lean.read(state, tokens[:first])[0]]
    rows += [lean.read(state, [t])[0] for t in tokens[first:]]
    return rows


def test_lean_step_computes_the_students_logits(arena, jfk):
    states, tokens = jfk
    with torch.inference_mode():
        reference = DecoderModel(arena.models.student).logits(torch.tensor([tokens]), states, new_cache())[0]
    lean = LeanDraft(arena.models.student, arena.models.draft_vocabulary, int8=False)
    rows = _lean_logits(lean, states, tokens, 4)
    ids = lean.ids
    for i, row in enumerate(rows[:-1]):
        torch.testing.assert_close(row[ids], reference[3 + i][ids], atol=2e-3, rtol=1e-4)
        outside = torch.ones(row.shape[-1], dtype=torch.bool)
        outside[ids] = False
        assert torch.isinf(row[outside]).all()  # full-size rows, -inf outside the draft vocabulary


def test_truncate_forgets_rejected_tokens(arena, jfk):
    states, tokens = jfk
    lean = LeanDraft(arena.models.student, arena.models.draft_vocabulary, int8=False)
    state = lean.start(states)
    lean.read(state, tokens[:8])
    expected = lean.read(state, tokens[8:10])
    lean.read(state, [1, 2, 3])  # a rejected draft
    lean.truncate(state, 8)
    torch.testing.assert_close(lean.read(state, tokens[8:10]), expected)


def test_int8_draft_keeps_the_students_choices(arena, jfk):
    states, tokens = jfk
    vocab = arena.models.draft_vocabulary
    fp32 = _lean_logits(LeanDraft(arena.models.student, vocab, int8=False), states, tokens, 4)
    int8 = _lean_logits(LeanDraft(arena.models.student, vocab, int8=True), states, tokens, 4)
    agree = np.mean([int(a.argmax()) == int(b.argmax()) for a, b in zip(fp32, int8)])
    assert agree >= 0.8, agree  # measured 1.0 on this clip; int8 may flip a near-tie


def test_expected_tokens_and_draft_length_follow_the_cost_model():
    assert expected_tokens(0.0, 5) == 1.0 and expected_tokens(1.0, 5) == 6.0
    assert expected_tokens(0.5, 2) == pytest.approx(1 + 0.5 + 0.25)
    cheap = DraftPolicy(step_cost=0.05, verify_base=1.0, verify_slope=0.02)
    dear = DraftPolicy(step_cost=0.5, verify_base=1.0, verify_slope=0.3)
    assert cheap.length(kept=90, rejected=10) > dear.length(kept=90, rejected=10)
    lengths = [cheap.length(kept=k, rejected=20) for k in (0, 20, 80, 400)]
    assert lengths == sorted(lengths) and lengths[-1] > lengths[0]  # longer drafts as acceptance rises
    assert cheap.length(kept=10_000, rejected=0) == cheap.max_tokens
    assert all(1 <= dear.length(kept=k, rejected=r) <= dear.max_tokens for k in (0, 5, 50) for r in (0, 5, 50))


@pytest.mark.parametrize("timestamps", [False, True], ids=["text", "timestamps"])
def test_confidence_stop_keeps_speculative_identical_and_shortens_drafts(arena, timestamps):
    """On bundled speech clips: with the draft stopping at its first doubted token, the output is still
    the teacher's; drafts get shorter."""
    teacher = arena.decoders["teacher"]
    plain = DraftModel(arena.models.student, arena.models.draft_vocabulary)
    doubting = DraftModel(arena.models.student, arena.models.draft_vocabulary, DraftPolicy(confidence=0.9))
    lengths = {"plain": [], "doubting": []}
    for clip in SPEECH_CLIPS:
        states = _states(arena, load_audio(AUDIO / clip["file"]))
        task = Task(arena._prompt(Options())(timestamps), timestamps, (200,))
        with torch.inference_mode():
            (reference,) = decode(teacher, states, task, arena.special)
            for name, draft in (("plain", plain), ("doubting", doubting)):
                (spec,) = decode(teacher, states, task, arena.special, draft)
                assert spec.tokens == reference.tokens, (clip["id"], name)
                assert spec.avg_logprob == pytest.approx(reference.avg_logprob, abs=1e-4)
                lengths[name] += [len(p.draft) for p in spec.passes]
    assert np.mean(lengths["doubting"]) < np.mean(lengths["plain"])


def test_cost_table_has_every_draft_length(arena):
    """The benchmark's cost table: its shape and its use, never its speed (no timing is asserted)."""
    table, batched = costs.measure_models(arena.models, arena.draft, load_audio(AUDIO / "jfk.wav"), repeats=1)
    assert batched.batch == costs.BATCH and batched.teacher_step_ms > 0
    assert len(batched.verify) == costs.BATCH_MAX_K and all(v > 0 for v in batched.verify)
    assert "V_B(6)" in costs.batched_markdown(batched, table) and batched.draft_step > 0
    for alpha in costs.ALPHAS:  # a draft that costs something gains less than a free one
        assert batched.estimate(alpha)[1] < batched.bound(alpha)[1]
    assert table.teacher_step_ms > 0 and table.draft_step > 0
    assert len(table.verify) == costs.MAX_K and all(v > 0 for v in table.verify)
    for alpha in costs.ALPHAS:
        k, speed = table.best(alpha)
        assert 1 <= k <= costs.MAX_K and speed == pytest.approx(table.speed(alpha, k))
    assert "V(12)" in costs.markdown(table, "test CPU")
    policy = table.policy(DraftPolicy())
    assert policy.step_cost == round(table.draft_step, 3) and policy.verify_slope == round(table.verify_slope, 3)
    # the fitted line passes through the mean of V(1..12); base and slope are rounded to 3 decimals each
    assert policy.verify_base + policy.verify_slope * 6.5 == pytest.approx(sum(table.verify) / len(table.verify), abs=4e-3)


def test_batched_bound_follows_the_verify_costs():
    """A batched pass whose cost grows as k + 1 (bound by arithmetic) leaves nothing to gain even with a free
    draft; one that stays flat gains what the kept tokens say."""
    arithmetic = costs.BatchedCosts(8, 10.0, tuple(float(k + 1) for k in range(1, costs.BATCH_MAX_K + 1)))
    flat = costs.BatchedCosts(8, 10.0, (1.0,) * costs.BATCH_MAX_K)
    for alpha in costs.ALPHAS:
        assert arithmetic.bound(alpha)[1] < 1.0
        assert flat.bound(alpha) == (costs.BATCH_MAX_K, pytest.approx(expected_tokens(alpha, costs.BATCH_MAX_K)))
    assert flat.to_dict()["bound_with_free_draft"]["0.9"] == round(expected_tokens(0.9, costs.BATCH_MAX_K), 3)
    # a draft step of half a batched step makes long drafts cost more than they keep: k = 1 at 50% acceptance
    drafting = costs.BatchedCosts(8, 10.0, (1.0,) * costs.BATCH_MAX_K, draft_step=0.5)
    assert drafting.estimate(0.5) == (1, pytest.approx(expected_tokens(0.5, 1) / 1.5))
