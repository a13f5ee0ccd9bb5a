r"""Lemma X: the seven layers, run in exact arithmetic in the hard-attention limit, give the prediction.

Exact numbers. Every weight is rational except the positional code and the query
weights of the look-back heads, which are ``cos`` and ``sin`` of multiples of
``pi / 2^{L-1}``. They all lie in the cyclotomic field ``Q(zeta)``, ``zeta = e^{i pi/N}``,
``N = 2^{L-1}``, which is ``Q[x] / (x^N + 1)`` (``x^N + 1`` is the 2N-th cyclotomic
polynomial, irreducible), so a number is a vector of ``N`` rationals (sympy's ``QQ``)
and equality is exact. ``cos(pi j / N) = (zeta^j + zeta^-j) / 2``. The sign of a
non-zero real ``alpha`` is decided by evaluating it with mpmath at a precision that
is provably enough: with ``D`` the common denominator of its coefficients and ``H`` the
sum of ``|D c_j|``, ``D alpha`` is a non-zero algebraic integer whose ``N`` conjugates
are at most ``H`` in size and whose norm is a non-zero integer, so
``|alpha| >= 1 / (D H^{N-1})``.

Exact weights. Each float in ``model.params`` is replaced by the unique exact value it
rounds: a rational with denominator at most 4096 whose nearest float it is, or (for
the positional code and the attention scores only) ``s cos(pi j / N)`` with
``s in {1, beta}`` within ``1e-10 s``. A weight with no such value fails the lemma.

Hard attention. By lemma S2 each softmax tends, as ``beta -> oo``, to the uniform
distribution on the positions of maximal score; every score is ``beta`` times a form
that does not depend on ``beta`` (lemma Q), so the maximisers are those of the exact
scores computed from the weights. The run uses exactly that attention.

The check runs every prompt, compares each layer's output blocks with the exact values
its spec states (``LayerSpec.exact``, chained from the tokens by ``spec.exact_values``),
and the readout at every prediction position with ``predict(tasks, prompt, exact=True)``
(``verify.analytic``, written independently of the construction).
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import Any, Sequence

import mpmath
import numpy as np
from sympy import QQ

from superpose.construct.build import LAYER_SPECS, SuperposeModel, build
from superpose.construct.spec import exact_values
from superpose.setting import Prompt, prediction_positions, tokenize, validate_prompt
from superpose.verify.analytic import predict, separable

from .result import ProofFailure, ProofInputError, lemma, require
from .subjects import prompts_for, proof_models, random_prompts, two_token_prompts, two_token_tasks

ZERO = QQ(0)


class Cyclotomic:
    """``sum_j c[j] zeta^j`` (``j < N``) with ``zeta = e^{i pi / N}``, so ``zeta^N = -1``."""

    __slots__ = ("N", "c")

    def __init__(self, N: int, coefficients: Sequence[Any]):
        self.N, self.c = N, tuple(coefficients)

    @classmethod
    def cos_pi(cls, N: int, j: int) -> "Cyclotomic":
        """``cos(pi j / N) = (zeta^j + zeta^-j) / 2``."""
        c = [ZERO] * N
        for power in (j, -j):
            index, sign = _reduce(N, power)
            c[index] += QQ(sign, 2)
        return cls(N, c)

    def is_rational(self) -> bool:
        return not any(self.c[1:])

    def is_zero(self) -> bool:
        return not any(self.c)

    def scaled(self, r: Any) -> "Cyclotomic":
        return Cyclotomic(self.N, [a * r for a in self.c])

    def __repr__(self) -> str:
        return " + ".join(f"{a}*z^{j}" for j, a in enumerate(self.c) if a) or "0"


def _reduce(N: int, power: int) -> tuple[int, int]:
    power %= 2 * N
    return (power, 1) if power < N else (power - N, -1)


def _lift(value: Any, N: int) -> Cyclotomic:
    return value if isinstance(value, Cyclotomic) else Cyclotomic(N, (value,) + (ZERO,) * (N - 1))


def add(a: Any, b: Any) -> Any:
    if not isinstance(a, Cyclotomic) and not isinstance(b, Cyclotomic):
        return a + b
    N = a.N if isinstance(a, Cyclotomic) else b.N
    a, b = _lift(a, N), _lift(b, N)
    return Cyclotomic(N, [x + y for x, y in zip(a.c, b.c)])


def neg(a: Any) -> Any:
    return a.scaled(QQ(-1)) if isinstance(a, Cyclotomic) else -a


def mul(a: Any, b: Any) -> Any:
    if not isinstance(a, Cyclotomic) and not isinstance(b, Cyclotomic):
        return a * b
    if not isinstance(a, Cyclotomic):
        return b.scaled(a)
    if not isinstance(b, Cyclotomic):
        return a.scaled(b)
    N = a.N
    out = [ZERO] * N
    for i, x in enumerate(a.c):
        if x:
            for j, y in enumerate(b.c):
                if y:
                    if i + j < N:
                        out[i + j] += x * y
                    else:
                        out[i + j - N] -= x * y   # zeta^N = -1
    return Cyclotomic(N, out)


def is_zero(a: Any) -> bool:
    return a.is_zero() if isinstance(a, Cyclotomic) else a == 0


@lru_cache(maxsize=None)
def _cosines(N: int, bits: int) -> tuple:
    with mpmath.workprec(bits):
        return tuple(mpmath.cos(mpmath.pi * j / N) for j in range(N)), \
            tuple(mpmath.sin(mpmath.pi * j / N) for j in range(N))


def sign(a: Any) -> int:
    """The exact sign of a real number of the field (certified; see the module docstring)."""
    if not isinstance(a, Cyclotomic):
        return (a > 0) - (a < 0)
    if a.is_rational():
        return (a.c[0] > 0) - (a.c[0] < 0)
    denominator = math.lcm(*(int(x.denominator) for x in a.c if x))
    height = sum(abs(int(x * denominator)) for x in a.c)
    # |alpha| >= 2^-gap_bits
    gap_bits = math.ceil(math.log2(denominator) + (a.N - 1) * math.log2(max(height, 1)))
    bits = 64 * math.ceil((gap_bits + 64) / 64)
    cos_table, sin_table = _cosines(a.N, bits)
    with mpmath.workprec(bits):
        real = mpmath.fsum(mpmath.mpf(int(x.numerator)) / int(x.denominator) * cj for x, cj in zip(a.c, cos_table))
        imaginary = mpmath.fsum(mpmath.mpf(int(x.numerator)) / int(x.denominator) * sj
                                for x, sj in zip(a.c, sin_table))
        floor = mpmath.ldexp(1, -gap_bits - 1)
        if abs(imaginary) >= floor:
            raise ProofFailure(f"the field element {a} is not real")
        if abs(real) < floor:
            raise ProofFailure(f"the non-zero field element {a} evaluates below its proven size")
    return 1 if real > 0 else -1


# ------------------------------------------------------------------------------ exact weights


def exact_rational(x: float) -> Any:
    """The rational of denominator <= 4096 whose nearest float is ``x``, or None."""
    if x == 0:
        return ZERO
    r = Fraction(x).limit_denominator(4096)
    return QQ(r.numerator, r.denominator) if float(r) == x else None


class ExactWeights:
    """The params of a model with every float replaced by the exact value it rounds."""

    def __init__(self, model: SuperposeModel):
        self.model = model
        self.N = 2 ** (model.layout["pos_cos"].size - 1)
        self.beta = Fraction(model.sharpness)
        N = self.N
        self.candidates = [(math.cos(math.pi * j / N), Cyclotomic.cos_pi(N, j)) for j in range(2 * N)]
        self.worst_deviation = 0.0
        p = model.params
        self.W_E = self._rows(p["embed"]["W_E"], "embed/W_E", ())
        self.W_pos = self._rows(p["embed"]["W_pos"], "embed/W_pos", (Fraction(1),))
        self.layers = []
        for n in range(1, model.config.n_layers + 1):
            a, m = p[f"layer_{n}"]["attn"], p[f"layer_{n}"]["mlp"]
            scales = (Fraction(1), self.beta)
            heads = []
            for h in range(a["W_Q"].shape[0]):
                if not any(np.any(a[k][h]) for k in ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O")):
                    continue
                where = f"layer_{n}/attn head {h}"
                heads.append({
                    "W_Q": self._rows(a["W_Q"][h], f"{where} W_Q", scales),
                    "b_Q": self._vector(a["b_Q"][h], f"{where} b_Q", scales),
                    "W_K": self._rows(a["W_K"][h], f"{where} W_K", scales),
                    "b_K": self._vector(a["b_K"][h], f"{where} b_K", scales),
                    "W_V": self._rows(a["W_V"][h], f"{where} W_V", ()),
                    "b_V": self._vector(a["b_V"][h], f"{where} b_V", ()),
                    "W_O": self._rows(a["W_O"][h], f"{where} W_O", ()),
                })
            self.layers.append({
                "heads": heads, "d_head": a["W_Q"].shape[2],
                "b_O": self._vector(a["b_O"], f"layer_{n}/attn b_O", ()),
                "W_in": self._rows(m["W_in"], f"layer_{n}/mlp W_in", ()),
                "b_in": self._vector(m["b_in"], f"layer_{n}/mlp b_in", ()),
                "W_out": self._rows(m["W_out"], f"layer_{n}/mlp W_out", ()),
                "b_out": self._vector(m["b_out"], f"layer_{n}/mlp b_out", ()),
            })
        self.W_U = self._rows(p["unembed"]["W_U"], "unembed/W_U", ())
        self.b_U = self._vector(p["unembed"]["b_U"], "unembed/b_U", ())

    def _value(self, x: float, where: str, scales: tuple) -> Any:
        r = exact_rational(float(x))
        if r is not None:
            return r
        for scale in scales:
            tolerance = 1e-10 * float(scale)
            matches = {j for j, (value, _) in enumerate(self.candidates)
                       if abs(x - float(scale) * value) <= tolerance}
            if matches:
                j = min(matches)
                exact = self.candidates[j][1].scaled(QQ(scale.numerator, scale.denominator))
                self.worst_deviation = max(self.worst_deviation, abs(x - float(scale) * self.candidates[j][0]))
                return exact.c[0] if exact.is_rational() else exact
        raise ProofFailure(f"{where}: weight {x!r} is neither a small rational nor s*cos(pi j/{self.N}) "
                           f"with s in {[str(s) for s in scales] or ['(rational only)']}")

    def _vector(self, v: np.ndarray, where: str, scales: tuple) -> list:
        return [self._value(x, f"{where}[{i}]", scales) if x != 0 else ZERO for i, x in enumerate(v)]

    def _rows(self, W: np.ndarray, where: str, scales: tuple) -> list[list[tuple[int, Any]]]:
        """Row i -> [(column, exact value)] for the non-zero exact entries."""
        rows = []
        for i, row in enumerate(W):
            entries = []
            for j in np.flatnonzero(row):
                value = self._value(float(row[j]), f"{where}[{i},{j}]", scales)
                if not is_zero(value):
                    entries.append((int(j), value))
            rows.append(entries)
        return rows


def _times(vector: Sequence[Any], rows: list, width: int, bias: Sequence[Any] | None = None) -> list:
    out = list(bias) if bias is not None else [ZERO] * width
    for i, x in enumerate(vector):
        if not is_zero(x):
            for j, w in rows[i]:
                out[j] = add(out[j], mul(x, w))
    return out


def _dot(a: Sequence[Any], b: Sequence[Any]) -> Any:
    total: Any = ZERO
    for x, y in zip(a, b):
        if not is_zero(x) and not is_zero(y):
            total = add(total, mul(x, y))
    return total


def hard_attention_run(weights: ExactWeights, tokens: Sequence[int]) -> list[list[list[Any]]]:
    """Residual streams ``[embedding, after layer 1, ..., after layer 7]`` in exact arithmetic, hard attention."""
    D = weights.model.layout.d_model
    h = []
    for t, token in enumerate(tokens):
        row = [ZERO] * D
        for j, w in weights.W_E[token] + weights.W_pos[t]:
            row[j] = add(row[j], w)
        h.append(row)
    streams = [[list(r) for r in h]]
    width = len(weights.layers[0]["b_in"])
    for layer in weights.layers:
        d_head = layer["d_head"]
        update = [[ZERO] * D for _ in h]
        for head in layer["heads"]:
            q = [_times(r, head["W_Q"], d_head, head["b_Q"]) for r in h]
            k = [_times(r, head["W_K"], d_head, head["b_K"]) for r in h]
            v = [_times(r, head["W_V"], d_head, head["b_V"]) for r in h]
            for t in range(len(h)):
                scores = [_dot(q[t], k[u]) for u in range(t + 1)]   # causal
                best = scores[0]
                for s in scores[1:]:
                    if sign(add(s, neg(best))) > 0:
                        best = s
                winners = [u for u, s in enumerate(scores) if is_zero(add(s, neg(best)))]
                share = QQ(1, len(winners))   # lemma S2: the beta -> oo limit of softmax
                z = [ZERO] * d_head
                for u in winners:
                    z = [add(a, mul(share, b)) for a, b in zip(z, v[u])]
                written = _times(z, head["W_O"], D)
                update[t] = [add(a, b) for a, b in zip(update[t], written)]
        h = [[add(add(x, y), b) for x, y, b in zip(row, upd, layer["b_O"])] for row, upd in zip(h, update)]
        for t, row in enumerate(h):
            pre = _times(row, layer["W_in"], width, layer["b_in"])
            hidden = [x if sign(x) > 0 else ZERO for x in pre]
            out = _times(hidden, layer["W_out"], D, layer["b_out"])
            h[t] = [add(x, y) for x, y in zip(row, out)]
        streams.append([list(r) for r in h])
    return streams


def readout(weights: ExactWeights, stream: list[list[Any]]) -> list[list[Any]]:
    d = len(weights.b_U)
    return [_times(row, weights.W_U, d, weights.b_U) for row in stream]


# -------------------------------------------------------------------------------- specification


def _specification(model: SuperposeModel, prompt: Prompt) -> dict[int, dict[tuple, Fraction]]:
    """Layer -> {(block, position, *index): exact value}: the seven specs' ``exact`` values."""
    tokens = tokenize(model.tasks, prompt).tolist()
    spec: dict[int, dict[tuple, Fraction]] = {}
    for number, written in enumerate(exact_values(LAYER_SPECS, model.tasks, tokens, model.conditioned), start=1):
        spec[number] = {}
        for block, per_position in written.items():
            for t, value in enumerate(per_position):
                if value is None:
                    continue
                for index, x in np.ndenumerate(np.asarray(value, dtype=object)):
                    spec[number][(block, t, *index)] = Fraction(x)
    return spec


