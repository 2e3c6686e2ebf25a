#!/usr/bin/env python3
"""The sweep table of docs/study.md from the run folders scripts/study-sweep.sh writes.

Every number is read from a run folder: held-out scores and IFEval's prompt-level strict
accuracy from metrics.jsonl, M2 - M0 with its interval and p-value as the run's report.md
states it (srlm's paired bootstrap and sign-flip test), pairs per iteration, the last epoch's
mean DPO rewards/margins from iter_<i>/dpo_log.jsonl, and the share of looping held-out
answers (more than half of the word trigrams repeated, srlm-judge's `degeneration`) from
eval/M<i>.jsonl, so runs made before srlm recorded the last two read the same.

Usage: scripts/study-table.py SWEEP_DIR SETTING...
"""
import json,re,sys,os
def looping(path):
    rows=[json.loads(l) for l in open(path)]
    def deg(t):
        w=[x.lower() for x in t.split()]
        if len(w)<3: return False
        g=[tuple(w[i:i+3]) for i in range(len(w)-2)]
        return 1-len(set(g))/len(g)>0.5
    return sum(deg(r['response']) for r in rows)/len(rows)
import math
def last_margin(d,it):
    p=os.path.join(d,f'iter_{it}/dpo_log.jsonl')
    if not os.path.isfile(p): return None
    st=[json.loads(l) for l in open(p)]
    if not st: return None
    e=max(math.ceil(x['epoch']-1e-9) for x in st)
    v=[x['rewards/margins'] for x in st if math.ceil(x['epoch']-1e-9)==e]
    return sum(v)/len(v)
base=sys.argv[1]
times={}
for l in open(os.path.join(base,'times.txt')):
    n,t=l.split(':'); t=int(t.strip().split()[0])
    if t>0: times[n]=t
print("| setting | wall (min) | pairs (it. 1, 2) | last-epoch margin (it. 1, 2) | held-out M0 → M1 → M2 | M2 − M0 [95% interval], p | IFEval prompt-strict M0 → M2 | looping answers M0 → M2 |")
print("|---|---:|---|---|---|---|---|---|")
for name in sys.argv[2:]:
    d=os.path.join(base,name)
    if not os.path.isfile(os.path.join(d,'metrics.jsonl')): continue
    m=[json.loads(l) for l in open(os.path.join(d,'metrics.jsonl'))]
    if len(m)<3: continue
    rep=open(os.path.join(d,'report.md')).read()
    g=re.search(r"M2 − M0 on the same (\d+) held-out prompts: ([+-][\d.]+) \(95% bootstrap interval \[([+-][\d.]+), ([+-][\d.]+)\], sign-flip permutation p = ([\d.]+)\)",rep)
    diff=f"{g.group(2)} [{g.group(3)}, {g.group(4)}], p = {g.group(5)}" if g else "–"
    f=lambda v,d=3: '–' if v is None else f"{v:.{d}f}"
    print(f"| {name} | {times.get(name,0)/60:.1f} | {m[1].get('pairs')}, {m[2].get('pairs')} | {f(last_margin(d,1),2)}, {f(last_margin(d,2),2)} | {f(m[0]['eval/score'])} → {f(m[1]['eval/score'])} → {f(m[2]['eval/score'])} | {diff} | {f(m[0].get('eval/ifeval/prompt_level_strict_acc'))} → {f(m[2].get('eval/ifeval/prompt_level_strict_acc'))} | {f(looping(os.path.join(d,'eval/M0.jsonl')))} → {f(looping(os.path.join(d,'eval/M2.jsonl')))} |")
