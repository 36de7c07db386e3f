//! Masks, BOS, end-of-turn, truncation and packing on the builtin byte-level
//! tokenizer, where the expected ids can be written down independently:
//! byte `b` is token `b`, `<|im_start|>` 256, `<|im_end|>` 257, `<|endoftext|>` 258.

use pipe_model::ResolvedModel;
use pipe_tokenize::*;

fn tiny() -> ModelTokenizer {
    load_tokenizer(&ResolvedModel::Builtin {
        name: "tiny".into(),
    })
    .unwrap()
}

/// A conversation built from pieces: (text, special id if the piece is one
/// special token, learned?). Gives the text, the spans, and the expected ids
/// and labels computed without the tokenizer.
struct Conv {
    text: String,
    spans: Vec<(u32, u32)>,
    ids: Vec<u32>,
    learned: Vec<bool>,
}

fn conv(pieces: &[(&str, bool)]) -> Conv {
    let mut c = Conv {
        text: String::new(),
        spans: Vec::new(),
        ids: Vec::new(),
        learned: Vec::new(),
    };
    for &(piece, learn) in pieces {
        let start = c.text.len() as u32;
        c.text.push_str(piece);
        let ids: Vec<u32> = match piece {
            "<|im_start|>" => vec![256],
            "<|im_end|>" => vec![257],
            "<|endoftext|>" => vec![258],
            _ => piece.bytes().map(u32::from).collect(),
        };
        c.learned.extend(std::iter::repeat_n(learn, ids.len()));
        c.ids.extend(ids);
        if learn {
            // Adjacent learned pieces form one span.
            match c.spans.last_mut() {
                Some(last) if last.1 == start => last.1 = c.text.len() as u32,
                _ => c.spans.push((start, c.text.len() as u32)),
            }
        }
    }
    c
}

const S: bool = false; // prompt piece
const L: bool = true; // learned piece

fn two_turns() -> Conv {
    conv(&[
        ("<|im_start|>", S),
        ("system\nBe brief.", S),
        ("<|im_end|>", S),
        ("\n", S),
        ("<|im_start|>", S),
        ("user\nHi é", S),
        ("<|im_end|>", S),
        ("\n", S),
        ("<|im_start|>", S),
        ("assistant\n", S),
        ("Hello!", L),
        ("<|im_end|>", L),
        ("\n", S),
        ("<|im_start|>", S),
        ("user\n2+2?", S),
        ("<|im_end|>", S),
        ("\n", S),
        ("<|im_start|>", S),
        ("assistant\n", S),
        ("4", L),
        ("<|im_end|>", L),
        ("\n", S),
    ])
}

fn opts(max_len: usize) -> ExampleOptions {
    ExampleOptions {
        max_len,
        truncate: Truncate::Response,
        train_on_prompt: false,
        train_on: TrainOn::All,
    }
}

fn kept(r: ExampleResult) -> Tokenized {
    match r.outcome {
        Outcome::Kept(t) => t,
        other => panic!("not kept: {other:?}"),
    }
}

fn expected_labels(c: &Conv, learn: impl Fn(usize) -> bool) -> Vec<i32> {
    let mut labels: Vec<i32> = c
        .ids
        .iter()
        .enumerate()
        .map(|(i, &id)| if learn(i) { id as i32 } else { IGNORE })
        .collect();
    labels[0] = IGNORE;
    labels
}

#[test]
fn builtin_ids_are_bytes_and_specials() {
    let tok = tiny();
    assert_eq!(tok.vocab_size(), pipe_model::builtin::VOCAB_SIZE);
    assert_eq!(
        tok.encode("<|im_start|>é\n<|im_end|><|endoftext|>"),
        vec![256, 0xC3, 0xA9, 10, 257, 258]
    );
    let c = two_turns();
    assert_eq!(tok.encode(&c.text), c.ids);
    assert_eq!(tok.decode(&c.ids), c.text);
    assert_eq!(tok.eos_id, Some(257));
    assert_eq!(tok.stop_ids, vec![257]);
    assert_eq!(tok.pad_id, Some(258));
    assert!(!tok.add_bos && tok.bos_id.is_none());
}

