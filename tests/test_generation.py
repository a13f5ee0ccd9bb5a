"""Decoders and their metrics (superpose.verify.generation) on the analytic step, and on the
constructed model where it exists.

Expected values come from ``verify.analytic.answer_mixture`` (the sequence-level mixture,
computed without any decoding) or are derived by hand in the comments.
"""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superpose import Example, Prompt, Task, TaskSet, build
from superpose.setting import PromptError
from superpose.verify.analytic import answer_mixture, task_mixture
from superpose.verify.generation import (
    CountingStep,
    GenerationError,
    analytic_step,
    beam,
    collapse_point,
    decode,
    greedy,
    metrics,
    model_step,
    reference_mixture,
    sample,
    sequence_kl,
    superposed,
)

F = Fraction


def pair_tasks(d: int = 5) -> TaskSet:
    """Three two-token tasks on three slots: AB and AC start alike, BA starts with another slot."""
    def pair(a, b):
        return Task(f"{'ABC'[a]}{'ABC'[b]}", slots=[a, b], table=[[(u, w) for w in range(d)] for u in range(d)])

    return TaskSet(vocab_size=d, slots=3, answer_length=2, tasks=[pair(0, 1), pair(0, 2), pair(1, 0)])


def pair_prompt(tasks: TaskSet, counts, query=(0, 1, 2), prefix=()) -> Prompt:
    """``counts[k]`` examples of task k on inputs with three distinct tokens (each fits its own task only)."""
    rng = np.random.default_rng(sum(counts))
    examples = []
    for k, c in enumerate(counts):
        for _ in range(c):
            x = rng.permutation(tasks.vocab_size)[:3].tolist()
            examples.append(Example(x, list(tasks.answer_of(tasks.tasks[k], x))))
    return Prompt(examples, list(query), query_prefix=list(prefix))


# --- the superposed decoder returns the sequence-level mixture -------------------------------

@st.composite
def multi_token_cases(draw):
    """Small random task sets (A in 1..3, d in 2..4: answers collide and share prefixes often), a prompt
    drawn from a mixture with ambiguous and noise examples, and a query prefix that some task fits."""
    d = draw(st.integers(2, 4))
    s = draw(st.integers(1, 2))
    A = draw(st.integers(1, 3))
    K = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    tasks, first = [], None
    for k in range(K):
        rows = rng.integers(0, d, (d, A))   # rows[x]: the answer to input token x
        if first is None:
            first = rows
        elif A > 1 and rng.random() < 0.3:   # a task that answers like task 0 up to its last token
            rows[:, :A - 1] = first[:, :A - 1]
        table = [tuple(int(v) for v in row) if A > 1 else int(row[0]) for row in rows]
        tasks.append(Task(f"t{k}", int(rng.integers(0, s)), table))
    tasks = TaskSet(d, s, tasks, answer_length=A)
    examples = []
    for _ in range(draw(st.integers(0, 6))):
        x = rng.integers(0, d, s).tolist()
        y = rng.integers(0, d, A).tolist() if rng.random() < 0.2 else \
            list(tasks.answer_of(tasks.tasks[int(rng.integers(0, K))], x))
        examples.append(Example(x, y if A > 1 else y[0]))
    query = rng.integers(0, d, s).tolist()
    answers = [tasks.answer_of(t, query) for t in tasks.tasks]
    cut = draw(st.integers(0, A - 1))
    prefix = answers[int(rng.integers(0, K))][:cut]
    return tasks, Prompt(examples, query, query_prefix=list(prefix))


def expected_mixture(tasks: TaskSet, prompt: Prompt) -> dict:
    """answer_mixture over the tasks that fit the query's prefix, renormalised (by hand, not via the decoders)."""
    mixture = answer_mixture(tasks, task_mixture(tasks, prompt.examples), prompt.query)
    j = len(prompt.query_prefix)
    kept = {a: p for a, p in mixture.items() if a[:j] == prompt.query_prefix}
    total = sum(kept.values())
    return {a: p / total for a, p in kept.items()} if total else {}


