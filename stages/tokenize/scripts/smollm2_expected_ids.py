#!/usr/bin/env python3
"""Expected token ids for the SmolLM2 GGUF test in pipe-tokenize (tests/smollm2_gguf.rs).

Reads the vocabulary, merges and token types from the GGUF with the `gguf` package and builds
the tokenizer with transformers' own GGUF tokenizer builder (`convert_gguf_tokenizer`, what
`AutoTokenizer.from_pretrained(dir, gguf_file=...)` runs after reading the file; called directly
because transformers' GGUF *reader* needs torch). Prints two id lists per string:

- `transformers_gguf`: transformers' builder as is. Its table of pre-tokenizer names has no
  `smollm`, so it falls back to GPT-2's byte-level regex: digits are NOT split one by one.
- `smollm`: the same vocabulary with the pre-tokenizer SmolLM2's own tokenizer.json declares
  (Digits(individual_digits=True) then ByteLevel(add_prefix_space=False)), which is also what
  llama.cpp's `smollm` pre-tokenizer does. pipe follows this one.

  python -m venv /work/venv-tok && /work/venv-tok/bin/pip install tokenizers transformers gguf numpy
  /work/venv-tok/bin/python smollm2_expected_ids.py $SMOLLM2_GGUF
"""
import json
import sys

import gguf
from tokenizers import pre_tokenizers
from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer

STRINGS = [
    "Hello world!",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "The sum of 1234 and 56 is 1290.",
    "  leading spaces,\ttabs\n\nand newlines   ",
    "naïve café – “quotes” 日本語 🙂",
    "don't I'll we've <|endoftext|>x",
]


def field(reader, key):
    f = reader.fields[key]
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[-1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [int(f.parts[i][0]) for i in f.data]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]][0].item()


def main():
    reader = gguf.GGUFReader(sys.argv[1])
    d = {
        "tokenizer_type": field(reader, "tokenizer.ggml.model"),
        "pre_tokenizer_type": field(reader, "tokenizer.ggml.pre"),
        "tokens": field(reader, "tokenizer.ggml.tokens"),
        "merges": field(reader, "tokenizer.ggml.merges"),
        "token_type": field(reader, "tokenizer.ggml.token_type"),
    }
    hf, _ = convert_gguf_tokenizer(field(reader, "general.architecture"), d)
    smollm, _ = convert_gguf_tokenizer(field(reader, "general.architecture"), d)
    smollm.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    for s in STRINGS:
        a = hf.encode(s, add_special_tokens=False).ids
        b = smollm.encode(s, add_special_tokens=False).ids
        print(json.dumps({"text": s, "smollm": b, "transformers_gguf": a, "same": a == b}, ensure_ascii=False))


if __name__ == "__main__":
    main()
