"""Python side of the render benchmark (not part of the test suite).

Renders the same rows as benches/render_rows.rs with Jinja2 set up like
transformers' apply_chat_template, doing the same work per row as pipe's
render stage (the full conversation and the generation prompt), in one
process, then with a 2-process pool as `datasets.map(num_proc=2)` would.

    python3 stages/render/benches/render_python.py [ROWS]

Only needs jinja2. transformers' own apply_chat_template adds per-call
overhead on top (template compilation is cached, but argument handling and
the special-token map are rebuilt each call), so this is a lower bound for
the usual Python path's cost of rendering.
"""
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

COUNTRIES = [("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Peru", "Lima"),
             ("Norway", "Oslo"), ("Egypt", "Cairo"), ("Chile", "Santiago"), ("Ireland", "Dublin")]
SENTENCES = [
    "The committee met on Tuesday to discuss the new budget.",
    "Heavy rain caused delays on several train lines this morning.",
    "Researchers found that regular walking improves sleep quality.",
    "The new software release fixes a number of memory leaks.",
    "The city plans to add more bicycle lanes next year.",
]
TEMPLATES = Path(__file__).resolve().parents[3] / "templates"
TOKENS = {"chatml": ("", "<|im_end|>"), "alpaca": ("", "</s>"),
          "llama3": ("<|begin_of_text|>", "<|eot_id|>"), "qwen2": ("", "<|im_end|>")}


def row(i):
    country, capital = COUNTRIES[i % 8]
    sentence = SENTENCES[i % 5]
    if i % 3 == 0:
        user = f"What is the capital of {country}?"
        answer = f"The capital of {country} is {capital}. It is also one of the largest cities in the country."
    elif i % 3 == 1:
        user = f"Summarize the following sentence in a few words.\n\n{sentence}"
        answer = f"In short: {sentence.lower()}"
    else:
        user = f"Rewrite the sentence in the past tense, then name the capital of {country}.\n\n{sentence}"
        answer = f"{sentence} The capital of {country} is {capital}."
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def render_chunk(args):
    name, start, stop = args
    template = environment().from_string((TEMPLATES / f"{name}.jinja").read_text())
    bos, eos = TOKENS[name]
    total = 0
    for i in range(start, stop):
        messages = row(i)
        full = template.render(messages=messages, tools=None, documents=None, add_generation_prompt=False,
                               bos_token=bos, eos_token=eos)
        prompt = template.render(messages=messages[:-1], tools=None, documents=None, add_generation_prompt=True,
                                 bos_token=bos, eos_token=eos)
        total += len(full) + len(prompt)
    return total


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(f"python jinja2 {jinja2.__version__}: {n} rows, full + prompt render per row")
    for name in TOKENS:
        t = time.perf_counter()
        render_chunk((name, 0, n))
        one = time.perf_counter() - t
        half = n // 2
        with mp.Pool(2) as pool:
            t = time.perf_counter()
            pool.map(render_chunk, [(name, 0, half), (name, half, n)])
            two = time.perf_counter() - t
        print(f"  {name:8} {n / one:>9.0f} rows/s (1 process)  {n / two:>9.0f} rows/s (2 processes)")


if __name__ == "__main__":
    main()