@settings(max_examples=150)
@given(multi_token_cases())
def test_superposed_decoder_returns_exactly_the_answer_mixture(case):
    tasks, prompt = case
    expected = expected_mixture(tasks, prompt)
    step = analytic_step(tasks, prompt, exact=True)
    decoded = superposed(step, threshold=0)
    assert decoded.distribution == expected  # exact Fractions, tasks with equal answers pooled
    assert all(isinstance(p, Fraction) for _, p in decoded.answers)
    left = tasks.answer_length - len(prompt.query_prefix)
    assert decoded.forward_passes <= max(len(expected), 1) * left  # (1: the prefix no present task fits)
    assert step.forward_passes == decoded.forward_passes  # each prefix evaluated once
    m = metrics(tasks, prompt, decoded.answers)
    assert m.kl == 0.0 and m.chimera_mass == 0
    assert m.coverage == (1 if expected else None)
    # the float step gives the same answers, to rounding
    floats = superposed(analytic_step(tasks, prompt), threshold=0).distribution
    assert floats.keys() == expected.keys()
    assert all(abs(floats[a] - float(p)) < 1e-12 for a, p in expected.items())
    # a beam as wide as the number of answers finds all of them, with the same probabilities
    assert beam(analytic_step(tasks, prompt, exact=True), width=max(1, len(expected))).distribution == expected


@settings(max_examples=100)
@given(multi_token_cases(), st.integers(0, 10 ** 6))
def test_single_decodes_give_one_task_answer_and_no_chimera(case, seed):
    """Under the conditioned rule every greedy, sampled and beam answer is some task's full answer."""
    tasks, prompt = case
    expected = expected_mixture(tasks, prompt)
    decodes = (greedy(analytic_step(tasks, prompt, exact=True)),
               sample(analytic_step(tasks, prompt, exact=True), n=3, seed=seed),
               beam(analytic_step(tasks, prompt, exact=True), width=1))
    if not expected:   # the query's prefix fits no task with positive weight: nothing to generate
        assert all(decoded.answers == [] for decoded in decodes)
        return
    for decoded in decodes:
        assert decoded.answers and all(a in expected for a, _ in decoded.answers)
        assert metrics(tasks, prompt, decoded.answers).chimera_mass == 0
    g = greedy(analytic_step(tasks, prompt, exact=True))
    (answer, p), = g.answers
    assert p == expected[answer]  # the conditioned rule's chain of probabilities is the answer's share
    assert g.forward_passes == tasks.answer_length - len(prompt.query_prefix)


# --- collapse on a mixed prompt, by hand ----------------------------------------------------