def _as_fraction(x: Any) -> Fraction | None:
    if isinstance(x, Cyclotomic):
        if not x.is_rational():
            return None
        x = x.c[0]
    return Fraction(int(x.numerator), int(x.denominator))


def run_prompt(weights: ExactWeights, prompt: Prompt) -> int:
    """Check one prompt; returns the number of exact values compared."""
    model = weights.model
    validate_prompt(model.tasks, prompt, model.max_examples)
    streams = hard_attention_run(weights, tokenize(model.tasks, prompt).tolist())
    compared = 0
    for layer, expected in _specification(model, prompt).items():
        for (block, t, *index), want in expected.items():
            got = _as_fraction(streams[layer][t][model.layout.at(block, *index)])
            name = f"{block}[{','.join(map(str, index))}]" if index else block
            require(got == want, f"{prompt.to_json()}: after layer {layer}, {name} at position {t} is {got}, "
                                 f"specified {want}")
            compared += 1
    out = readout(weights, streams[-1])
    positions = prediction_positions(model.tasks, prompt.n_examples, len(prompt.query_prefix))
    mode = "conditioned" if model.conditioned else "marginal"
    claimed = [ok or not model.conditioned for ok, _ in separable(model.tasks, prompt)]
    for i, (t, row, exact) in enumerate(zip(positions, predict(model.tasks, prompt, exact=True, mode=mode), claimed)):
        if not exact:   # outside the class the construction conditions exactly on: the specs above hold
            continue
        got = [_as_fraction(x) for x in out[int(t)]]
        require(got == list(row), f"{prompt.to_json()}: readout at prediction position {i} is "
                                  f"{[str(x) for x in got]}, predicted {[str(x) for x in row]}")
        compared += len(row)
    return compared


