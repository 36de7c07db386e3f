#!/usr/bin/env python3
"""Writes tests/fixtures/reference.json: expected metric values computed by the
reference implementations (sacrebleu, rouge-score, nltk, scikit-learn) on
hand-written cases, for `cargo test -p pipe-eval` to compare against.

Not part of the test suite. Regenerate with:

    python3 -m venv /work/venv-eval
    /work/venv-eval/bin/pip install sacrebleu rouge-score nltk scikit-learn
    /work/venv-eval/bin/python stages/eval/tests/gen_reference.py [--shared ../shared/data]

Texts from --shared (LLaMA-Factory alpaca demos) are copied into the fixture, so
the Rust tests do not need that folder.
"""

import argparse
import importlib.metadata as md
import json
import logging
import os
import random
import re

import sacrebleu
from nltk.stem.porter import PorterStemmer
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

logging.getLogger("sacrebleu").setLevel(logging.ERROR)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "reference.json")

PAIRS = [
    ("The cat sat on the mat.", "The cat is sitting on the mat."),
    ("It costs 2.,.3 dollars and 9,,,9 cents.", "It costs 2.3 dollars and 9,9 cents."),
    ("Prices rose 3.5% in 2024-2025, e.g. from $1,000.00 to $1,035.", "Prices rose by 3.5% in 2024 - 2025 (from $1,000 to $1,035)."),
    ("", "A reference with no hypothesis at all."),
    ("A hypothesis with an empty reference.", ""),
    ("Identical strings score one hundred.", "Identical strings score one hundred."),
    ("State-of-the-art fine-tuning isn't cheap; it's &amp; costly <skipped> really.", "State of the art fine-tuning is not cheap: it's &quot;costly&quot;."),
    ("line one\nline two-\nthree and 3-4", "line one line two three and 3 - 4"),
    ("Café “quoted” — dash… naïve résumé 1.5.", "Cafe \"quoted\" - dash... naive resume 1.5"),
    ("我们今天需要提高系统的训练结果。", "我们需要提高今天的训练结果，和系统。"),
    ("模型 model 在 2024年 达到 95.5% 的准确率", "模型 model 在2024年达到了95.5%准确率"),
    ("Hello WORLD, hello world!", "hello world, Hello World."),
    ("a b c d e f g", "a b c d e f g h i j k l"),
    ("9,,,9 2.,.3 .5 5. ,x x, 1-2-3 a-b", "9,9 2.3 0.5 5 x 1 - 2 - 3 a - b"),
    ("Tabs\tand\u00a0non-breaking\u2003spaces\u3000here", "Tabs and non-breaking spaces here"),
    ("   ", "only spaces in the hypothesis"),
]

MULTI = [
    ("The cat sat on the mat.", ["The cat is sitting on the mat.", "A cat sat on a mat."]),
    ("It is 2.,.3 and 9,,,9.", ["It is 2.3 and 9,9.", "It is 2 . 3 and 9 , 9 ."]),
    ("short", ["a much longer reference sentence here", "short one"]),
    ("我们今天需要提高结果。", ["我们需要提高今天的结果。", "今天我们要提高结果"]),
    ("", ["something", ""]),
]

TOKENIZE_INPUTS = [p for pair in PAIRS for p in pair] + [
    "2.,.3", "9,,,9", "a.,b", "x.,.,.y", "1.-2", "-1", "e.g.,", "(a)[b]{c}<d>", "it's \"q\" `b` ~t| ^_",
    "\u2000a\u2001b\u201cc\u201d", "\uff08全角\uff09ＡＢＣ", "\u2f80\u2f81\u2fa1\u2fa2 \u2a6d\u2a6e",
    "Ω≈ç√∫ 5€ 3$ #hash @at", "10,000.50 USD, i.e. ~9,000 EUR.",
]


def alpaca_texts(shared):
    en, zh = [], []
    if shared:
        p = os.path.join(shared, "llamafactory", "alpaca_en_demo.json")
        if os.path.exists(p):
            en = [r["output"] for r in json.load(open(p, encoding="utf-8"))]
        p = os.path.join(shared, "llamafactory", "alpaca_zh_demo.json")
        if os.path.exists(p):
            zh = [r["output"] for r in json.load(open(p, encoding="utf-8"))]
    return en, zh


def perturb(text, rng):
    words = text.split(" ")
    out = []
    for w in words:
        r = rng.random()
        if r < 0.1:
            continue
        if r < 0.2:
            out.append(rng.choice(words))
        out.append(w)
    if len(out) > 3 and rng.random() < 0.5:
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    return " ".join(out)


def perturb_zh(text, rng):
    chars = list(text)
    out = [c for c in chars if rng.random() > 0.1]
    if len(out) > 3:
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    return "".join(out)