def test_greedy_sample_and_narrow_beam_collapse_on_a_mixed_prompt():
    tasks = pair_tasks()
    prompt = pair_prompt(tasks, (3, 2, 1))   # shares AB 1/2, AC 1/3, BA 1/6; query (0, 1, 2)
    assert [str(p) for p in task_mixture(tasks, prompt.examples)] == ["1/2", "1/3", "1/6"]
    # AB -> (0, 1), AC -> (0, 2), BA -> (1, 0): first token 0 with 5/6, then 1 : 2 = 3/5 : 2/5
    assert reference_mixture(tasks, prompt) == {(0, 1): F(1, 2), (0, 2): F(1, 3), (1, 0): F(1, 6)}
    step = analytic_step(tasks, prompt, exact=True)
    assert step(()) == [F(5, 6), F(1, 6), 0, 0, 0]
    assert step((0,)) == [0, F(3, 5), F(2, 5), 0, 0]
    assert step((1,)) == [1, 0, 0, 0, 0]

    g = greedy(analytic_step(tasks, prompt, exact=True))
    assert g.answers == [((0, 1), F(1, 2))] and g.forward_passes == 2  # 5/6 * 3/5
    gm = metrics(tasks, prompt, g.answers)
    assert gm.coverage == F(1, 3) and gm.kl == float("inf") and gm.chimera_mass == 0 and gm.collapse_point == 0
    assert gm.to_json() == {"kl": None, "coverage": 1 / 3, "chimera_mass": 0.0, "collapse_point": 0}

    one = sample(analytic_step(tasks, prompt, exact=True), n=1, seed=0)
    assert len(one.answers) == 1 and one.answers[0][1] == 1
    assert metrics(tasks, prompt, one.answers).coverage < 1

    b = beam(analytic_step(tasks, prompt, exact=True), width=2)
    # after the first token the beams are (0,) 5/6 and (1,) 1/6; then (0,1) 1/2 and (0,2) 1/3 beat (1,0) 1/6
    assert b.answers == [((0, 1), F(1, 2)), ((0, 2), F(1, 3))] and b.forward_passes == 3
    bm = metrics(tasks, prompt, b.answers)
    assert bm.coverage == F(2, 3) and bm.kl == float("inf") and bm.collapse_point == 2

    s = superposed(analytic_step(tasks, prompt, exact=True))
    assert s.answers == [((0, 1), F(1, 2)), ((0, 2), F(1, 3)), ((1, 0), F(1, 6))]
    assert s.forward_passes == 3 <= 3 * 2   # the root and the prefixes (0,) and (1,)
    sm = metrics(tasks, prompt, s.answers)
    # after the first token 0 both AB and AC are still possible: one answer holds it only after token 2
    assert (sm.kl, sm.coverage, sm.chimera_mass, sm.collapse_point) == (0.0, 1, 0, 2)


def test_sampling_many_times_follows_the_mixture_and_is_seeded():
    tasks = pair_tasks()
    prompt = pair_prompt(tasks, (3, 2, 1))
    a = sample(analytic_step(tasks, prompt), n=3000, seed=7)
    assert a.answers == sample(analytic_step(tasks, prompt), n=3000, seed=7).answers
    assert a.answers != sample(analytic_step(tasks, prompt), n=3000, seed=8).answers
    freq = a.distribution
    for answer, share in {(0, 1): 1 / 2, (0, 2): 1 / 3, (1, 0): 1 / 6}.items():
        assert abs(freq[answer] - share) < 4 * (share * (1 - share) / 3000) ** 0.5
    assert a.forward_passes == 3  # every sample reuses the three prefixes


def test_marginal_rule_makes_chimeras_by_hand():
    tasks = pair_tasks()
    prompt = pair_prompt(tasks, (2, 0, 1))   # AB 2/3 -> (0, 1), BA 1/3 -> (1, 0)
    marginal = superposed(analytic_step(tasks, prompt, mode="marginal", exact=True), threshold=0)
    # token 1 ignores token 0: (0,1) 4/9, (0,0) 2/9, (1,1) 2/9, (1,0) 1/9
    assert marginal.distribution == {(0, 1): F(4, 9), (0, 0): F(2, 9), (1, 1): F(2, 9), (1, 0): F(1, 9)}
    m = metrics(tasks, prompt, marginal.answers)
    assert m.chimera_mass == F(4, 9) and m.coverage == 1 and m.collapse_point == 2
    # KL(P||Q) = 2/3 ln((2/3)/(4/9)) + 1/3 ln((1/3)/(1/9)) = 2/3 ln(3/2) + 1/3 ln 3
    assert m.kl == pytest.approx(2 / 3 * np.log(1.5) + np.log(3) / 3, abs=1e-15)
    conditioned = superposed(analytic_step(tasks, prompt, exact=True))
    assert conditioned.distribution == {(0, 1): F(2, 3), (1, 0): F(1, 3)}
    assert metrics(tasks, prompt, conditioned.answers).collapse_point == 1


