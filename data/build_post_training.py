"""Build the bundled post-training sets (data/post_training/) with a seeded, offline script.

    .venv/bin/python data/build_post_training.py [--seed 0] [--out data/post_training]

Two sources, both checkable without a model: multi-digit arithmetic (the answer is
computed, so SFT targets are right, a rejected reply is provably wrong, and RL can reward
the final "The answer is N."), and questions about the Python standard library answered
with the first paragraph of the function's own docstring, read from the bundled sample's
CPython 3.11.7 stdlib (`data/sample/code.jsonl.gz`, PSF-2.0). Files: `sft.jsonl`
(conversations), `preferences.jsonl` (prompt, chosen, rejected), `arithmetic_eval.jsonl`
(held-out prompts with answers) and `arithmetic_rl.jsonl` (RL tasks: prompts, a fifth with
the SFT system prompt, and answers); no problem or function appears in two files. Same seed
and same sample -> byte-identical files (string-seeded RNGs, sorted walks, fixed key order;
each file drawn after the ones before it, so adding one leaves the others unchanged).
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import random
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SAMPLE_CODE = ROOT / "sample" / "code.jsonl.gz"
STDLIB_SOURCE = "cpython-3.11.7-stdlib"
COUNTS = {  # records per file and kind
    "sft_arithmetic": 240,
    "sft_followups": 40,  # two-turn arithmetic, inside sft_arithmetic's count
    "sft_docs": 130,
    "pref_arithmetic": 200,
    "pref_docs": 80,
    "eval_arithmetic": 100,
    "rl_arithmetic": 300,
}
SYSTEM_PROMPTS = (
    "You are a careful assistant. Show the calculation, then end with 'The answer is N.'",
    "You are a helpful assistant for Python programmers. Answer briefly.",
)
WORD_PROBLEMS: dict[str, tuple[str, ...]] = {
    "+": (
        "What is {a} + {b}?",
        "A library has {a} books and receives {b} more. How many books does it have now?",
        "A train carries {a} passengers and {b} more board at the next station. How many "
        "passengers are on the train now?",
        "Maria saved {a} dollars in May and {b} dollars in June. How many dollars did she "
        "save in the two months?",
    ),
    "-": (
        "What is {a} - {b}?",
        "A farmer had {a} apples and sold {b} of them. How many apples are left?",
        "A hall has {a} seats and {b} of them are taken. How many seats are free?",
        "A tank holds {a} litres of water and {b} litres are drained. How many litres remain?",
    ),
    "*": (
        "What is {a} * {b}?",
        "A box holds {b} pencils. How many pencils are in {a} boxes?",
        "Each of {a} students brings {b} cards. How many cards are there in all?",
        "A theatre has {a} rows of {b} seats. How many seats does it have?",
    ),
}
FOLLOW_UPS = {"+": "Now add {d} to that.", "-": "Now subtract {d} from that."}
DOC_QUESTIONS = (
    "What does the Python function `{name}` do?",
    "In Python's standard library, what is `{name}` for?",
    "Briefly, what does `{name}` do?",
)
OPS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
}


def operands(rng: random.Random, op: str) -> tuple[int, int]:
    if op == "*":
        return rng.randint(11, 99), rng.randint(3, 29)
    a, b = rng.randint(100, 999), rng.randint(10, 999)
    return (a, b) if op == "+" or a > b else (b, a) if a != b else (a + 1, b)


def solution(a: int, op: str, b: int) -> str:
    c = OPS[op](a, b)
    return f"{a} {op} {b} = {c}. The answer is {c}."


def wrong_result(rng: random.Random, a: int, op: str, b: int) -> int:
    """A plausible mistake: a dropped carry or borrow, a digit off by one, one group too
    many or too few; never the right result, never negative."""
    right = OPS[op](a, b)
    if op == "+":  # add digit by digit, forgetting the carries
        no_carry = int("".join(str((int(x) + int(y)) % 10) for x, y in _digits(a, b)))
        candidates = [no_carry, right + 10, right - 10, right + 1]
    elif op == "-":  # subtract digit by digit, the smaller digit from the larger
        no_borrow = int("".join(str(abs(int(x) - int(y))) for x, y in _digits(a, b)))
        candidates = [no_borrow, right + 10, right - 10, right - 1]
    else:
        candidates = [right + a, right - a, right + 10, right + b]
    return rng.choice([c for c in candidates if c != right and c >= 0])


def _digits(a: int, b: int) -> list[tuple[str, str]]:
    width = max(len(str(a)), len(str(b)))
    return list(zip(str(a).zfill(width), str(b).zfill(width), strict=True))


def arithmetic_problems(rng: random.Random, n: int, seen: set) -> list[tuple[int, str, int, str]]:
    """n distinct (a, op, b, question) never drawn before (`seen` spans every file)."""
    out = []
    while len(out) < n:
        op = rng.choice(sorted(OPS))
        a, b = operands(rng, op)
        if (a, op, b) in seen:
            continue
        seen.add((a, op, b))
        out.append((a, op, b, rng.choice(WORD_PROBLEMS[op]).format(a=a, b=b)))
    return out


def stdlib_functions() -> list[dict]:
    """Public top-level functions of the sample's CPython stdlib whose docstring opens with
    a one-paragraph sentence of 20..400 characters, sorted by qualified name."""
    found = {}
    with gzip.open(SAMPLE_CODE, "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record["source"] != STDLIB_SOURCE:
                continue
            path = record["meta"]["path"].removeprefix("python3.11/").removesuffix(".py")
            module = path.removesuffix("/__init__").replace("/", ".")
            for node in ast.parse(record["text"]).body:
                if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                    continue
                doc = ast.get_docstring(node) or ""
                summary = " ".join(doc.split("\n\n")[0].split())
                if 20 <= len(summary) <= 400 and summary[0].isupper() and summary.endswith("."):
                    args = ast.unparse(node.args)
                    name = f"{module}.{node.name}"
                    found[name] = {
                        "name": name,
                        "module": module,
                        "signature": f"{name}({args if len(args) <= 60 else '...'})",
                        "summary": summary,
                        "source_id": record["id"],
                    }
    return [found[k] for k in sorted(found)]


def doc_answer(fn: dict) -> str:
    return f"`{fn['signature']}`: {fn['summary']}"


def build(seed: int) -> dict[str, list[dict]]:
    rng = {p: random.Random(f"{seed}:{p}") for p in ("sft", "pref", "eval", "docs")}
    seen: set = set()
    sft: list[dict] = []
    problems = arithmetic_problems(rng["sft"], COUNTS["sft_arithmetic"], seen)
    for i, (a, op, b, question) in enumerate(problems):
        messages = [{"role": "user", "content": question}, _assistant(solution(a, op, b))]
        if i < COUNTS["sft_followups"] and op in FOLLOW_UPS:
            c = OPS[op](a, b)
            d = rng["sft"].randint(10, 99) if op == "+" else rng["sft"].randint(1, min(c, 99))
            follow = FOLLOW_UPS[op].format(d=d)
            messages += [{"role": "user", "content": follow}, _assistant(solution(c, op, d))]
        if i % 5 == 0:
            messages.insert(0, {"role": "system", "content": SYSTEM_PROMPTS[0]})
        sft.append({"id": f"arith-sft-{i:04d}", "domain": "math", "messages": messages})

    functions = stdlib_functions()
    rng["docs"].shuffle(functions)
    n_sft, n_pref = COUNTS["sft_docs"], COUNTS["pref_docs"]
    if len(functions) < n_sft + n_pref:
        raise SystemExit(f"only {len(functions)} stdlib functions qualify in {SAMPLE_CODE}")
    for i, fn in enumerate(functions[:n_sft]):
        question = rng["docs"].choice(DOC_QUESTIONS).format(name=fn["name"])
        messages = [{"role": "user", "content": question}, _assistant(doc_answer(fn))]
        if i % 4 == 0:
            where = f"It is in the `{fn['module']}` module of the Python standard library."
            messages += [{"role": "user", "content": "Which module is it in?"}, _assistant(where)]
        if i % 3 == 0:
            messages.insert(0, {"role": "system", "content": SYSTEM_PROMPTS[1]})
        sft.append({"id": f"docs-sft-{i:04d}", "domain": "code", "messages": messages})

    prefs: list[dict] = []
    for i, (a, op, b, question) in enumerate(
        arithmetic_problems(rng["pref"], COUNTS["pref_arithmetic"], seen)
    ):
        wrong = wrong_result(rng["pref"], a, op, b)
        rejected = f"{a} {op} {b} = {wrong}. The answer is {wrong}."
        prefs.append(
            {"id": f"arith-pref-{i:04d}", "domain": "math", "prompt": question,
             "chosen": solution(a, op, b), "rejected": rejected}
        )  # fmt: skip
    held = functions[n_sft : n_sft + n_pref]
    for i, fn in enumerate(held):
        other = held[(i + 1 + rng["pref"].randrange(len(held) - 1)) % len(held)]
        prefs.append(
            {"id": f"docs-pref-{i:04d}", "domain": "code",
             "prompt": rng["pref"].choice(DOC_QUESTIONS).format(name=fn["name"]),
             "chosen": doc_answer(fn),
             "rejected": f"`{fn['signature']}`: {other['summary']}"}
        )  # fmt: skip

    evals = [
        {"id": f"arith-eval-{i:04d}", "domain": "math", "prompt": q, "answer": str(OPS[op](a, b))}
        for i, (a, op, b, q) in enumerate(
            arithmetic_problems(rng["eval"], COUNTS["eval_arithmetic"], seen)
        )
    ]
    return {
        "sft.jsonl": sft,
        "preferences.jsonl": prefs,
        "arithmetic_eval.jsonl": evals,
        "arithmetic_rl.jsonl": rl_tasks(random.Random(f"{seed}:rl"), seen),
    }


def rl_tasks(rng: random.Random, seen: set) -> list[dict]:
    """Prompts for verifiable-reward RL, worded (and, one in five, system-prompted) like the
    SFT problems, so an SFT'd model ends its reply with "The answer is N." to be scored."""
    tasks = []
    for i, (a, op, b, q) in enumerate(arithmetic_problems(rng, COUNTS["rl_arithmetic"], seen)):
        prompt: str | list[dict] = q
        if i % 5 == 0:
            prompt = [{"role": "system", "content": SYSTEM_PROMPTS[0]}, _user(q)]
        tasks.append(
            {"id": f"arith-rl-{i:04d}", "domain": "math", "prompt": prompt,
             "answer": str(OPS[op](a, b))}
        )  # fmt: skip
    return tasks


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


def write(files: dict[str, list[dict]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, records in files.items():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        (out / name).write_text(text, encoding="utf-8")
        print(f"{out / name}: {len(records)} records, {len(text.encode()):,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "post_training")
    args = parser.parse_args()
    write(build(args.seed), args.out)


if __name__ == "__main__":
    main()
