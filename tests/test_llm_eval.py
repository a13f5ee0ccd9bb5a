"""``superpose llm-eval`` (verify/llm_eval.py, verify/llm_models.py, verify/llm_cli.py), offline.

The text model is a tiny randomly initialised GPT-2 and a byte-level BPE tokeniser built and
saved here (no download); references are computed directly with torch from the tokeniser
and the model, or from the family data by rules written out in the tests.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from superpose.cli import main
from superpose.verify.llm_eval import (
    BoundaryError,
    Family,
    LLMEvalError,
    MixedPrompt,
    PromptFormat,
    TextScorer,
    check_shares,
    draw_prompt,
    evaluate,
    example_counts,
    family_from_json,
    family_names,
    load_family,
    prompt_metrics,
    prompt_text,
    split_in_context,
)

# torch and transformers (the lens extra, part of `make install`) are imported where they are used:
# every pytest-xdist worker collects this file, and importing them takes seconds.


def _tokenizer(texts, vocab_size):
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok)


def _save_tiny_gpt2(directory, vocab_size: int, merges: bool = True) -> None:
    """A byte-level BPE (``merges``: trained on the families' lines; else characters only) and a random
    2-layer GPT-2 over it, saved as a Hugging Face model directory."""
    import torch
    import transformers

    texts = [PromptFormat().example(i.input, a) for n in family_names() for i in load_family(n).items
             for a in i.answers]
    tokenizer = _tokenizer(texts, vocab_size if merges else 256)
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=None, eos_token_id=None)
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny_gpt2")
    _save_tiny_gpt2(directory, 400)
    return str(directory)


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory):
    directory = tmp_path_factory.mktemp("char_gpt2")
    _save_tiny_gpt2(directory, 256, merges=False)
    return str(directory)


def _hf(directory):
    from superpose.resources import memory_limit
    from superpose.verify.llm_models import load_hf

    return load_hf(directory, "float32", memory_limit())


# --------------------------------------------------------------------------- families

def test_bundled_families_follow_their_rules():
    """Every answer of the bundled families, checked against a rule or the example data written out here."""
    countries = json.load(open(__import__("superpose.examples", fromlist=["x"]).__path__[0]
                               + "/data/countries.json"))["countries"]
    family = load_family("countries")
    assert family.tasks == ("capital", "continent", "upper case")
    assert [(i.input, i.answers) for i in family.items] == \
        [(c["country"], (c["capital"], c["continent"], c["country"].upper())) for c in countries]
    letters = load_family("letters")
    assert all(i.answers == (i.input[0], i.input[-1]) for i in letters.items)
    ab = load_family("ab_digits")
    assert sorted(i.input for i in ab.items) == [f"{a} {b}" for a in range(10) for b in range(10)]
    assert all(i.answers == (i.input[0], i.input[2], str(int(i.input[0]) + int(i.input[2]))) for i in ab.items)
    words = {i.input: i.answers for i in load_family("number_words").items}
    assert words["7"] == ("seven", "sept", "siete") and words["20"] == ("twenty", "vingt", "veinte")
    add = load_family("add_and_translate")
    assert add.tasks == ("English", "Spanish", "French")
    for item in add.items:
        a, _, b = item.input.split(" ")
        english, french, spanish = words[str(int(a) + int(b))]
        assert item.answers == (english, spanish, french)


def test_family_file_errors_name_the_problem():
    good = {"description": "", "tasks": ["x", "y"],
            "items": [{"input": "a", "answers": {"x": "1", "y": "2"}}, {"input": "b", "answers": {"x": "3", "y": "4"}}]}
    assert family_from_json(good, "ok").items[1].answers == ("3", "4")
    bad = json.loads(json.dumps(good))
    bad["items"][0]["answer"] = "oops"
    with pytest.raises(LLMEvalError, match="items\\[0\\]: unknown key 'answer'"):
        family_from_json(bad, "bad")
    bad = json.loads(json.dumps(good))
    bad["items"][1]["answers"]["z"] = "5"
    with pytest.raises(LLMEvalError, match="items\\[1\\].answers: unknown key 'z'"):
        family_from_json(bad, "bad")
    with pytest.raises(LLMEvalError, match="unknown key 'version'"):
        family_from_json({**good, "version": 2}, "bad")
    with pytest.raises(LLMEvalError, match="no family 'planets'"):
        load_family("planets")


def test_shares_and_counts():
    assert example_counts([0.5, 0.25, 0.25], 8) == [4, 2, 2]
    assert example_counts([1 / 3] * 3, 7) == [3, 2, 2]
    assert example_counts([0.0, 1.0], 5) == [0, 5]
    with pytest.raises(LLMEvalError, match="sum to 1"):
        check_shares([0.5, 0.4], 2)
    with pytest.raises(LLMEvalError, match="2 shares for 3 tasks"):
        check_shares([0.5, 0.5], 3)


def test_drawn_prompts_show_one_task_per_example():
    family = load_family("ab_digits")
    rng = np.random.default_rng(1)
    for _ in range(50):
        prompt = draw_prompt(family, [0, 1, 2], [3, 2, 1], rng)
        assert [k for _, k in prompt.examples].count(0) == 3 and len(prompt.examples) == 6
        items = [i for i, _ in prompt.examples]
        assert prompt.query not in items and len(set(items)) == 6
        for i, k in prompt.examples:
            a, b = map(int, family.items[i].input.split(" "))
            answers = [str(a), str(b), str(a + b)]
            assert answers.count(answers[k]) == 1


# --------------------------------------------------------------------------- scoring by brute force

def _teacher_forced(directory, prefix: str, continuation: str) -> tuple[float, list[str]]:
    """P(continuation | prefix) as the product of next-token probabilities of the whole text's
    tokens after the prefix's, computed here with torch; and those tokens as strings."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    model = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    ids = tokenizer(prefix + continuation)["input_ids"]
    n = len(tokenizer(prefix)["input_ids"])
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
    p = 1.0
    for t in range(n, len(ids)):
        p *= float(probs[t - 1, ids[t]])
    return p, [tokenizer.decode([i]) for i in ids[n:]]


@pytest.mark.parametrize("family_name", ["ab_digits", "countries"])
def test_answer_probability_is_the_product_of_teacher_forced_tokens_with_the_boundary(tiny_lm, family_name):
    family = load_family(family_name)
    scorer = TextScorer(_hf(tiny_lm))
    prompt = draw_prompt(family, [0, 1, 2], [2, 1, 1], np.random.default_rng(3))
    text = prompt_text(family, prompt, scorer.fmt)
    candidates = list(dict.fromkeys(family.items[prompt.query].answers))
    got = scorer.answer_logprobs(family, prompt, candidates)
    for answer, logprob in zip(candidates, got):
        expected, pieces = _teacher_forced(tiny_lm, text, f" {answer}\n")
        assert "".join(pieces) == f" {answer}\n" and pieces[-1].endswith("\n")  # the boundary is scored
        assert math.exp(logprob) == pytest.approx(expected, rel=1e-5)
        without_boundary, _ = _teacher_forced(tiny_lm, text, f" {answer}")
        assert math.exp(logprob) < without_boundary


def test_a_tokeniser_that_merges_across_the_arrow_is_refused():
    """Greedy longest match over {a, b, c, ab, newline}: 'ca' + 'b' tokenises as c|ab, so the answer's first
    token would swallow the prompt's last character; 'cb' + 'a' splits cleanly."""
    vocab = sorted(["a", "b", "c", "ab", "\n"], key=len, reverse=True)

    def encode(text):
        out, i = [], 0
        while i < len(text):
            piece = next(v for v in vocab if text.startswith(v, i))
            out.append(piece)
            i += len(piece)
        return out

    assert split_in_context(encode, "cb", "a\n") == (["c", "b"], ["a", "\n"])
    with pytest.raises(BoundaryError, match="merges the prompt's end 'ca' with the answer 'b"):
        split_in_context(encode, "ca", "b\n")


def test_with_the_boundary_answers_are_prefix_free(char_lm):
    """On a character vocabulary, every string over {1, 2} of length 1..3 scored as an answer: with the
    boundary they are disjoint events (sum <= P(' ')), while the unbounded score of '1' holds the
    bounded scores of '1', '11', '12', '111', ... all at once."""
    scorer = TextScorer(_hf(char_lm))
    family = load_family("ab_digits")
    prompt = MixedPrompt(((12, 0), (34, 1)), 56)
    strings = ["".join(s) for n in (1, 2, 3) for s in itertools.product("12", repeat=n)]
    bounded = dict(zip(strings, (math.exp(x) for x in scorer.answer_logprobs(family, prompt, strings))))
    text = prompt_text(family, prompt, scorer.fmt)
    space, _ = _teacher_forced(char_lm, text, " ")
    assert sum(bounded.values()) <= space
    unbounded_one, _ = _teacher_forced(char_lm, text, " 1")
    assert unbounded_one > sum(p for s, p in bounded.items() if s.startswith("1")) > bounded["1"]


# --------------------------------------------------------------------------- a stub that knows the answer

class ShareTableLM:
    """A stub text model with a known table: it reads the prompt's lines, finds each example's task from the
    family data (by its answer), and gives each answer (+ boundary) the summed share of the tasks that
    answer it on the query. One token per character."""

    def __init__(self, family: Family):
        self.answers = {item.input: dict(zip(family.tasks, item.answers)) for item in family.items}

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def continuation_logprobs(self, prefix, continuations):
        lines = "".join(map(chr, prefix)).split("\n")
        counts: dict[str, int] = {}
        for line in lines[:-1]:
            item, answer = line.split(" -> ")
            (task,) = [t for t, a in self.answers[item].items() if a == answer]
            counts[task] = counts.get(task, 0) + 1
        query = lines[-1][: -len(" ->")]
        table: dict[str, float] = {}
        for task, count in counts.items():
            answer = self.answers[query][task]
            table[answer] = table.get(answer, 0.0) + count / (len(lines) - 1)
        out = []
        for c in continuations:
            answer = "".join(map(chr, c))[1:-1]
            first = math.log(table[answer]) if answer in table else -math.inf
            out.append(np.array([first] + [0.0] * (len(c) - 1)))
        return out


def test_a_model_with_the_shares_by_construction_gets_kl_zero_and_full_coverage():
    family = load_family("number_words")
    family = Family("number words 4..7", "", family.tasks, family.items[4:8])  # 6 is 'six' in English and French
    records = evaluate(TextScorer(ShareTableLM(family)), family, ["English", "French", "Spanish"],
                       [0.5, 0.25, 0.25], 8, 30, seed=0)
    assert any(r["query"] == "6" for r in records)
    for r in records:
        assert r["kl"] == pytest.approx(0.0, abs=1e-12) and r["kl"] >= 0
        assert r["r"] == r["K"] == 3
        assert r["off_task_mass"] == pytest.approx(0.0, abs=1e-12)
    shared = next(r for r in records if r["query"] == "6")
    assert shared["candidates"]["six"] == pytest.approx(0.75)
    # the paper code's unpooled sum, one term per task, goes negative on the shared answer
    unpooled = sum(t["share"] * math.log(t["share"] / t["probability"]) for t in shared["tasks"])
    assert unpooled < -0.1


def test_prompt_metrics_by_hand():
    m = prompt_metrics(["a", "b"], [0.5, 0.5], ["a", "b", "c"], [0.5, 0.1, 0.3])
    assert m["kl"] == pytest.approx(0.5 * math.log(0.5 / 0.5) + 0.5 * math.log(0.5 / 0.1))
    assert (m["r"], m["K"]) == (1, 2)  # top 2: a and c
    assert m["off_task_mass"] == pytest.approx(0.4)
    absent = prompt_metrics(["a", "b"], [1.0, 0.0], ["a", "b"], [0.2, 0.7])
    assert (absent["r"], absent["K"]) == (0, 1) and absent["kl"] == pytest.approx(math.log(5))


# --------------------------------------------------------------------------- the command, end to end

def test_llm_eval_command_end_to_end(tiny_lm, tmp_path, capsys):
    out, png = tmp_path / "r.jsonl", tmp_path / "r.png"
    args = ["llm-eval", "--model", tiny_lm, "--family", "countries", "--tasks", "capital", "continent",
            "--shares", "0.75", "0.25", "--examples", "4", "--prompts", "3", "-o", str(out), "--plot", str(png)]
    assert main(args) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 4 and set(lines[-1]) == {"summary"} and png.stat().st_size > 0
    for r in lines[:-1]:
        assert [(t["name"], t["count"]) for t in r["tasks"]] == [("capital", 3), ("continent", 1)]
        pooled: dict[str, float] = {}
        for t in r["tasks"]:
            pooled[t["answer"]] = pooled.get(t["answer"], 0.0) + t["share"]
        kl = sum(p * math.log(p / r["candidates"][a]) for a, p in pooled.items())
        assert r["kl"] == pytest.approx(kl) and r["kl"] > 0 and 0 <= r["r"] <= 2
    summary = lines[-1]["summary"]
    assert summary["kl_mean"] == pytest.approx(sum(r["kl"] for r in lines[:-1]) / 3)
    assert summary["probability_mean"]["continent"] == pytest.approx(
        sum(r["candidates"][r["tasks"][1]["answer"]] for r in lines[:-1]) / 3)
    assert summary["share_mean"] == pytest.approx({"capital": 0.75, "continent": 0.25})
    assert "mean KL" in capsys.readouterr().out
    before = out.read_text()
    assert main(args) == 2  # exists, no --force
    assert "exists; pass --force" in capsys.readouterr().err and out.read_text() == before


def test_a_text_model_reads_a_token_level_family_from_tasks_json(tiny_lm, tmp_path):
    """The trained model's task set as text lines ('13 9 2 -> 13 9'): the family all three kinds can read."""
    from superpose.train.data import pair_retrieval_tasks

    tasks_json = tmp_path / "pairs.json"
    tasks_json.write_text(json.dumps(pair_retrieval_tasks(16, 3).to_json()))
    out = tmp_path / "p.jsonl"
    assert main(["llm-eval", "--model", tiny_lm, "--family", str(tasks_json), "--examples", "6", "--prompts", "2",
                 "-o", str(out)]) == 0
    records = [json.loads(x) for x in out.read_text().splitlines()][:-1]
    copy = {"copy AB": (0, 1), "copy AC": (0, 2), "copy BA": (1, 0)}
    for r in records:
        query = r["query"].split(" ")
        assert len(query) == 3 and len(set(query)) == 3 and all(0 <= int(x) < 16 for x in query)
        assert all(t["answer"] == " ".join(query[i] for i in copy[t["name"]]) for t in r["tasks"])
        pooled = {t["answer"]: t["share"] for t in r["tasks"]}
        assert r["kl"] == pytest.approx(sum(p * math.log(p / r["candidates"][a]) for a, p in pooled.items()))


@pytest.mark.parametrize("extra, message", [
    (["--family", "planets"], "no family 'planets'"),
    (["--tasks", "capital", "--shares", "0.5", "0.5"], "2 shares for 1 tasks"),
    (["--memory-limit", "1K"], "over the memory limit"),
    (["--separator", ""], "--separator: must not be empty"),
    (["--tasks", "capital", "moon"], "has no task 'moon'"),
    (["--device", "nosuch"], "--device: cannot move the model to 'nosuch'"),
    (["--plot", "figure.txt"], "--plot: expected a .png, .pdf or .svg file"),
    (["--examples", "400"], "over the model's context of 512"),
])
def test_llm_eval_bad_input_is_one_line(tiny_lm, tmp_path, capsys, extra, message):
    assert main(["llm-eval", "--model", tiny_lm, "-o", str(tmp_path / "r.jsonl"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "r.jsonl").exists()


def test_a_model_name_that_cannot_be_fetched_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["llm-eval", "--model", "no-such-org/no-such-model", "-o", str(tmp_path / "r.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "could not be fetched from the Hugging Face hub" in err and err.count("\n") == 1


# --------------------------------------------------------------------------- token-level models

@pytest.mark.slow
def test_constructed_model_through_transformer_lens_is_calibrated(tmp_path):
    """Theorem 1: the constructed model's answer probabilities are the tasks' shares (KL 0, r = K)."""
    from superpose import Task, TaskSet, build
    from superpose.verify.export import save_safetensors

    tasks = TaskSet(6, 2, [Task("copy A", 0, list(range(6))), Task("copy B", 1, list(range(6)))])
    path = str(tmp_path / "constructed.safetensors")
    save_safetensors(build(tasks, max_examples=4), path)
    out = tmp_path / "c.jsonl"
    assert main(["llm-eval", "--model", path, "--shares", "0.75", "0.25", "--examples", "4", "--prompts", "4",
                 "-o", str(out)]) == 0
    records = [json.loads(x) for x in out.read_text().splitlines()][:-1]
    for r in records:
        assert [t["probability"] for t in r["tasks"]] == pytest.approx([0.75, 0.25], abs=1e-6)
        assert r["kl"] < 1e-9 and r["r"] == r["K"] == 2
    assert main(["llm-eval", "--model", path, "--family", "countries", "-o", str(tmp_path / "x.jsonl")]) == 2
    tasks_json = tmp_path / "tasks.json"
    tasks_json.write_text(json.dumps(tasks.to_json()))  # its own task set as a family file: accepted
    assert main(["llm-eval", "--model", path, "--family", str(tasks_json), "--shares", "0.75", "0.25",
                 "--examples", "4", "--prompts", "1", "-o", str(tmp_path / "y.jsonl")]) == 0
    with pytest.raises(LLMEvalError, match="at most 4 examples"):
        from superpose.resources import memory_limit
        from superpose.verify.llm_models import load_scorer

        loaded = load_scorer(path, PromptFormat(), "float32", memory_limit())
        evaluate(loaded.scorer, loaded.family, ["copy A", "copy B"], [0.5, 0.5], 6, 1, 0)


@pytest.mark.slow
def test_trained_checkpoint_probabilities_match_the_flax_model(tmp_path):
    """llm-eval on the committed two-token checkpoint (through TransformerLens) against the Flax model
    run here: each answer's probability is the product of the softmax at the ARROW and at its first token."""
    from superpose.setting import Example, Prompt, tokenize
    from superpose.train.model import compiled_logits
    from superpose.train.trainer import load_checkpoint

    checkpoint = str(__import__("pathlib").Path(__file__).parents[1] / "train" / "results" / "generation")
    out = tmp_path / "t.jsonl"
    assert main(["llm-eval", "--model", checkpoint, "--examples", "4", "--prompts", "2", "--seed", "5",
                 "-o", str(out)]) == 0
    records = [json.loads(x) for x in out.read_text().splitlines()][:-1]
    run = load_checkpoint(checkpoint)
    tasks, logits_of = run.config.tasks, compiled_logits(run.config.model_config)
    copy = {"copy AB": (0, 1), "copy AC": (0, 2), "copy BA": (1, 0)}  # the task names say what they copy
    for r in records:
        query = r["query"].split(" ")
        assert all(t["answer"] == " ".join(query[i] for i in copy[t["name"]]) for t in r["tasks"])
        assert r["kl"] >= 0 and sum(t["count"] for t in r["tasks"]) == 4
    # a prompt written out here, scored by the pipeline's scorer and by the Flax model
    from superpose.resources import memory_limit
    from superpose.verify.llm_eval import token_family
    from superpose.verify.llm_models import load_scorer

    loaded = load_scorer(checkpoint, PromptFormat(), "float32", memory_limit())
    family = token_family(tasks)
    index = {item.tokens: i for i, item in enumerate(family.items)}
    shown = [((1, 2, 3), 0), ((4, 5, 6), 1), ((7, 8, 9), 2), ((10, 11, 12), 0)]
    prompt = MixedPrompt(tuple((index[x], k) for x, k in shown), index[(13, 14, 15)])
    candidates = ["13 14", "13 15", "14 13", "3 2"]
    got = [math.exp(x) for x in loaded.scorer.answer_logprobs(family, prompt, candidates)]
    examples = [Example(x, tasks.answer_of(tasks.tasks[k], x)) for x, k in shown]
    for candidate, p in zip(candidates, got):
        a, b = map(int, candidate.split(" "))
        tokens = tokenize(tasks, Prompt(examples, (13, 14, 15), (a,)))
        logits = np.asarray(logits_of(run.params, tokens[None, :]), dtype=np.float64)[0]
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        assert p == pytest.approx(probs[-2, a] * probs[-1, b], rel=1e-4)