def default_cases() -> list[tuple[SuperposeModel, list[Prompt]]]:
    """The proof models with their hand-picked prompts and six seeded random ones each, and a model of
    two-token answers (conditioned and marginal) on prompts that keep, eliminate and condition tasks."""
    cases = [(m, prompts_for(m.tasks) + random_prompts(m.tasks, m.max_examples, count=6, seed=i))
             for i, m in enumerate(proof_models())]
    two_token = two_token_tasks()
    for conditioned in (True, False):   # answers of two tokens, and the marginal variant
        cases.append((build(two_token, max_examples=2, conditioned=conditioned), two_token_prompts()))
    return cases


@lemma("X exact hard-attention run",
       "in exact arithmetic with every softmax at its beta -> oo limit, the built weights give every layer's "
       "specified output and readout = predict(tasks, prompt, exact=True) at every prediction position (answers "
       "of several tokens: the conditioned rule where separable, the marginal rule for the marginal variant)")
def check_exact_run(cases: Sequence[tuple[SuperposeModel, Sequence[Prompt]]] | None = None) -> str:
    cases = default_cases() if cases is None else cases
    compared = prompts = 0
    worst = 0.0
    for case in cases:
        if not (isinstance(case, tuple) and len(case) == 2 and isinstance(case[0], SuperposeModel)):
            raise ProofInputError("cases: expected a list of (SuperposeModel, list of Prompt) pairs")
        model, prompt_list = case
        weights = ExactWeights(model)
        worst = max(worst, weights.worst_deviation)
        for prompt in prompt_list:
            compared += run_prompt(weights, prompt)
            prompts += 1
    return (f"{prompts} prompts, {compared} exact values equal their specification; irrational weights "
            f"within {worst:.1e} of exact")


