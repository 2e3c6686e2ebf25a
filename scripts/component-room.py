#!/usr/bin/env python3
"""How often Temporal Self-Rewarding's two components could act, and would act, on a TSR run's
own samples under other scorings of the same `ifeval` verdicts (docs/study.md, "Do both
halves of TSR act?").

Reads RUN/iter_<i>/samples.jsonl and judgments.jsonl (written by `srlm run` with the `ifeval`
judge and the `temporal` strategy) and rescores every sample from IFEval's per-instruction
verdicts kept in the judgment details:

  strict  5 x (instructions followed strictly) / (instructions)   (the `ifeval` judge)
  loose   5 x (instructions followed loosely) / (instructions)
  mean    the mean of the two

For each scoring it applies the plugin's rules (plugins/temporal/src/lib.rs) to the samples:
Anchored Rejection could act where M_i's worst scores above 0 and M0 has a scored sample, and
acts where M0's worst is lower; Future-Guided Chosen could act where the chosen is below 5 and
acts where the future model's best is higher. The future model's samples are those the run
drew from its own M_f (trained on the run's pairs), so the future rows are indicative only.

Usage: scripts/component-room.py RUN_DIR
"""
import json
import sys
from collections import defaultdict
from pathlib import Path


def lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def scorings(details):
    ins = details.get("instructions") or []
    if not ins:
        return None
    n = len(ins)
    strict = sum(i["strict"] for i in ins) / n
    loose = sum(i["loose"] for i in ins) / n
    return {"strict": 5 * strict, "loose": 5 * loose, "mean": 2.5 * (strict + loose)}


def source_of(sample):
    s = sample["source"]
    return s if isinstance(s, str) else "temporary"


def main(run):
    run = Path(run)
    print("| iteration | scoring | prompts | anchoring could act | acted | future could act | acted |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for it in sorted(int(p.name[5:]) for p in run.glob("iter_*") if p.name[5:].isdigit()):
        folder = run / f"iter_{it}"
        if not (folder / "judgments.jsonl").is_file():
            continue
        samples = {s["id"]: s for s in lines(folder / "samples.jsonl")}
        scores = {j["sample_id"]: scorings(j.get("details") or {}) for j in lines(folder / "judgments.jsonl")}
        groups = defaultdict(lambda: defaultdict(list))
        for sid, s in samples.items():
            if scores.get(sid) is not None:
                groups[s["prompt_id"]][source_of(s)].append(scores[sid])
        for kind in ("strict", "loose", "mean"):
            counts = [0, 0, 0, 0]
            prompts = 0
            for g in groups.values():
                current = [s[kind] for s in g["current"]]
                if not current:
                    continue
                prompts += 1
                initial = [s[kind] for s in g["initial"]]
                future = [s[kind] for s in g["temporary"]]
                chosen, worst = max(current), min(current)
                if initial and worst > 0:
                    counts[0] += 1
                if initial and min(initial) < worst:
                    counts[1] += 1
                if chosen < 5:
                    counts[2] += 1
                if future and max(future) > chosen:
                    counts[3] += 1
            print(f"| {it} | {kind} | {prompts} | {counts[0]} | {counts[1]} | {counts[2]} | {counts[3]} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    main(sys.argv[1])