def test_chimera_mass_of_word_tasks_by_hand():
    """seven vs eight, letters: the marginal rule mixes every letter; chimera mass 1 - (2/3)^5 - (1/3)^5."""
    letters = sorted(set("seveneight"))
    code = {c: i for i, c in enumerate(letters)}
    d = len(letters)

    def word(w):
        return [tuple(code[c] for c in w)] * d

    tasks = TaskSet(d, 1, [Task("seven", 0, word("seven")), Task("eight", 0, word("eight"))],
                    token_names=letters, answer_length=5)
    prompt = Prompt([Example([0], list(word("seven")[0]))] * 2 + [Example([1], list(word("eight")[0]))], [2])
    q = metrics(tasks, prompt, superposed(analytic_step(tasks, prompt, "marginal", exact=True), 0).answers)
    assert q.chimera_mass == 1 - F(2, 3) ** 5 - F(1, 3) ** 5 == F(70, 81)
    c = superposed(analytic_step(tasks, prompt, exact=True))
    assert c.forward_passes == 1 + 2 * 4 <= 2 * 5
    assert metrics(tasks, prompt, c.answers).collapse_point == 1


# --- metrics on hand-made sets ----------------------------------------------------------------

def test_metrics_on_hand_made_sets():
    tasks = pair_tasks()
    prompt = pair_prompt(tasks, (1, 1, 2))   # AB 1/4 (0,1), AC 1/4 (0,2), BA 1/2 (1,0)
    decoded = {(1, 0): 0.5, (0, 1): 0.25, (0, 0): 0.2, (4, 4): 0.05}   # no (0,2)
    m = metrics(tasks, prompt, decoded)
    assert m.kl == float("inf") and m.coverage == F(2, 3)
    assert m.chimera_mass == pytest.approx(0.25, abs=1e-15)
    assert metrics(tasks, prompt, {}).coverage == 0 and metrics(tasks, prompt, {}).collapse_point is None
    # KL against a set that has every answer, by hand: 1/4 ln(1/4 / 1/8) + 1/4 ln 1 + 1/2 ln(1/2 / 1/4)
    assert sequence_kl(reference_mixture(tasks, prompt), {(0, 1): 0.125, (0, 2): 0.25, (1, 0): 0.25}) == \
        pytest.approx(0.25 * np.log(2) + 0.5 * np.log(2), abs=1e-15)
    assert collapse_point({(0, 1): 1}) == 0
    assert collapse_point({(0, 1): 0.5, (1, 0): 0.5}) == 1
    assert collapse_point({(0, 1): 0.5, (0, 2): 0.5}) == 2
    assert collapse_point({(0, 1, 2): 0.99, (0, 1, 3): 0.01}, tolerance=0.05) == 0
    # a query prefix conditions the reference: after 0 only AB and AC remain, 1/2 each
    after = pair_prompt(tasks, (1, 1, 2), prefix=(0,))
    assert reference_mixture(tasks, after) == {(0, 1): F(1, 2), (0, 2): F(1, 2)}
    s = superposed(analytic_step(tasks, after, exact=True))
    assert s.distribution == {(0, 1): F(1, 2), (0, 2): F(1, 2)} and s.forward_passes == 1
    assert metrics(tasks, after, s.answers).to_json() == {"kl": 0.0, "coverage": 1.0, "chimera_mass": 0.0,
                                                          "collapse_point": 2}


def test_a_prefix_no_task_fits_gives_no_answer():
    tasks = pair_tasks()
    prompt = pair_prompt(tasks, (1, 1, 0), prefix=(1,))   # AB and AC start with 0; BA (weight 0) with 1
    step = analytic_step(tasks, prompt, exact=True)
    assert step((1,)) == [0] * 5          # no surviving task: all zero (analytic.survivors says so)
    assert greedy(step).answers == [] and superposed(step).answers == [] and beam(step).answers == []
    assert sample(step, n=5).answers == []
    m = metrics(tasks, prompt, {})
    assert m.coverage is None and m.kl == 0.0 and m.chimera_mass == 0


