"""`sharpen eval`: perplexity per domain equals the model's own loss on the same windows,
pass@k and the math/code scorers give known values on known inputs, and the whole
evaluation runs end to end on a tiny checkpoint (CLI table, JSONL rows, seeded).

The checkpoint is a randomly initialised tiny model saved as training saves one (DCP, in
one process), in a run dir holding plan.yaml and tokenizer.json like `sharpen train` leaves.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mixtures.shards import StageShards
from mixtures.tokenizer import END, EOS, load_tokenizer, render_chats
from sharpen.cli import main as sharpen_main
from training.checkpoint import save_checkpoint
from training.eval.code_eval import pass_at_k, score_code
from training.eval.completions import Prompter, read_jsonl
from training.eval.math_eval import math_eval, score_math
from training.eval.perplexity import domain_perplexity
from training.eval.run_eval import format_table, load_for_eval, run_eval
from training.model.config import ModelConfig
from training.model.llama import Transformer
from training.plan import load_plan

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")

DATA = Path(__file__).parents[2] / "data" / "post_training"
PLAN = """
model: {dim: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_hidden: 64, max_seq_len: 512}
stages:
  - {name: pretrain, data: broad, steps: 2, seq_len: 96, batch_size: 2, lr: 0.01}
"""


@pytest.fixture(scope="module")
def run(tokenized_mixture: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RUN/plan.yaml, RUN/tokenizer.json and RUN/checkpoints/pretrain (random weights)."""
    out = tmp_path_factory.mktemp("eval-run")
    (out / "plan.yaml").write_text(PLAN)
    shutil.copyfile(tokenized_mixture / "tokenizer" / "tokenizer.json", out / "tokenizer.json")
    spec = load_plan(out / "plan.yaml").model
    vocab = load_tokenizer(out / "tokenizer.json").get_vocab_size()
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**spec.model_dump(), vocab_size=vocab))
    state = {"stage": "pretrain", "stage_index": 0, "stage_step": 2, "global_step": 2}
    save_checkpoint(
        out / "checkpoints" / "pretrain",
        model,
        torch.optim.AdamW(model.parameters()),
        {**state, "loader": {}},
        is_main=True,
    )
    return out


def _subset(src: Path, dest: Path, n: int) -> Path:
    dest.write_text("".join(src.read_text().splitlines(keepends=True)[:n]))
    return dest


