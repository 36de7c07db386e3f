"""Cross-check pipe-train against transformers (+ peft) on SmolLM2-135M-Instruct from its GGUF.

Usage (outside the test suite; exits 0 with a note when torch/transformers/peft are absent):
    cargo build --release -p pipe-train --bins
    python3 stages/train/scripts/crosscheck.py --gguf /path/SmolLM2-135M-Instruct.Q4_1.gguf \
        --bin $CARGO_TARGET_DIR/release [--adapter DIR]

Compares next-token logits of a few prompts (left-padded batch in pipe, one by one in
transformers) and prints the max abs difference; with --adapter (a pipe adapter trained
on that model, e.g. from `train-bench --save-adapter DIR`) it loads it with peft too.
"""
import argparse
import json
import os
import subprocess
import sys

PROMPTS = [
    [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712, 8182, 2, 198, 1, 4093, 198],
    [1, 4093, 198, 19556, 2],
    [504, 3458, 282, 4649, 314],
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--bin", required=True, help="folder holding train-logits")
    ap.add_argument("--adapter")
    args = ap.parse_args()
    try:
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError as e:
        print(f"skipped: {e}")
        return 0
    cmd = [os.path.join(args.bin, "train-logits"), "--model", args.gguf]
    if args.adapter:
        cmd += ["--adapter", args.adapter]
    for p in PROMPTS:
        cmd += ["--ids", ",".join(map(str, p))]
    ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)["logits"]
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(args.gguf), gguf_file=os.path.basename(args.gguf), torch_dtype=torch.float32
    )
    if args.adapter:
        try:
            from peft import PeftModel
        except ImportError as e:
            print(f"adapter check skipped: {e}")
            return 0
        model = PeftModel.from_pretrained(model, args.adapter)
    model.eval()
    worst = 0.0
    for p, row in zip(PROMPTS, ours):
        with torch.no_grad():
            ref = model(torch.tensor([p])).logits[0, -1]
        diff = (ref - torch.tensor(row)).abs().max().item()
        worst = max(worst, diff)
        print(f"prompt of {len(p)} tokens: max abs diff {diff:.3e}")
    print(f"max abs diff over prompts{' (with adapter)' if args.adapter else ''}: {worst:.3e}")
    return 0 if worst < 1e-2 else 1


if __name__ == "__main__":
    sys.exit(main())