#[test]
fn multi_turn_masks_are_exact() {
    let tok = tiny();
    let c = two_turns();
    let ex = Example {
        text: &c.text,
        spans: &c.spans,
    };
    let t = kept(tokenize_example(&tok, 0, ex, &opts(4096)).unwrap());
    assert_eq!(t.input_ids, c.ids);
    assert_eq!(t.labels, expected_labels(&c, |i| c.learned[i]));
    // Both `<|im_end|>` closing assistant turns are learned.
    let learned_eos = t.labels.iter().filter(|&&l| l == 257).count();
    assert_eq!(learned_eos, 2);
}

#[test]
fn train_on_last_learns_only_the_final_turn() {
    let tok = tiny();
    let c = two_turns();
    let last_start = c.spans.last().unwrap().0 as usize;
    let t = kept(
        tokenize_example(
            &tok,
            0,
            Example {
                text: &c.text,
                spans: &c.spans,
            },
            &ExampleOptions {
                train_on: TrainOn::Last,
                ..opts(4096)
            },
        )
        .unwrap(),
    );
    // Token i starts at byte offset: specials are 12 or 10 bytes, others 1.
    let mut offset = 0;
    let starts: Vec<usize> = c
        .ids
        .iter()
        .map(|&id| {
            let s = offset;
            offset += match id {
                256 | 258 => 12,
                257 => 10,
                _ => 1,
            };
            s
        })
        .collect();
    assert_eq!(offset, c.text.len());
    assert_eq!(
        t.labels,
        expected_labels(&c, |i| c.learned[i] && starts[i] >= last_start)
    );
    assert_eq!(t.trained(), 2); // "4" and <|im_end|>
}

#[test]
fn train_on_prompt_learns_everything_but_the_first_token() {
    let tok = tiny();
    let c = two_turns();
    let t = kept(
        tokenize_example(
            &tok,
            0,
            Example {
                text: &c.text,
                spans: &c.spans,
            },
            &ExampleOptions {
                train_on_prompt: true,
                ..opts(4096)
            },
        )
        .unwrap(),
    );
    assert_eq!(t.labels, expected_labels(&c, |_| true));
}

#[test]
fn end_of_turn_is_learned_even_when_the_span_stops_before_it() {
    let tok = tiny();
    let c = conv(&[
        ("<|im_start|>", S),
        ("user\nx", S),
        ("<|im_end|>", S),
        ("<|im_start|>", S),
        ("assistant\n", S),
        ("ok", L),
        ("<|im_end|>", S),
        ("\n", S),
    ]);
    let r = tokenize_example(
        &tok,
        0,
        Example {
            text: &c.text,
            spans: &c.spans,
        },
        &opts(4096),
    )
    .unwrap();
    assert_eq!(r.eot_added, 1);
    let t = kept(r);
    let n = t.len();
    assert_eq!(t.labels[n - 2], 257, "the closing <|im_end|> is learned");
    assert_eq!(t.labels[n - 1], IGNORE, "the newline after it is not");
    assert_eq!(t.trained(), 3);
}