def _stream(shards: StageShards) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stage's token stream in order: tokens, doc-start flags, each token's domain."""
    tokens, starts, domains = [], [], []
    for i in range(shards.num_shards):
        values, offsets, codes = shards.rows(i)
        for d in range(len(offsets) - 1):
            doc = values[offsets[d] : offsets[d + 1]].astype(np.int64)
            tokens.append(doc)
            starts.append(np.arange(len(doc)) == 0)
            domains.append(np.full(len(doc), codes[d]))
    return np.concatenate(tokens), np.concatenate(starts), np.concatenate(domains)


@torch.no_grad()
def test_perplexity_per_domain_is_the_models_loss_on_the_same_windows(run, tokenized_mixture):
    model = load_for_eval(run, device="cpu").model
    shards = StageShards.open(tokenized_mixture / "anneal")
    seq_len, cap = 32, 1000
    rows = domain_perplexity(model, shards, seq_len=seq_len, max_tokens=cap, batch_size=3)

    # direct: cut the raw stream into seq_len + 1 windows, one forward per window with
    # positions restarting at each document, labels scored for their own document's domain
    tokens, starts, domains = _stream(shards)
    n_windows = math.ceil(cap / seq_len)
    nll_sum, count = np.zeros(len(shards.domains)), np.zeros(len(shards.domains), dtype=int)
    for w in range(n_windows):
        at = w * (seq_len + 1)
        window = torch.from_numpy(tokens[at : at + seq_len + 1])
        opens = starts[at : at + seq_len].copy()
        opens[0] = True
        segments = torch.from_numpy(np.cumsum(opens) - 1).unsqueeze(0)
        first = np.maximum.accumulate(np.where(opens, np.arange(seq_len), 0))
        positions = torch.from_numpy(np.arange(seq_len) - first).unsqueeze(0)
        logits = model(window[:-1].unsqueeze(0), positions, segments)[0]
        nll = F.cross_entropy(logits, window[1:], reduction="none").double().numpy()
        np.add.at(nll_sum, domains[at + 1 : at + seq_len + 1], nll)
        np.add.at(count, domains[at + 1 : at + seq_len + 1], 1)

    got = {r["domain"]: r for r in rows}
    assert set(got) == {"code", "math", "web", "all"}
    for i, name in enumerate(shards.domains):
        assert got[name]["tokens"] == count[i]
        assert got[name]["value"] == pytest.approx(math.exp(nll_sum[i] / count[i]), rel=1e-5)
    assert got["all"]["tokens"] == n_windows * seq_len == count.sum()
    assert got["all"]["value"] == pytest.approx(math.exp(nll_sum.sum() / count.sum()), rel=1e-5)
    assert got["all"]["windows"] == n_windows


def test_perplexity_reads_a_small_stage_to_its_end_without_wrapping(run, tokenized_mixture):
    model = load_for_eval(run, device="cpu").model
    shards = StageShards.open(tokenized_mixture / "anneal")
    rows = domain_perplexity(model, shards, seq_len=127, max_tokens=10**9, batch_size=8)
    windows = shards.total_tokens // 128  # every whole window once, none from a 2nd epoch
    assert rows[-1] == {**rows[-1], "domain": "all", "windows": windows, "tokens": windows * 127}


def test_perplexity_of_an_sft_stage_scores_assistant_tokens_once(tmp_path, caplog):
    from chat_fixtures import write_chat_mixture

    root, tok = write_chat_mixture(tmp_path)
    shards = StageShards.open(root / "sft")
    shape = dict(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=64, max_seq_len=256)
    model = Transformer(ModelConfig(**shape, vocab_size=tok.get_vocab_size())).eval()
    rows = domain_perplexity(model, shards, seq_len=255, max_tokens=10**9, batch_size=8)
    assert [r["domain"] for r in rows] == ["code", "math", "all"]
    targets = sum(int(shards.loss_mask(i).sum()) for i in range(shards.num_shards))
    assert 0.9 * targets < rows[-1]["tokens"] <= targets  # the masked labels, read once
    assert "data repeats" not in caplog.text


def test_pass_at_k_matches_known_values():
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)  # 1 - C(7,5)/C(10,5)
    assert pass_at_k(5, 1, 2) == pytest.approx(0.4)  # 1 - C(4,2)/C(5,2) = 1 - 6/10
    assert pass_at_k(4, 2, 3) == 1.0  # n - c < k: every 3 of 4 hold a pass
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_math_scoring_reads_the_final_answer():
    texts = ["455 + 507 = 962. The answer is 962.", "The answer is 961.", "so \\boxed{0.5}", ""]
    assert score_math(texts, ["962", "962", "1/2", "3"]) == [1.0, 0.0, 1.0, 0.0]
    rows = read_jsonl(DATA / "arithmetic_eval.jsonl", ["answer"])
    assert len(rows) == 100 and all(isinstance(r["prompt"], str) for r in rows)


def test_bundled_code_problems_pass_their_own_solutions_and_fail_wrong_code():
    problems = read_jsonl(DATA / "code_eval.jsonl", ["tests"])
    assert 10 <= len(problems) <= 20 and len({p["id"] for p in problems}) == len(problems)
    fenced = [f"Here it is:\n```python\n{p['solution']}```\nDone." for p in problems]
    assert score_code(fenced, [p["tests"] for p in problems]) == [1.0] * len(problems)
    add = next(p for p in problems if p["entry_point"] == "add")
    samples = [add["solution"], "def add(a, b):\n    return a - b\n", "no code at all", fenced[0]]
    scores = score_code(samples, [add["tests"]] * 4)
    assert scores[0] == scores[3] == 1.0 and scores[1] < 1.0 and scores[2] == 0.0
    passed = sum(s == 1.0 for s in scores)
    assert pass_at_k(4, passed, 1) == 0.5 and pass_at_k(4, passed, 3) == 1.0


def test_prompts_use_the_chat_template_or_fall_back_to_raw_text(run):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = load_tokenizer(run / "tokenizer.json")
    chat = Prompter.create(tok)
    assert chat.format == "chat" and chat.stop_ids == (tok.token_to_id(END), tok.token_to_id(EOS))
    expected = render_chats(
        tok, [[{"role": "user", "content": "What is 2 + 2?"}]], generation_prompt=True
    )
    assert chat.encode(["What is 2 + 2?"]) == [expected[0][0].tolist()]

    plain = Tokenizer(models.BPE())
    plain.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|bos|>", EOS, "<|pad|>"])
    plain.train_from_iterator(["What is 2 + 2? The answer is 4."] * 5, trainer=trainer)
    raw = Prompter.create(plain)
    assert raw.format == "raw" and raw.stop_ids == (plain.token_to_id(EOS),)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert raw.encode([messages]) == [plain.encode("Be brief.\n\nHi").ids]
    with pytest.raises(ValueError, match="chat tokens"):
        Prompter.create(plain, "chat")
    assert Prompter.create(tok, "raw").format == "raw"


@pytest.fixture(scope="module")
def evaluated(run, tokenized_mixture, tmp_path_factory) -> tuple[list[dict], Path]:
    tmp = tmp_path_factory.mktemp("eval-out")
    kwargs = dict(
        shards=[tokenized_mixture / "anneal"],
        seq_len=32,
        max_tokens=300,
        passkey_lengths=[96],
        passkey_samples=2,
        math=_subset(DATA / "arithmetic_eval.jsonl", tmp / "math.jsonl", 3),
        code=_subset(DATA / "code_eval.jsonl", tmp / "code.jsonl", 2),
        ks=[1, 2],
        samples=2,
        max_new_tokens=8,
        seed=3,
        device="cpu",
    )
    rows = run_eval(run, output=tmp / "eval.jsonl", completions=tmp / "done.jsonl", **kwargs)
    again = run_eval(run, write=False, **{**kwargs, "shards": [], "passkey_lengths": []})
    key = ("eval", "metric", "value")
    first = [tuple(r[k] for k in key) for r in rows if r["eval"] in ("math", "code")]
    assert first == [tuple(r[k] for k in key) for r in again], "same seed, same values"
    return rows, tmp


def test_run_eval_reports_every_part_with_values_in_range(evaluated, run):
    rows, tmp = evaluated
    for r in rows:
        assert list(r)[:5] == ["eval", "subset", "metric", "value", "n"]
        assert r["stage"] == "pretrain" and r["step"] == 2 and r["seed"] == 3
        assert r["checkpoint"] == str(run / "checkpoints" / "pretrain")
    ppl = [r for r in rows if r["eval"] == "perplexity"]
    assert [r["subset"] for r in ppl] == ["anneal/code", "anneal/math", "anneal/web", "anneal/all"]
    assert all(1.0 < r["value"] < 10 * 320 and r["metric"] == "ppl" for r in ppl)
    assert ppl[-1]["n"] == ppl[-1]["tokens"] == 10 * 32 == sum(r["n"] for r in ppl[:-1])
    (passkey,) = [r for r in rows if r["eval"] == "passkey"]
    assert passkey["subset"] == "len 96" and passkey["n"] == 2 and 0 <= passkey["value"] <= 1
    (maths,) = [r for r in rows if r["eval"] == "math"]
    assert maths["metric"] == "exact_match" and maths["n"] == 3 and maths["prompt_format"] == "chat"
    assert 0 <= maths["value"] <= 1 and maths["correct"] == round(3 * maths["value"])
    code = {r["metric"]: r for r in rows if r["eval"] == "code"}
    assert set(code) == {"pass@1", "pass@2", "mean_test_fraction"}
    assert all(r["n"] == 2 and r["samples"] == 2 and 0 <= r["value"] <= 1 for r in code.values())
    assert code["pass@1"]["value"] <= code["pass@2"]["value"]

    written = [json.loads(line) for line in (tmp / "eval.jsonl").read_text().splitlines()]
    assert written == rows
    done = [json.loads(line) for line in (tmp / "done.jsonl").read_text().splitlines()]
    assert [d["eval"] for d in done] == ["math"] * 3 + ["code"] * 4
    assert all(isinstance(d["completion"], str) and 0 <= d["score"] <= 1 for d in done)


def test_math_eval_can_prompt_with_raw_text(run, tmp_path):
    loaded = load_for_eval(run, device="cpu")
    prompter = Prompter.create(loaded.tokenizer, "raw")
    path = _subset(DATA / "arithmetic_eval.jsonl", tmp_path / "m.jsonl", 2)
    row, done = math_eval(loaded.model, prompter, path, max_new_tokens=4)
    assert row["prompt_format"] == "raw" and row["n"] == 2 and len(done) == 2


def test_a_stage_tokenised_with_another_tokenizer_is_refused(run, tokenized_mixture, tmp_path):
    from mixtures.tokenizer import save_tokenizer, train_bpe

    other = save_tokenizer(train_bpe(["other words"] * 9, 280, 1), tmp_path / "tokenizer.json")
    with pytest.raises(ValueError, match="another tokenizer"):
        run_eval(run, tokenizer=other, shards=[tokenized_mixture / "anneal"], write=False)


def test_cli_prints_a_table_and_appends_to_the_runs_eval_jsonl(run, tokenized_mixture, capsys):
    args = ["eval", str(run), "--shards", str(tokenized_mixture / "anneal"), "--seq-len", "32"]
    args += ["--max-tokens", "64", "--passkey-lengths", "none", "--device", "cpu"]
    assert sharpen_main(args) == 0
    out = capsys.readouterr().out
    header, rule, *lines = out.splitlines()
    assert header.split() == ["eval", "subset", "metric", "value", "n"] and set(rule) <= {"-", " "}
    assert [line.split()[1] for line in lines[:4]] == [
        "anneal/code", "anneal/math", "anneal/web", "anneal/all"
    ]  # fmt: skip
    rows = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and f"appended 4 rows to {run / 'eval.jsonl'}" in out
    assert format_table(rows).splitlines()[2:] == lines[:4]

    assert sharpen_main(["eval", str(run / "nowhere")]) == 2
    assert "sharpen eval: error:" in capsys.readouterr().err
    code = ["eval", str(run), "--code", str(DATA / "code_eval.jsonl"), "--k", "5", "--samples", "2"]
    assert sharpen_main([*code, "--passkey-lengths", "none", "--output", "/dev/null"]) == 2
    assert "raise --samples" in capsys.readouterr().err
