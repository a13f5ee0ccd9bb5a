"""examples/generation_collapse.py: its numbers, derived by hand from the prompt (shares 1/2 : 1/3 : 1/6
for seven : eight : six__), hold whether it decodes the analytic prediction or the constructed model."""


import pytest

from conftest import run_example

from superpose.examples import generation_collapse as example

TOL = 1e-9   # exact for the analytic step; the constructed model in float64 is within ~1e-12 per readout


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    r, printed = run_example("generation_collapse", tmp_path_factory.mktemp("figures"))
    r.printed = printed
    return r


def words(decoded):
    return {example.text(a): float(p) for a, p in decoded.answers}


def test_prompt_and_shares(result):
    assert [str(p) for p in result.shares.values()] == ["1/2", "1/3", "1/6"]
    tasks, query = result.tasks, result.prompt.query
    assert [example.text(tasks.answer_of(t, query)) for t in tasks.tasks] == ["seven", "eight", "six__"]


def test_conditioned_rule_letter_by_letter(result):
    tree = result.tree
    assert tree[""] == pytest.approx({"s": 2 / 3, "e": 1 / 3}, abs=TOL)   # seven + six start with s
    assert tree["s"] == pytest.approx({"e": 3 / 4, "i": 1 / 4}, abs=TOL)  # (1/2) : (1/6)
    for prefix in ("e", "se", "si", "ei", "sev", "six", "eig", "seve", "six_", "eigh"):
        assert len(tree[prefix]) == 1 and max(tree[prefix].values()) == pytest.approx(1, abs=TOL)


def test_single_decodes_collapse(result):
    d, m = result.decodes, result.scores
    assert words(d["greedy"]) == pytest.approx({"seven": 1 / 2}, abs=TOL)   # 2/3 * 3/4
    assert words(d["beam 2"]) == pytest.approx({"seven": 1 / 2, "eight": 1 / 3}, abs=TOL)
    assert float(m["greedy"].coverage) == pytest.approx(1 / 3) and m["greedy"].kl == float("inf")
    assert float(m["beam 2"].coverage) == pytest.approx(2 / 3)
    assert len(d["sample x1"].answers) == 1 and float(m["sample x1"].coverage) == pytest.approx(1 / 3)
    assert set(result.samples) == {"seven", "eight", "six__"}   # ten seeds: each sample a whole word
    assert all(float(m[label].chimera_mass) == 0 for label in ("greedy", "sample x1", "sample x300", "beam 2"))


def test_superposed_decoder_returns_every_word_with_its_share(result):
    s = result.decodes["superposed"]
    assert words(s) == pytest.approx({"seven": 1 / 2, "eight": 1 / 3, "six__": 1 / 6}, abs=TOL)
    # prefixes expanded: start; s, e; se, si, ei; then 3 at each of the last two letters
    assert s.forward_passes == 12 <= 3 * 5
    m = result.scores["superposed"]
    assert m.kl == pytest.approx(0, abs=TOL) and float(m.coverage) == 1 and float(m.chimera_mass) == 0
    assert m.collapse_point == 2


def test_marginal_rule_makes_chimeras(result):
    # letters: s 2/3 e 1/3 | e 1/2 i 1/2 | v 1/2 g 1/3 x 1/6 | e 1/2 h 1/3 _ 1/6 | n 1/2 t 1/3 _ 1/6
    assert result.marginal_letters[2] == pytest.approx({"v": 1 / 2, "g": 1 / 3, "x": 1 / 6}, abs=TOL)
    seven, eight, six = 2 / 3 * (1 / 2) ** 4, 1 / 3 * 1 / 2 * (1 / 3) ** 3, 2 / 3 * 1 / 2 * (1 / 6) ** 3
    marginal = words(result.decodes["marginal: superposed"])
    assert marginal["seven"] == pytest.approx(seven, abs=TOL) and marginal["eight"] == pytest.approx(eight, abs=TOL)
    assert len(marginal) == 2 * 2 * 3 * 3 * 3   # every letter combination
    chimera = float(result.scores["marginal: superposed"].chimera_mass)
    assert chimera == pytest.approx(1 - seven - eight - six, abs=TOL)
    assert 1 - seven - eight - six == pytest.approx(77 / 81, abs=1e-15)
    assert sum(w not in ("seven", "eight", "six__") for w in result.marginal_samples) >= 5
    assert float(result.scores["marginal: sample x300"].chimera_mass) > 0.8


def test_printed_and_figure(result):
    assert "seven 1/2, eight 1/3, six__ 1/6" in result.printed
    assert "12 forward passes; KL " in result.printed
    assert "coverage 1, chimera mass 0, collapse point 2" in result.printed
    path = result.figures[0]
    assert path.name == "generation_collapse.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size < 400_000