@lemma("Q sharpness scales the scores",
       "build(tasks, M, beta) differs from build(tasks, M, 1) only in the attention scores, which are beta times theirs")
def check_sharpness_scales_scores(model=None) -> str:
    from .layer_lemmas import head_bilinear, models_to_check
    worst = 0.0
    for m in models_to_check(model, one_token=False):
        unit = build(m.tasks, max_examples=m.max_examples, sharpness=1.0, conditioned=m.conditioned)
        for path, a, b in _leaves(m.params, unit.params):
            if path[-1] in ("W_Q", "b_Q", "W_K", "b_K"):
                continue
            require(np.array_equal(a, b), f"{'/'.join(path)} depends on the sharpness")
        for n in range(1, m.config.n_layers + 1):
            for h in range(m.config.n_heads):
                M, M1 = head_bilinear(m, n, h), head_bilinear(unit, n, h)
                deviation = float(np.max(np.abs(M - m.sharpness * M1)))
                worst = max(worst, deviation / m.sharpness)
                require(deviation <= 1e-13 * m.sharpness * max(1.0, float(np.max(np.abs(M1)))),
                        f"layer {n} head {h}: the score form is not beta times the beta = 1 form")
    return f"all non-score weights equal; score forms = beta * (beta = 1 forms) within {worst:.1e} beta"


def _leaves(a: Any, b: Any, path: tuple = ()):
    if isinstance(a, dict):
        require(isinstance(b, dict) and set(a) == set(b), f"params differ in structure at {'/'.join(path)}")
        for key in a:
            yield from _leaves(a[key], b[key], path + (key,))
    else:
        yield path, a, b
