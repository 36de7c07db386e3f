#!/usr/bin/env python3
"""Python peer vs pipe-tokenize on the same 100k alpaca records (not part of the test suite).

Mirrors /work/shared/peers/hf_preprocess.py: records from synth_data.py ->
datasets.Dataset.from_list -> .map(batched=True, num_proc=2) with the peer's own
`preprocess` (apply_chat_template with the SmolLM2 template from the GGUF, prompt
and response tokenized separately, prompt labels -100, cut to --cutoff-len).
Then runs the Rust bench (`cargo build -p pipe-tokenize --example bench`: the dev
profile builds it at opt-level 3) on the same records and prints records/s for both and the ratio.

The tokenizer is built the way AutoTokenizer.from_pretrained(dir, gguf_file=...)
builds it; when torch is missing (transformers' GGUF reader imports it), the
same builder is called directly on metadata read with the `gguf` package.

  /work/venv-tok/bin/python hf_compare.py --gguf $SMOLLM2_GGUF \\
      --rust-bin /work/target-tokenize/debug/examples/bench
  /work/venv-tok/bin/python hf_compare.py --write-records /tmp/alpaca100k.jsonl   # records only
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def load_tokenizer(gguf_path):
    d, f = os.path.split(os.path.abspath(gguf_path))
    try:
        import torch  # noqa: F401
        from transformers import AutoTokenizer
        return AutoTokenizer.from_pretrained(d, gguf_file=f)
    except ImportError:
        pass
    import gguf
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer

    reader = gguf.GGUFReader(gguf_path)

    def field(key):
        fl = reader.fields[key]
        if fl.types[0] == gguf.GGUFValueType.ARRAY:
            if fl.types[-1] == gguf.GGUFValueType.STRING:
                return [bytes(fl.parts[i]).decode("utf-8") for i in fl.data]
            return [int(fl.parts[i][0]) for i in fl.data]
        if fl.types[0] == gguf.GGUFValueType.STRING:
            return bytes(fl.parts[fl.data[0]]).decode("utf-8")
        return fl.parts[fl.data[0]][0].item()

    tokens = field("tokenizer.ggml.tokens")
    d = {"tokenizer_type": field("tokenizer.ggml.model"), "pre_tokenizer_type": field("tokenizer.ggml.pre"),
         "tokens": tokens, "merges": field("tokenizer.ggml.merges"),
         "token_type": field("tokenizer.ggml.token_type")}
    backend, _ = convert_gguf_tokenizer(field("general.architecture"), d)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=tokens[field("tokenizer.ggml.bos_token_id")],
        eos_token=tokens[field("tokenizer.ggml.eos_token_id")],
        pad_token=tokens[field("tokenizer.ggml.padding_token_id")],
        chat_template=field("tokenizer.chat_template"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=os.environ.get("SMOLLM2_GGUF"))
    ap.add_argument("--peers", default="/work/shared/peers", help="folder of synth_data.py and hf_preprocess.py")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--num-proc", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--cutoff-len", type=int, default=1024)
    ap.add_argument("--write-records", help="write the records as JSONL here and stop")
    ap.add_argument("--rust-bin", help="the built Rust bench example; runs it on the same records")
    args = ap.parse_args()
    sys.path.insert(0, args.peers)
    import synth_data

    recs = synth_data.records(args.n, 0)
    if args.write_records:
        with open(args.write_records, "w") as fo:
            for r in recs:
                fo.write(json.dumps(r, ensure_ascii=False) + "\n")
        return
    if not args.gguf:
        ap.error("--gguf or SMOLLM2_GGUF is required")
    import datasets
    import hf_preprocess

    tok = load_tokenizer(args.gguf)
    ds = datasets.Dataset.from_list(recs)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = ds.map(hf_preprocess.preprocess, batched=True, batch_size=args.batch_size, num_proc=args.num_proc,
                     remove_columns=ds.column_names, fn_kwargs={"tok": tok, "cutoff_len": args.cutoff_len},
                     cache_file_name=os.path.join(tmp, "tok.arrow"), desc="tokenize")
        t_map = time.perf_counter() - t0
        n_tok = sum(len(x) for x in out["input_ids"])
        result = {"python_map_records_per_s": args.n / t_map, "python_map_s": t_map,
                  "python_tokens": n_tok, "num_proc": args.num_proc}
        if args.rust_bin:
            path = os.path.join(tmp, "records.jsonl")
            with open(path, "w") as fo:
                for r in recs:
                    fo.write(json.dumps(r, ensure_ascii=False) + "\n")
            run = subprocess.run([args.rust_bin, "--records", path, "--gguf", args.gguf, "--n", str(args.n),
                                  "--max-len", str(args.cutoff_len)], check=True, capture_output=True, text=True)
            for line in run.stdout.splitlines():
                r = json.loads(line)
                result[f"rust_{r['tokenizer']}_rows_per_s"] = r["rows_per_s"]
                result[f"rust_{r['tokenizer']}_tokens_per_s"] = r["tokens_per_s"]
                result[f"rust_{r['tokenizer']}_tokens"] = r["tokens"]
                result[f"ratio_{r['tokenizer']}_vs_python"] = r["rows_per_s"] / result["python_map_records_per_s"]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
