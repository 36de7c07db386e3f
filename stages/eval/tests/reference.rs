//! Compares every metric with the values the reference implementations
//! computed on the same inputs (fixture written by `tests/gen_reference.py`).

use pipe_eval::metrics::{
    Bleu, BleuConfig, BleuTokenize, Chrf, ChrfConfig, Rouge, RougeTokenizer, RougeType, Smooth,
    classification_report, porter,
};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture present"))
        .expect("valid json")
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

#[test]
fn tokenizers_match_sacrebleu() {
    let fx = fixture();
    let mut bad = Vec::new();
    for (name, cases) in fx["tokenize"].as_object().expect("object") {
        let tok = BleuTokenize::parse(name).expect("known tokenizer");
        for case in cases.as_array().expect("array") {
            let (input, want) = (case[0].as_str().unwrap(), case[1].as_str().unwrap());
            let got = tok.tokenize(input);
            if got != want {
                bad.push(format!(
                    "{name}: {input:?}\n  got  {got:?}\n  want {want:?}"
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn bleu_matches_sacrebleu() {
    let fx = fixture();
    let mut bad = Vec::new();
    let mut n = 0;
    for case in fx["bleu"].as_array().expect("array") {
        let name = case["name"].as_str().unwrap();
        let hyps = strs(&case["hyps"]);
        let refs: Vec<Vec<String>> = case["refs"].as_array().unwrap().iter().map(strs).collect();
        let cfg = BleuConfig {
            tokenize: BleuTokenize::parse(case["tokenize"].as_str().unwrap()).unwrap(),
            smooth: Smooth::parse(
                case["smooth"].as_str().unwrap(),
                case["smooth_value"].as_f64(),
            )
            .unwrap(),
            lowercase: case["lowercase"].as_bool().unwrap(),
            max_order: 4,
            effective_order: false,
        };
        let got = Bleu::new(cfg).corpus_score(&hyps, &refs).score;
        n += 1;
        if (got - f(&case["corpus"])).abs() > 1e-9 {
            bad.push(format!("{name} corpus: got {got}, want {}", case["corpus"]));
        }
        for (eff, key) in [(true, "sentence"), (false, "sentence_no_eff")] {
            let mut b = Bleu::new(BleuConfig {
                effective_order: eff,
                ..cfg
            });
            for (i, want) in case[key].as_array().unwrap().iter().enumerate() {
                let got = b.sentence_score(&hyps[i], &refs[i]).score;
                n += 1;
                if (got - f(want)).abs() > 1e-9 {
                    bad.push(format!(
                        "{name} {key}[{i}] {:?} / {:?}: got {got}, want {want}",
                        hyps[i], refs[i]
                    ));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {n} BLEU values differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn chrf_matches_sacrebleu() {
    let fx = fixture();
    let mut bad = Vec::new();
    for case in fx["chrf"].as_array().expect("array") {
        let name = case["name"].as_str().unwrap();
        let hyps = strs(&case["hyps"]);
        let refs: Vec<Vec<String>> = case["refs"].as_array().unwrap().iter().map(strs).collect();
        let cfg = ChrfConfig {
            word_order: case["word_order"].as_u64().unwrap() as usize,
            lowercase: case["lowercase"].as_bool().unwrap(),
            whitespace: case["whitespace"].as_bool().unwrap(),
            eps_smoothing: case["eps_smoothing"].as_bool().unwrap(),
            ..ChrfConfig::default()
        };
        let mut c = Chrf::new(cfg);
        let got = c.corpus_score(&hyps, &refs);
        if (got - f(&case["corpus"])).abs() > 1e-9 {
            bad.push(format!("{name} corpus: got {got}, want {}", case["corpus"]));
        }
        for (i, want) in case["sentence"].as_array().unwrap().iter().enumerate() {
            let got = c.sentence_score(&hyps[i], &refs[i]);
            if (got - f(want)).abs() > 1e-9 {
                bad.push(format!("{name} sentence[{i}]: got {got}, want {want}"));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn rouge_matches_rouge_score() {
    let fx = fixture();
    let mut bad = Vec::new();
    let mut scorers = [
        Rouge::new(RougeTokenizer::Default, false),
        Rouge::new(RougeTokenizer::Default, true),
    ];
    for case in fx["rouge"].as_array().expect("array") {
        let stem = case["stemmer"].as_bool().unwrap();
        let r = &mut scorers[stem as usize];
        let pred = case["prediction"].as_str().unwrap();
        let only_lsum = case.get("only").is_some();
        r.types = if only_lsum {
            vec![RougeType::RougeLsum]
        } else {
            RougeType::ALL.to_vec()
        };
        let got = match case.get("targets") {
            Some(t) => r.score_multi(&strs(t), pred),
            None => r.score(case["target"].as_str().unwrap(), pred),
        };
        for (ty, want) in case["scores"].as_object().unwrap() {
            let t = RougeType::ALL
                .into_iter()
                .find(|t| t.name() == ty)
                .expect("known type");
            let g = got.get(t);
            let w: Vec<f64> = want.as_array().unwrap().iter().map(f).collect();
            for (gv, wv, what) in [
                (g.precision, w[0], "p"),
                (g.recall, w[1], "r"),
                (g.fmeasure, w[2], "f"),
            ] {
                if (gv - wv).abs() > 1e-12 {
                    bad.push(format!(
                        "{ty}.{what} stem={stem} {:?} vs {pred:?}: got {gv}, want {wv}",
                        case.get("target")
                    ));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{} differ:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn porter_matches_nltk() {
    let fx = fixture();
    let mut bad = Vec::new();
    for (w, want) in fx["stem"].as_object().expect("object") {
        let got = porter::stem(w);
        if got != want.as_str().unwrap() {
            bad.push(format!("{w}: got {got}, want {want}"));
        }
    }
    assert!(bad.is_empty(), "{} differ:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn classification_matches_sklearn() {
    let fx = fixture();
    for case in fx["sklearn"].as_array().expect("array") {
        let yt = strs(&case["y_true"]);
        let yp = strs(&case["y_pred"]);
        let labels = case["labels"].as_array().map(|_| strs(&case["labels"]));
        let r = classification_report(&yt, &yp, labels.as_deref());
        let ctx = format!("{yt:?} / {yp:?}");
        assert_eq!(r.labels, strs(&case["sorted_labels"]), "{ctx}");
        assert!((r.accuracy - f(&case["accuracy"])).abs() < 1e-12, "{ctx}");
        for (i, c) in r.per_class.iter().enumerate() {
            assert!(
                (c.precision - f(&case["precision"][i])).abs() < 1e-12,
                "{ctx} precision {}",
                c.label
            );
            assert!(
                (c.recall - f(&case["recall"][i])).abs() < 1e-12,
                "{ctx} recall {}",
                c.label
            );
            assert!(
                (c.f1 - f(&case["f1"][i])).abs() < 1e-12,
                "{ctx} f1 {}",
                c.label
            );
            assert_eq!(c.support, case["support"][i].as_u64().unwrap(), "{ctx}");
        }
        for (name, got) in [
            ("macro", r.macro_avg),
            ("micro", r.micro_avg),
            ("weighted", r.weighted_avg),
        ] {
            let w = &case["avg"][name];
            assert!(
                (got.precision - f(&w[0])).abs() < 1e-12,
                "{ctx} {name} p {} vs {}",
                got.precision,
                w[0]
            );
            assert!((got.recall - f(&w[1])).abs() < 1e-12, "{ctx} {name} r");
            assert!(
                (got.f1 - f(&w[2])).abs() < 1e-12,
                "{ctx} {name} f1 {} vs {}",
                got.f1,
                w[2]
            );
        }
        let want: Vec<Vec<u64>> = case["confusion"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(r.confusion, want, "{ctx}");
    }
}