def test_bad_options_are_typed_errors():
    tasks = pair_tasks()
    prompt = pair_prompt(tasks, (1, 1, 1))
    step = analytic_step(tasks, prompt)
    for call in (lambda: sample(step, n=0), lambda: sample(step, n=2, seed=-1), lambda: beam(step, width=0),
                 lambda: superposed(step, threshold=1.0), lambda: superposed(step, threshold=-0.1),
                 lambda: decode(step, "nucleus"), lambda: analytic_step(tasks, prompt, mode="bayes"),
                 lambda: greedy(lambda prefix: [1.0]), lambda: greedy(step, prefix=(0, 1))):
        with pytest.raises(GenerationError):
            call()
    with pytest.raises(PromptError, match="prefix"):
        step((0, 1))
    with pytest.raises(PromptError, match="prefix\\[0\\]"):
        step((7,))


def test_a_plain_callable_is_a_step():
    calls = []

    def fn(prefix):
        calls.append(prefix)
        return [0.5, 0.5] if not prefix else [1.0, 0.0]

    decoded = superposed(fn, answer_length=2)
    assert decoded.answers == [((0, 0), 0.5), ((1, 0), 0.5)] and decoded.forward_passes == 3 == len(calls)
    counted = CountingStep(fn, answer_length=2)
    greedy(counted)
    assert counted.forward_passes == 2


# --- the constructed model as a step ---------------------------------------------------------

def test_model_step_on_a_one_token_task_set_returns_the_mixture_within_the_bound():
    tasks = TaskSet(4, 2, [Task("copy0", 0, [0, 1, 2, 3]), Task("next1", 1, [1, 2, 3, 0]),
                           Task("same", 0, [0, 1, 2, 3])])
    prompt = Prompt([Example([0, 2], 0), Example([1, 3], 0), Example([2, 0], 2), Example([3, 3], 0)], [1, 2])
    model = build(tasks, max_examples=4)
    bound = model.error_bound("float64", prompt_length=tasks.prompt_length(4)).total
    step = model_step(model, prompt, "float64")
    decoded = superposed(step)
    expected = expected_mixture(tasks, prompt)   # copy0 and same answer 1 (pooled), next1 answers 3
    assert decoded.distribution.keys() == expected.keys() and decoded.forward_passes == 1
    assert max(abs(p - float(expected[a])) for a, p in decoded.answers) <= bound
    assert metrics(tasks, prompt, decoded.answers).kl < 1e-9
    assert greedy(model_step(model, prompt)).answers[0][0] == max(expected, key=expected.get)


def test_model_step_on_answers_of_several_tokens():
    """On a separable prompt (every example fits one task) the constructed model's superposed decode is
    the analytic mixture within the bound, in the same forward passes; its marginal variant's is the
    analytic marginal rule's, chimeras included."""
    tasks = pair_tasks()
    prompt = pair_prompt(tasks, (3, 2, 1))
    model = build(tasks, max_examples=prompt.n_examples)
    bound = model.error_bound("float64").total
    step = model_step(model, prompt, "float64")
    decoded = superposed(step)
    expected = expected_mixture(tasks, prompt)
    assert decoded.distribution.keys() == expected.keys()
    assert max(abs(p - float(expected[a])) for a, p in decoded.answers) <= 3 * bound  # a product of 2 readouts
    assert decoded.forward_passes == 3 == step.forward_passes <= len(expected) * tasks.answer_length
    assert greedy(model_step(model, prompt)).answers[0][0] == (0, 1)
    marginal = superposed(model_step(build(tasks, max_examples=prompt.n_examples, conditioned=False), prompt), 0)
    want = superposed(analytic_step(tasks, prompt, "marginal"), 0).distribution
    assert marginal.distribution.keys() == want.keys()
    assert max(abs(p - want[a]) for a, p in marginal.answers) <= 3 * bound
    # token 0: 0 5/6, 1 1/6; token 1 ignores it: 1 1/2, 2 1/3, 0 1/6; chimeras (0,0), (1,1), (1,2)
    chimera = metrics(tasks, prompt, marginal.answers).chimera_mass
    assert abs(chimera - (5 / 6 * 1 / 6 + 1 / 6 * 1 / 2 + 1 / 6 * 1 / 3)) <= 3 * bound and abs(chimera - 5 / 18) < 1e-9