#[test]
fn no_double_bos() {
    // A variant of the builtin tokenizer whose model adds `<|im_start|>` as BOS.
    let mut tok = tiny();
    tok.bos_id = Some(256);
    tok.add_bos = true;
    // The template already wrote BOS: nothing added.
    let c = two_turns();
    let r = tokenize_example(
        &tok,
        0,
        Example {
            text: &c.text,
            spans: &c.spans,
        },
        &opts(4096),
    )
    .unwrap();
    assert!(!r.bos_added);
    assert_eq!(kept(r).input_ids, c.ids);
    assert_eq!(tok.encode(&c.text), c.ids);
    // Text without BOS gets exactly one, unlearned.
    let c = conv(&[("Q: hi\nA: ", S), ("yo", L)]);
    let r = tokenize_example(
        &tok,
        0,
        Example {
            text: &c.text,
            spans: &c.spans,
        },
        &opts(4096),
    )
    .unwrap();
    assert!(r.bos_added);
    let t = kept(r);
    assert_eq!(t.input_ids[0], 256);
    assert_eq!(&t.input_ids[1..], &c.ids[..]);
    assert_eq!(t.labels[0], IGNORE);
    assert_eq!(t.labels.iter().filter(|&&l| l == 256).count(), 0);
    assert_eq!(tok.encode(&c.text)[0], 256);
    assert_eq!(tok.encode(&c.text)[1], b'Q' as u32);
}

fn short_conv() -> Conv {
    // 13 prompt tokens, then 6 learned.
    conv(&[
        ("<|im_start|>", S),
        ("user\nabcdef\n", S),
        ("hello", L),
        ("<|im_end|>", L),
    ])
}

#[test]
fn truncate_response_keeps_the_start() {
    let tok = tiny();
    let c = short_conv();
    assert_eq!(c.ids.len(), 19);
    let r = tokenize_example(
        &tok,
        0,
        Example {
            text: &c.text,
            spans: &c.spans,
        },
        &opts(15),
    )
    .unwrap();
    assert!(r.truncated);
    assert_eq!(r.full_len, 19);
    let t = kept(r);
    assert_eq!(t.input_ids, c.ids[..15]);
    assert_eq!(t.trained(), 2); // "he"
}

#[test]
fn truncate_prompt_keeps_the_end_and_bos() {
    let mut tok = tiny();
    tok.bos_id = Some(256);
    tok.add_bos = true;
    let c = short_conv();
    let o = ExampleOptions {
        truncate: Truncate::Prompt,
        ..opts(10)
    };
    let r = tokenize_example(
        &tok,
        0,
        Example {
            text: &c.text,
            spans: &c.spans,
        },
        &o,
    )
    .unwrap();
    assert!(r.truncated);
    let t = kept(r);
    assert_eq!(t.len(), 10);
    assert_eq!(t.input_ids[0], 256, "BOS stays");
    assert_eq!(t.input_ids[1..], c.ids[c.ids.len() - 9..]);
    assert_eq!(t.labels[0], IGNORE);
    assert_eq!(t.trained(), 6, "the whole response survives");
}

#[test]
fn truncate_drop_and_nothing_to_learn_are_counted() {
    let tok = tiny();
    let long = short_conv();
    let fits = conv(&[("ab", S), ("c", L)]);
    let prompt_only = conv(&[("<|im_start|>", S), ("user", S)]);
    let examples = [&long, &fits, &prompt_only, &long];
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(TOKENS_FILE);
    let options = TokenizeOptions {
        example: ExampleOptions {
            truncate: Truncate::Drop,
            ..opts(8)
        },
        pack: false,
    };
    let stats = tokenize_to_file(
        &tok,
        examples.iter().map(|c| Example {
            text: &c.text,
            spans: &c.spans,
        }),
        &options,
        &out,
        |_| {},
    )
    .unwrap();
    assert_eq!(stats.rows_in, 4);
    assert_eq!(stats.dropped_too_long, 2);
    assert_eq!(stats.dropped_nothing_to_learn, 1);
    assert_eq!(stats.examples, 1);
    assert_eq!(stats.sequences, 1);
    assert_eq!(stats.tokens, 3);
    assert_eq!(stats.trained_tokens, 1);
    let seqs = read_tokens(&out).unwrap();
    assert_eq!(seqs.len(), 1);
    assert_eq!(seqs[0].input_ids, fits.ids);

    // Truncating instead: counted, tokens removed counted.
    let options = TokenizeOptions {
        example: opts(8),
        pack: false,
    };
    let stats = tokenize_to_file(
        &tok,
        examples.iter().map(|c| Example {
            text: &c.text,
            spans: &c.spans,
        }),
        &options,
        &out,
        |_| {},
    )
    .unwrap();
    // `long` truncated to 8 tokens keeps only prompt: nothing to learn either.
    assert_eq!(stats.truncated, 2);
    assert_eq!(stats.truncated_tokens, 2 * 19);
    assert_eq!(stats.dropped_nothing_to_learn, 3);
}