def bleu_cases(real_pairs):
    cases = []
    hyps = [h for h, _ in PAIRS]
    refs = [r for _, r in PAIRS]
    for tok in ["13a", "zh", "intl", "char", "none"]:
        for smooth, value in [("exp", None), ("floor", None), ("floor", 0.3), ("add-k", None), ("add-k", 2), ("none", None)]:
            for lc in [False, True] if (tok == "13a" and smooth == "exp") else [False]:
                kw = dict(tokenize=tok, smooth_method=smooth, smooth_value=value, lowercase=lc)
                corpus = BLEU(**kw).corpus_score(hyps, [refs]).score
                sent = [BLEU(effective_order=True, **kw).sentence_score(h, [r]).score for h, r in PAIRS]
                sent_noeff = [BLEU(effective_order=False, **kw).sentence_score(h, [r]).score for h, r in PAIRS]
                cases.append(dict(name=f"pairs/{tok}/{smooth}/{value}/lc={lc}", hyps=hyps, refs=[[r] for r in refs],
                                  tokenize=tok, smooth=smooth, smooth_value=value, lowercase=lc,
                                  corpus=corpus, sentence=sent, sentence_no_eff=sent_noeff))
    # Multiple references (same count per segment: sacrebleu takes streams).
    mh = [h for h, _ in MULTI]
    streams = [[rs[k] for _, rs in MULTI] for k in range(2)]
    for tok in ["13a", "zh"]:
        kw = dict(tokenize=tok)
        cases.append(dict(name=f"multi/{tok}", hyps=mh, refs=[rs for _, rs in MULTI], tokenize=tok, smooth="exp",
                          smooth_value=None, lowercase=False,
                          corpus=BLEU(**kw).corpus_score(mh, streams).score,
                          sentence=[BLEU(effective_order=True, **kw).sentence_score(h, rs).score for h, rs in MULTI],
                          sentence_no_eff=[BLEU(**kw).sentence_score(h, rs).score for h, rs in MULTI]))
    for name, pairs, tok in real_pairs:
        hy = [h for h, _ in pairs]
        re_ = [r for _, r in pairs]
        cases.append(dict(name=name, hyps=hy, refs=[[r] for r in re_], tokenize=tok, smooth="exp", smooth_value=None,
                          lowercase=False, corpus=BLEU(tokenize=tok).corpus_score(hy, [re_]).score,
                          sentence=[sacrebleu.sentence_bleu(h, [r], tokenize=tok).score for h, r in pairs],
                          sentence_no_eff=[BLEU(tokenize=tok).sentence_score(h, [r]).score for h, r in pairs]))
    return cases


def chrf_cases(real_pairs):
    cases = []
    sets = [("pairs", [h for h, _ in PAIRS], [[r] for _, r in PAIRS]),
            ("multi", [h for h, _ in MULTI], [rs for _, rs in MULTI])]
    sets += [(n, [h for h, _ in p], [[r] for _, r in p]) for n, p, _ in real_pairs]
    for name, hyps, refs in sets:
        nrefs = len(refs[0])
        streams = [[rs[k] for rs in refs] for k in range(nrefs)]
        for wo in [0, 2]:
            for lc, ws, eps in [(False, False, False), (True, False, False), (False, True, False), (False, False, True)]:
                kw = dict(word_order=wo, lowercase=lc, whitespace=ws, eps_smoothing=eps)
                cases.append(dict(name=f"{name}/wo={wo}/lc={lc}/ws={ws}/eps={eps}", hyps=hyps, refs=refs, **kw,
                                  corpus=CHRF(**kw).corpus_score(hyps, streams).score,
                                  sentence=[CHRF(**kw).sentence_score(h, rs).score for h, rs in zip(hyps, refs)]))
    return cases


def rouge_cases(real_pairs):
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    texts = PAIRS + [
        ("The quick brown fox jumps over the lazy dog", "The quick brown dog jumps on the log."),
        ("first sentence here.\nsecond sentence is here\n\nthird one", "first sentence.\nthird one here\nsecond sentence here is"),
        ("a b c\nd e f\na b", "a b\nc d\ne f a"),
        ("running runners ran\nthe studies studied", "run runner running\nstudy studies"),
        ("\n\n", "nothing\nhere"),
        ("generalizations organizational happily", "generalize organization happy"),
        ("The KELVIN \u212a sign and İstanbul", "the k sign and istanbul"),
        ("x " * 40 + "\n" + "y z " * 20, "x y " * 30 + "\nz"),
    ]
    out = []
    for stem in [False, True]:
        sc = rouge_scorer.RougeScorer(types, use_stemmer=stem)
        for t, p in texts + [x for _, pairs, _ in real_pairs for x in pairs]:
            s = sc.score(t, p)
            out.append(dict(target=t, prediction=p, stemmer=stem,
                            scores={k: [v.precision, v.recall, v.fmeasure] for k, v in s.items()}))
        for p, ts in MULTI:
            s = sc.score_multi(ts, p)
            out.append(dict(targets=ts, prediction=p, stemmer=stem,
                            scores={k: [v.precision, v.recall, v.fmeasure] for k, v in s.items()}))
    # Only rougeLsum requested: rouge-score skips whole-text tokenization.
    sc = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True)
    s = sc.score("one two\nthree", "two one\nthree four")
    out.append(dict(target="one two\nthree", prediction="two one\nthree four", stemmer=True, only="rougeLsum",
                    scores={k: [v.precision, v.recall, v.fmeasure] for k, v in s.items()}))
    return out


