"""Render chat-template cases with Python Jinja2 set up like transformers'
apply_chat_template, as a parity oracle for the Rust renderer (tests/oracle.rs).

Input (argv[1]): a JSON list of cases
  {"source", "bos_token", "eos_token", "messages", "tools", "add_generation_prompt"}.
Output (stdout): a JSON list, per case {"ok": text} or {"error": "Kind: message"}.

Environment as in transformers.utils.chat_template_utils: ImmutableSandboxedEnvironment,
trim_blocks, lstrip_blocks, loopcontrols, the {% generation %} tag, tojson =
json.dumps(ensure_ascii=False, ...), raise_exception, strftime_now (fixed here to
2024-07-26, as the Rust side is configured).
"""
import json
import sys
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment


class Generation(Extension):
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_support"), [], [], body).set_lineno(lineno)

    def _support(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime(2024, 7, 26).strftime(fmt)


def main():
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    cases = json.load(open(sys.argv[1], encoding="utf-8"))
    out = []
    compiled = {}
    for case in cases:
        try:
            src = case["source"]
            if src not in compiled:
                compiled[src] = env.from_string(src)
            text = compiled[src].render(
                messages=case["messages"],
                tools=case.get("tools"),
                documents=None,
                add_generation_prompt=case["add_generation_prompt"],
                bos_token=case["bos_token"],
                eos_token=case["eos_token"],
            )
            out.append({"ok": text})
        except Exception as e:  # noqa: BLE001 - every failure is a result to compare
            out.append({"error": f"{type(e).__name__}: {e}"})
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
