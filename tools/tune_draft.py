"""Choose the draft policy on data of our own: `python tools/tune_draft.py --run runs/r4 --costs costs.json`.

Speculative decoding runs on a distillation run's held-out real-speech windows (never the benchmark's clips)
for each candidate confidence threshold; each run's cost is *modelled* from the cost table the benchmark
measured (`python -m core.bench --costs-json costs.json`): every pass costs V(k) + k c in teacher steps, the
teacher alone one step per token. Counting passes instead of timing them makes the choice independent of
whatever else shares the CPU, and says why a threshold wins.

It also sizes draft recycling (SpecASR): after a rejection the rest of the draft was read after the wrong
token, but where the teacher only substituted, inserted or dropped one token the rest may realign with what
the teacher says next, and could be proposed again without new draft steps. The table counts, per alignment,
how often the rest's first token is the teacher's next and how many tokens in a row it gets right; those
matched tokens times c bound what recycling could save (it would also pay a verify pass for every miss).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.audio import load_audio  # noqa: E402
from core.costs import CostTable  # noqa: E402
from core.decoding import Task, decode  # noqa: E402
from core.draft import DraftModel, DraftPolicy  # noqa: E402
from core.engine import Arena, Options  # noqa: E402
from core.windows import features  # noqa: E402

CONFIDENCES = (0.0, 0.3, 0.5, 0.7)


def dev_windows(run: Path, limit: int) -> list[Path]:
    rows = [json.loads(line) for line in (run / "data" / "manifest.jsonl").read_text().splitlines() if line.strip()]
    return [run / "data" / r["file"] for r in rows if r["split"] == "val" and r["engine"] == "real"][:limit]


def modelled_cost(passes, table: CostTable) -> float:
    return sum(table.verify[len(p.draft) - 1] + len(p.draft) * table.draft_step for p in passes)


ALIGNMENTS = {"substituted": (1, 1), "inserted": (0, 1), "dropped": (2, 1)}  # (draft offset, teacher offset)


def realigned(passes, tokens: list[int]) -> dict[str, list[int]]:
    """Per alignment: for every rejected pass, how many of the draft's remaining tokens match the teacher's
    tokens after its correction, in a row (offsets after the first rejected draft token / the correction)."""
    counts: dict[str, list[int]] = {name: [] for name in ALIGNMENTS}
    for p in passes:
        if p.accepted == len(p.draft):
            continue
        for name, (draft_at, teacher_at) in ALIGNMENTS.items():
            rest = p.draft[p.accepted + draft_at:]
            said = tokens[p.position + p.accepted + teacher_at:]
            if name == "dropped" and (len(p.draft) <= p.accepted + 1 or
                                      p.draft[p.accepted + 1] != tokens[p.position + p.accepted]):
                rest = ()  # a drop shows as the correction being the draft's next token
            matched = 0
            while matched < min(len(rest), len(said)) and rest[matched] == said[matched]:
                matched += 1
            counts[name].append(matched)
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--costs", type=Path, required=True, help="the benchmark's --costs-json output")
    parser.add_argument("--student", type=Path, help="student folder (default: the preset's)")
    parser.add_argument("--limit", type=int, default=60)
    args = parser.parse_args(argv)

    table = CostTable.from_dict(json.loads(args.costs.read_text()))
    arena = Arena.load("local", warmup=False, student=args.student)
    models = arena.models
    prompt = arena._prompt(Options())(False)
    drafts = {c: DraftModel(models.student, models.draft_vocabulary, table.policy(DraftPolicy(confidence=c)))
              for c in CONFIDENCES}
    totals = {c: [0.0, 0, 0, 0] for c in CONFIDENCES}  # cost, teacher steps, drafted, accepted
    recycled = {c: {name: [] for name in ALIGNMENTS} for c in CONFIDENCES}
    windows = dev_windows(args.run, args.limit)
    for path in windows:
        values = features(arena.processor.feature_extractor, load_audio(path)).segment(0)[None]
        with torch.inference_mode():
            states = models.teacher.model.encoder(values.to(models.device, models.dtype)).last_hidden_state
            task = Task(prompt, False, (200,))
            (teacher,) = decode(arena.decoders["teacher"], states, task, arena.special)
            for confidence, draft in drafts.items():
                (spec,) = decode(arena.decoders["teacher"], states, task, arena.special, draft)
                assert spec.tokens == teacher.tokens, path
                t = totals[confidence]
                t[0] += modelled_cost(spec.passes, table) + 1  # + the first step, as the teacher's
                t[1] += teacher.model_passes
                t[2] += spec.drafted
                t[3] += spec.accepted
                for name, matched in realigned(spec.passes, spec.tokens).items():
                    recycled[confidence][name] += matched
    print(f"{len(windows)} dev windows; c = {table.draft_step:.3f} T, "
          f"V slope {table.verify_slope:.3f} T")
    print("| confidence | modelled decode speed vs teacher | acceptance | tokens drafted |")
    print("|---|---|---|---|")
    for confidence, (cost, steps, drafted, accepted) in totals.items():
        print(f"| {confidence} | {steps / cost:.3f}x | {accepted / max(drafted, 1):.1%} | {drafted} |")
    print("\nDraft recycling: the rest of a rejected draft against what the teacher said after its correction")
    print("| confidence | alignment | rejections | rest's first token right | tokens right in a row, mean | "
          "draft steps it could save, share of the modelled cost |")
    print("|---|---|---|---|---|---|")
    for confidence, by_alignment in recycled.items():
        for name, matched in by_alignment.items():
            saved = sum(matched) * table.draft_step / totals[confidence][0]
            print(f"| {confidence} | {name} | {len(matched)} | {sum(m > 0 for m in matched) / max(len(matched), 1):.1%} | "
                  f"{sum(matched) / max(len(matched), 1):.2f} | {saved:.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