/// Synthetic conversations of varied length.
fn many(n: usize) -> Vec<Conv> {
    (0..n)
        .map(|i| {
            let q = "q".repeat(1 + (i * 7) % 23);
            let a = format!("answer {i} {}", "a".repeat((i * 13) % 31));
            conv(&[
                ("<|im_start|>", S),
                ("user\n", S),
                (q.as_str(), S),
                ("<|im_end|>", S),
                ("\n", S),
                ("<|im_start|>", S),
                ("assistant\n", S),
                (a.as_str(), L),
                ("<|im_end|>", L),
                ("\n", S),
            ])
        })
        .collect()
}

#[test]
fn packing_never_mixes_segments() {
    let tok = tiny();
    let convs = many(500);
    let dir = tempfile::tempdir().unwrap();
    let run = |pack: bool, name: &str| {
        let out = dir.path().join(name);
        let stats = tokenize_to_file(
            &tok,
            convs.iter().map(|c| Example {
                text: &c.text,
                spans: &c.spans,
            }),
            &TokenizeOptions {
                example: opts(128),
                pack,
            },
            &out,
            |_| {},
        )
        .unwrap();
        (
            stats,
            read_tokens(&out).unwrap(),
            std::fs::read(&out).unwrap(),
        )
    };
    let (plain_stats, plain, _) = run(false, "plain.arrow");
    let (stats, packed, bytes) = run(true, "packed.arrow");
    let (_, _, bytes_again) = run(true, "again.arrow");
    assert_eq!(bytes, bytes_again, "same input, same bytes");
    assert_eq!(plain.len(), 500);
    assert_eq!(stats.examples, 500);
    assert_eq!(stats.tokens, plain_stats.tokens);
    assert_eq!(stats.trained_tokens, plain_stats.trained_tokens);
    assert!(packed.len() < 500 / 2, "{} sequences", packed.len());
    assert!(stats.fill > 0.9, "fill {}", stats.fill);

    let mut segments: Vec<(Vec<u32>, Vec<i32>)> = Vec::new();
    for seq in &packed {
        let n = seq.input_ids.len();
        assert!(n <= 128);
        assert_eq!(seq.labels.len(), n);
        assert_eq!(seq.position_ids.len(), n);
        assert_eq!(seq.segment_ids.len(), n);
        // Segments are 1, 2, ... in runs; positions restart at 0 in each; the
        // first label of each segment is -100.
        let mut start = 0;
        let mut expected_segment = 1;
        while start < n {
            let seg = seq.segment_ids[start];
            assert_eq!(seg, expected_segment);
            let end = start
                + seq.segment_ids[start..]
                    .iter()
                    .take_while(|&&s| s == seg)
                    .count();
            assert!(
                seq.position_ids[start..end]
                    .iter()
                    .copied()
                    .eq(0..(end - start) as u32)
            );
            assert_eq!(seq.labels[start], IGNORE);
            segments.push((
                seq.input_ids[start..end].to_vec(),
                seq.labels[start..end].to_vec(),
            ));
            start = end;
            expected_segment += 1;
        }
    }
    // Every segment is exactly one whole example: the multiset of segments equals
    // the unpacked examples.
    let mut unpacked: Vec<(Vec<u32>, Vec<i32>)> = plain
        .iter()
        .map(|s| (s.input_ids.clone(), s.labels.clone()))
        .collect();
    for s in &plain {
        assert!(s.segment_ids.iter().all(|&x| x == 1));
        assert!(
            s.position_ids
                .iter()
                .copied()
                .eq(0..s.input_ids.len() as u32)
        );
    }
    unpacked.sort();
    segments.sort();
    assert_eq!(segments, unpacked);
    // And each one matches its conversation's independent expectation.
    for c in &convs {
        let labels = expected_labels(c, |i| c.learned[i]);
        assert!(unpacked.binary_search(&(c.ids.clone(), labels)).is_ok());
    }
}

