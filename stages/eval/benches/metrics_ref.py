#!/usr/bin/env python3
"""Reference timings for `cargo run --release -p pipe-eval --example metrics_bench`:
sacrebleu and rouge-score on the same 10,000 synthetic ~30-word pairs (the
generator of shared/peers/metrics_speed_ref.py, reproduced bit for bit in the
Rust bench). Prints JSON (pairs/s and checksums) on stdout.

    /work/venv-eval/bin/python stages/eval/benches/metrics_ref.py [--pairs 10000] [--repeats 3] > /tmp/ref.json
"""

import argparse
import json
import logging
import time

import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

logging.getLogger("sacrebleu").setLevel(logging.ERROR)

WORDS = (
    "the a of to in on for with by at from and or but not is are was were be been has have had "
    "model data training evaluation metric score contract party agreement clause shall may must notice "
    "court judge ruling appeal law right obligation payment invoice due late fee interest rate month year "
    "quick slow large small good better best bad run runs running ran runner connect connected connection "
    "general generalize happy happily study studies studied student organize organization report result "
    "increase decrease system network server request response error memory token batch epoch loss accuracy "
    "precision recall Monday Friday 2024 12 30 100 3.5 1,000 it's don't can't we'll state-of-the-art "
    "fine-tuning e-mail tenant landlord premises lease rent deposit damages breach remedy termination "
    "warranty liability indemnity license software licensee licensor confidential information disclosure"
).split()
PUNCT = [",", ".", ";", ":", "!", "?", "%"]


class Lcg:
    def __init__(self, seed):
        self.s = (seed * 2862933555777941757 + 3037000493) & 0xFFFFFFFFFFFFFFFF

    def next(self):
        self.s = (self.s * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        return self.s >> 33

    def below(self, n):
        return self.next() % n

    def choice(self, seq):
        return seq[self.below(len(seq))]


def make_pairs(n, seed=12345):
    rng = Lcg(seed)
    hyps, refs = [], []
    for _ in range(n):
        length = 25 + rng.below(11)
        ref = []
        for i in range(length):
            w = rng.choice(WORDS)
            if i == 0 or rng.below(15) == 0:
                w = w.capitalize()
            if rng.below(8) == 0:
                w += rng.choice(PUNCT)
            ref.append(w)
        ref[-1] = ref[-1].rstrip(",;:!?%") + "."
        hyp = []
        for w in ref:
            r = rng.below(20)
            if r < 3:
                hyp.append(rng.choice(WORDS))
            elif r < 5:
                continue
            elif r < 6:
                hyp.extend([w, rng.choice(WORDS)])
            else:
                hyp.append(w)
        if len(hyp) > 4 and rng.below(2) == 0:
            i = rng.below(len(hyp) - 1)
            hyp[i], hyp[i + 1] = hyp[i + 1], hyp[i]
        hyps.append(" ".join(hyp))
        refs.append(" ".join(ref))
    return hyps, refs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    hyps, refs = make_pairs(args.pairs)
    all4 = ["rouge1", "rouge2", "rougeL", "rougeLsum"]

    def rouge(stem, types):
        def run():
            sc = rouge_scorer.RougeScorer(types, use_stemmer=stem)
            acc = 0.0
            for h, r in zip(hyps, refs):
                s = sc.score(r, h)
                acc += sum(v.fmeasure for v in s.values())
            return acc
        return run

    benches = [
        ("corpus_bleu", lambda: sacrebleu.corpus_bleu(hyps, [refs]).score),
        ("sentence_bleu", lambda: sum(BLEU(effective_order=True).sentence_score(h, [r]).score
                                      for h, r in zip(hyps, refs))),
        ("corpus_chrf", lambda: CHRF().corpus_score(hyps, [refs]).score),
        ("rouge4_nostem", rouge(False, all4)),
        ("rouge4_stem", rouge(True, all4)),
        ("rougeL_nostem", rouge(False, ["rougeL"])),
    ]
    out = {"pairs": args.pairs, "results": {}}
    for name, fn in benches:
        times, val = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            val = fn()
            times.append(time.perf_counter() - t0)
        out["results"][name] = {"best_s": min(times), "pairs_per_s": args.pairs / min(times), "checksum": val}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