def stem_cases(en_texts):
    st = PorterStemmer()
    words = set("""caresses ponies ties cats feed agreed plastered motoring sing conflated troubled sized hopping
    tanned falling hissing fizzed failing filing happy sky skies dying lying tying news innings outings cannings
    howe proceed exceed succeed relational conditional rational valenci hesitanci digitizer conformabli radicalli
    differentli vileli analogousli vietnamization predication operator feudalism decisiveness hopefulness
    callousness formaliti sensitiviti sensibiliti triplicate formative formalize electriciti electrical hopeful
    goodness revival allowance inference airliner gyroscopic adjustable defensible irritant replacement adjustment
    dependent adoption homologou communism activate angulariti homologous effective bowdlerize probate rate cease
    controll roll generalizations organizational happily studies studied student organize organization running
    runner connect connected connection fully ably oddly dryly yearly crying trying flies ied tied lied spied
    aed eed ing ings abilities possibly analogically logically apologies geology biology ecology archaeology
    y yy yyy ayy syzygy aaaa bbbb ssss sses iess eeds""".split())
    tok = re.compile(r"[a-z0-9]+")
    for t in en_texts[:120]:
        words.update(tok.findall(t.lower()))
    words = sorted(w for w in words if len(w) > 0)
    return {w: st.stem(w) for w in words}


def sklearn_cases():
    cases = [
        (["a", "b", "c", "a", "b", "c"], ["a", "a", "b", "a", "b", "a"], None),  # c never predicted
        (["yes", "no", "yes", "yes", "no"], ["yes", "yes", "yes", "no", "no"], None),
        (["x", "y", "z"], ["x", "w", "y"], None),  # w predicted but never true
        (["Relevant", "Irrelevant", "Relevant", "Relevant"], ["Relevant", "Relevant", "<none>", "Relevant"], ["Irrelevant", "Relevant"]),
        (["合同", "判决", "合同", "法院"], ["合同", "合同", "判决", "法院"], None),
        (["only"] * 4, ["only"] * 4, None),
        (["b", "a", "c", "c", "c", "a", "b", "b", "d", "d"], ["b", "c", "c", "a", "c", "a", "b", "d", "d", "a"], None),
    ]
    out = []
    for yt, yp, labels in cases:
        labs = sorted(labels) if labels else sorted(set(yt) | set(yp))
        p, r, f, s = precision_recall_fscore_support(yt, yp, labels=labs, zero_division=0)
        avg = {}
        for a in ["macro", "micro", "weighted"]:
            pa, ra, fa, _ = precision_recall_fscore_support(yt, yp, labels=labs, average=a, zero_division=0)
            avg[a] = [float(pa), float(ra), float(fa)]
        out.append(dict(y_true=yt, y_pred=yp, labels=labels, accuracy=float(accuracy_score(yt, yp)),
                        sorted_labels=labs, precision=[float(x) for x in p], recall=[float(x) for x in r],
                        f1=[float(x) for x in f], support=[int(x) for x in s], avg=avg,
                        confusion=confusion_matrix(yt, yp, labels=labs).tolist()))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "..", "..", "shared", "data"))
    args = ap.parse_args()
    en, zh = alpaca_texts(args.shared)
    rng = random.Random(7)
    real = []
    if en:
        picks = [t for t in en if 0 < len(t) < 600][:40]
        real.append(("alpaca_en", [(perturb(t, rng), t) for t in picks], "13a"))
    if zh:
        picks = [t for t in zh if 0 < len(t) < 300][:30]
        real.append(("alpaca_zh", [(perturb_zh(t, rng), t) for t in picks], "zh"))
    toks = {}
    for name, cls in [("13a", "tokenizer_13a.Tokenizer13a"), ("zh", "tokenizer_zh.TokenizerZh"),
                      ("intl", "tokenizer_intl.TokenizerV14International"), ("char", "tokenizer_char.TokenizerChar")]:
        from importlib import import_module
        mod, c = cls.split(".")
        tk = getattr(import_module(f"sacrebleu.tokenizers.{mod}"), c)()
        toks[name] = [[s, tk(s)] for s in TOKENIZE_INPUTS]
    data = dict(
        versions={p: md.version(p) for p in ("sacrebleu", "rouge-score", "nltk", "scikit-learn")},
        tokenize=toks,
        bleu=bleu_cases(real),
        chrf=chrf_cases(real),
        rouge=rouge_cases(real),
        stem=stem_cases(en),
        sklearn=sklearn_cases(),
    )
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=0, sort_keys=True)
        fh.write("\n")
    print(f"wrote {OUT}: {len(data['bleu'])} BLEU, {len(data['chrf'])} chrF, {len(data['rouge'])} ROUGE, "
          f"{len(data['stem'])} stems, {len(data['sklearn'])} sklearn cases")


if __name__ == "__main__":
    main()