#[test]
fn bad_span_names_the_row() {
    let tok = tiny();
    let err = tokenize_example(
        &tok,
        7,
        Example {
            text: "abc",
            spans: &[(1, 9)],
        },
        &opts(16),
    )
    .unwrap_err();
    assert!(err.to_string().contains("row 7"), "{err}");
}

#[test]
fn bad_span_in_a_later_chunk_stops_the_file_with_its_row() {
    // The first chunk is already with the writer thread when the second one fails.
    let tok = tiny();
    let bad = CHUNK_ROWS + 5;
    let texts: Vec<String> = (0..CHUNK_ROWS + 10).map(|i| format!("row {i}")).collect();
    let examples = texts.iter().enumerate().map(|(i, t)| Example {
        text: t,
        spans: if i == bad { &[(0, 99)] } else { &[(0, 3)] },
    });
    let dir = tempfile::tempdir().unwrap();
    let options = TokenizeOptions {
        example: opts(16),
        pack: false,
    };
    let err = tokenize_to_file(
        &tok,
        examples,
        &options,
        &dir.path().join(TOKENS_FILE),
        |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains(&format!("row {bad}")), "{err}");
}

#[test]
fn params_defaults_and_unknown_keys() {
    let p: TokenizeParams = serde_json::from_str("{}").unwrap();
    assert_eq!(p.max_len, 2048);
    assert_eq!(p.truncate, Truncate::Response);
    assert!(!p.pack && !p.train_on_prompt);
    assert_eq!(p.train_on, TrainOn::All);
    let p: TokenizeParams = serde_json::from_str(
        r#"{"max_len": 512, "pack": true, "truncate": "drop", "train_on": "last"}"#,
    )
    .unwrap();
    assert_eq!(
        (p.max_len, p.pack, p.truncate, p.train_on),
        (512, true, Truncate::Drop, TrainOn::Last)
    );
    assert!(serde_json::from_str::<TokenizeParams>(r#"{"max_length": 5}"#).is_err());
}

#[test]
fn rows_over_several_chunks_come_out_in_order_as_tokenized_alone() {
    // More than three chunks: later chunks fill buffers handed back by the writer.
    let tok = tiny();
    let n = 3 * CHUNK_ROWS + 7;
    let convs = many(n);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(TOKENS_FILE);
    let options = TokenizeOptions {
        example: opts(64),
        pack: false,
    };
    let examples = convs.iter().map(|c| Example {
        text: &c.text,
        spans: &c.spans,
    });
    let stats = tokenize_to_file(&tok, examples, &options, &out, |_| {}).unwrap();
    let seqs = read_tokens(&out).unwrap();
    assert_eq!((stats.rows_in, seqs.len()), (n as u64, n));
    assert!(stats.truncated > 0, "some rows are cut to 64 tokens");
    for (i, (c, seq)) in convs.iter().zip(&seqs).enumerate() {
        let alone = kept(
            tokenize_example(
                &tok,
                i,
                Example {
                    text: &c.text,
                    spans: &c.spans,
                },
                &options.example,
            )
            .unwrap(),
        );
        assert_eq!(
            (&seq.input_ids, &seq.labels),
            (&alone.input_ids, &alone.labels),
            "row {i}"
        );
    }
}
