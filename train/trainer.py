"""Train the small GPT with optax on prompts of one training arm (``data.arm_batch``); checkpoints,
resume, deterministic seed.

Determinism: the batch of step ``i`` is drawn from ``np.random.default_rng([data_seed, i])``
and the initial parameters from ``jax.random.key(seed)``, so a run resumed from a
checkpoint continues exactly as the uninterrupted run would. ``data_seed`` defaults to
``seed`` (one number fixes a run); set apart, it tells whether the prompts or the
initial weights decide what a run learns.

Checkpoints are ``checkpoint.msgpack`` (``flax.serialization`` of params, optimizer state
and step) next to ``checkpoint.json`` (config, step, metrics so far).
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from superpose.setting import SuperposeError

from .data import ARMS, FAMILIES, Batch, arm_batch, single_task_batch, task_family
from .model import GPT, GPTConfig


class TrainConfigError(SuperposeError):
    """A training configuration value is out of range or unknown."""


@dataclass(frozen=True)
class TrainConfig:
    vocab_size: int = 16
    slots: int = 3
    n_examples: int = 10          # examples per training prompt (the loss is on every answer)
    d_model: int = 64
    n_layers: int = 3
    n_heads: int = 4
    batch_size: int = 32
    steps: int = 4000
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.01
    seed: int = 0
    eval_every: int = 250
    eval_prompts: int = 512
    checkpoint_every: int = 500
    family: str = "retrieval"     # the task family (train.data.FAMILIES): "retrieval" or "pairs" (2-token answers)
    arm: str = "conclusive"       # the training distribution (train.data.arm_batch): conclusive, weak or mixed
    label_noise: float = 0.0      # probability that an example's answer is a uniformly random token
    dirichlet_alpha: float = 1.0  # the mixed arm's Dirichlet concentration of task proportions
    example_positions: bool = False  # add the learned example-offset embedding (train.model)
    data_seed: int | None = None  # the training and evaluation prompts' seed; None: the same as seed

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name: f.type for f in fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise TrainConfigError(f"config: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        config = cls(**data)
        config.validate()
        return config

    def validate(self) -> None:
        for name in ("vocab_size", "slots", "n_examples", "d_model", "n_layers", "n_heads", "batch_size",
                     "steps", "eval_every", "eval_prompts", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TrainConfigError(f"{name}: must be a positive integer, got {value!r}")
        if not isinstance(self.family, str) or self.family not in FAMILIES:
            raise TrainConfigError(f"family: must be one of {sorted(FAMILIES)}, got {self.family!r}")
        if self.vocab_size <= self.slots:
            raise TrainConfigError(f"vocab_size: must exceed slots ({self.slots}), got {self.vocab_size}")
        try:
            self.tasks
        except ValueError as e:
            raise TrainConfigError(f"family {self.family!r}: {e}") from None
        if self.d_model % self.n_heads:
            raise TrainConfigError(f"d_model: {self.d_model} is not divisible by n_heads = {self.n_heads}")
        seeds = {"seed": self.seed, **({} if self.data_seed is None else {"data_seed": self.data_seed})}
        for name, value in seeds.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise TrainConfigError(f"{name}: must be an integer >= 0, got {value!r}")
        if not self.learning_rate > 0:
            raise TrainConfigError(f"learning_rate: must be > 0, got {self.learning_rate!r}")
        if not isinstance(self.arm, str) or self.arm not in ARMS:
            raise TrainConfigError(f"arm: must be one of {list(ARMS)}, got {self.arm!r}")
        if isinstance(self.label_noise, bool) or not isinstance(self.label_noise, (int, float)) \
                or not 0 <= self.label_noise < 1:
            raise TrainConfigError(f"label_noise: must be a number in [0, 1), got {self.label_noise!r}")
        if isinstance(self.dirichlet_alpha, bool) or not isinstance(self.dirichlet_alpha, (int, float)) \
                or not self.dirichlet_alpha > 0:
            raise TrainConfigError(f"dirichlet_alpha: must be a number > 0, got {self.dirichlet_alpha!r}")
        if not isinstance(self.example_positions, bool):
            raise TrainConfigError(f"example_positions: must be true or false, got {self.example_positions!r}")
        if (self.arm != "conclusive" or self.label_noise) and self.tasks.answer_length != 1:
            raise TrainConfigError(f"arm {self.arm!r} with label_noise {self.label_noise}: needs one-token "
                                   f"answers, family {self.family!r} has {self.tasks.answer_length}")

    @property
    def prompt_seed(self) -> int:
        """The seed of the training batches and the evaluation prompts."""
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def tasks(self):
        return task_family(self.family, self.vocab_size, self.slots)

    @property
    def n_ctx(self) -> int:
        """Position-embedding rows: room for n_examples examples and a query. Training prompts
        (BOS and n_examples examples) use the first 1 + n_examples (s + 1 + A) of them, so mixed
        evaluation prompts use n_examples - 1 examples and a query (with up to A - 1 answer
        tokens generated), which fit in those."""
        return (self.n_examples + 1) * self.tasks.example_length

    @property
    def model_config(self) -> GPTConfig:
        return GPTConfig(vocab_size=self.vocab_size + 2, n_ctx=self.n_ctx, d_model=self.d_model,
                         n_layers=self.n_layers, n_heads=self.n_heads,
                         example_length=self.tasks.example_length if self.example_positions else 0)


@dataclass
class TrainResult:
    config: TrainConfig
    params: Any
    opt_state: Any
    step: int
    history: list[dict] = field(default_factory=list)

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


@dataclass(frozen=True)
class OptimizerConfig:
    """What the optimizer (and so the compiled step) depends on besides the model."""
    learning_rate: float
    warmup_steps: int
    steps: int
    weight_decay: float


def _optimizer(config: OptimizerConfig):
    warmup = min(config.warmup_steps, config.steps // 2)  # short runs (tests) still decay
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, warmup, config.steps, config.learning_rate / 20)
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=config.weight_decay))


def answer_loss(logits, positions, answers):
    """Mean next-token cross-entropy at the ARROW positions (predicting each answer)."""
    logp = jax.nn.log_softmax(logits[:, positions], axis=-1)
    return -jnp.take_along_axis(logp, answers[..., None], axis=-1).mean()


def make_step(config: TrainConfig):
    """(model, optimizer, jitted step) of a run: shared by every config with the same model and
    optimizer settings (its data fields, arm, noise, seeds, do not change the program)."""
    return _make_step(config.model_config, OptimizerConfig(config.learning_rate, config.warmup_steps, config.steps,
                                                           config.weight_decay))


@functools.lru_cache(maxsize=8)  # one compiled step each: resuming, or training another arm or seed, reuses it
def _make_step(model_config: GPTConfig, optimizer_config: OptimizerConfig):
    model = GPT(model_config)
    optimizer = _optimizer(optimizer_config)

    @jax.jit
    def step(params, opt_state, tokens, positions, answers):
        def loss_fn(p):
            return answer_loss(model.apply({"params": p}, tokens), positions, answers)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return model, optimizer, step


def config_batch(config: TrainConfig, batch_size: int, rng: np.random.Generator) -> Batch:
    """Prompts of the config's training distribution (its family, arm and label noise)."""
    if config.tasks.answer_length > 1:
        return single_task_batch(config.tasks, batch_size, config.n_examples, rng)
    return arm_batch(config.tasks, config.arm, batch_size, config.n_examples, rng,
                     config.label_noise, config.dirichlet_alpha)


def batch_for_step(config: TrainConfig, step: int) -> Batch:
    return config_batch(config, config.batch_size, np.random.default_rng([config.prompt_seed, step]))


def eval_batch(config: TrainConfig) -> Batch:
    """The fixed evaluation prompts of a run (fresh prompts of its training distribution)."""
    return config_batch(config, config.eval_prompts, np.random.default_rng([config.prompt_seed, 10 ** 9]))


def evaluate(config: TrainConfig, params) -> dict:
    """In-context accuracy on fresh prompts of the training distribution (fixed seed): after
    the last example and after each number of examples, argmax over content tokens (an answer
    of several tokens is correct when every token is, each predicted from the true tokens
    before it). For one-token answers also ``bayes_loss``: the loss of the Bayes-optimal
    predictor of the training distribution (``train.bayes``) on the same prompts, so
    ``eval_loss - bayes_loss`` is the run's distance to the floor, free of sampling noise in
    the prompts."""
    batch = eval_batch(config)
    logits = np.asarray(GPT(config.model_config).apply({"params": params}, batch.tokens))
    content = logits[:, batch.answer_positions, : config.vocab_size]
    A = config.tasks.answer_length
    correct = (content.argmax(-1) == batch.answers).reshape(len(batch.tokens), config.n_examples, A).all(-1)
    logp = jax.nn.log_softmax(logits[:, batch.answer_positions], axis=-1)
    loss = float(-np.take_along_axis(np.asarray(logp), batch.answers[..., None], axis=-1).mean())
    per_task = {config.tasks.tasks[k].name: float(correct[batch.task_ids == k, -1].mean())
                for k in range(config.tasks.K) if (batch.task_ids == k).any()}
    metrics = {"eval_loss": loss, "accuracy_last": float(correct[:, -1].mean()),
               "accuracy_by_examples_seen": correct.mean(0).round(4).tolist(), "accuracy_by_task": per_task}
    if A == 1:
        metrics["bayes_loss"] = _bayes_eval_loss(config)
    return metrics


@functools.lru_cache(maxsize=8)
def _bayes_eval_loss(config: TrainConfig) -> float:
    from .bayes import batch_bayes_losses

    return float(batch_bayes_losses(config, eval_batch(config)).mean())


CHECKPOINT_FILES = ("checkpoint.msgpack", "checkpoint.json")


def _save(path: str, config: TrainConfig, params, opt_state, step: int, history: list[dict]) -> None:
    from superpose.files import atomic_write, make_directory

    make_directory(path)
    # each file atomic: never a half-written checkpoint (the run owns its directory: force)
    with atomic_write(os.path.join(path, "checkpoint.msgpack"), force=True) as tmp, open(tmp, "wb") as f:
        f.write(serialization.to_bytes({"params": params, "opt_state": opt_state}))
    with atomic_write(os.path.join(path, "checkpoint.json"), force=True) as tmp, open(tmp, "w") as f:
        json.dump({"config": asdict(config), "step": step, "history": history}, f, indent=1)


def load_checkpoint(path: str) -> TrainResult:
    """Read ``checkpoint.json`` + ``checkpoint.msgpack`` written by ``train``."""
    try:
        with open(os.path.join(path, "checkpoint.json")) as f:
            meta = json.load(f)
        config = TrainConfig.from_dict(meta["config"])
        with open(os.path.join(path, "checkpoint.msgpack"), "rb") as f:
            blob = f.read()
    except (OSError, ValueError, KeyError) as e:
        raise TrainConfigError(f"{path}: no readable checkpoint ({e})") from None
    params, opt_state = jax.eval_shape(lambda: _initial_state(config))   # the tree only: nothing computed
    try:
        state = serialization.from_bytes({"params": params, "opt_state": opt_state}, blob)
    except Exception as e:  # msgpack raises several types for truncated data
        raise TrainConfigError(f"{path}: checkpoint.msgpack is corrupt ({type(e).__name__})") from None
    return TrainResult(config, state["params"], state["opt_state"], int(meta["step"]), list(meta["history"]))


def _initial_state(config: TrainConfig):
    """Initial (params, optimizer state). Run eagerly on purpose: a jitted init draws different
    float32 values (fused differently), so the committed runs would no longer retrain bit for bit.
    Eagerly, Flax compiles a program per operation and shape; ``init`` also runs the model forward
    (its output is discarded; the params depend on the tokens' shape in no way), so it runs it on
    tokens of the evaluation prompts' shape: ``evaluate`` then finds those programs compiled."""
    model, optimizer, _ = make_step(config)
    tokens = jnp.zeros(eval_batch(config).tokens.shape, dtype=jnp.int32)
    params = model.init(jax.random.key(config.seed), tokens)["params"]
    return params, optimizer.init(params)


def train(config: TrainConfig, out_dir: str | None = None, resume: bool = False,
          progress: Callable[[int, dict], None] | None = None, stop_after: int | None = None) -> TrainResult:
    """Train for ``config.steps`` steps (or until ``stop_after``), checkpointing into ``out_dir``."""
    config.validate()
    _, _, step_fn = make_step(config)
    if resume:
        if out_dir is None:
            raise TrainConfigError("resume: needs the checkpoint directory")
        loaded = load_checkpoint(out_dir)
        if loaded.config != config:
            raise TrainConfigError(f"{out_dir}: checkpoint was trained with a different config")
        params, opt_state, start, history = loaded.params, loaded.opt_state, loaded.step, loaded.history
    else:
        params, opt_state = _initial_state(config)
        start, history = 0, []
    last = min(config.steps, stop_after) if stop_after is not None else config.steps
    started = time.perf_counter()
    losses: list[float] = []
    for step in range(start, last):
        batch = batch_for_step(config, step)
        params, opt_state, loss = step_fn(params, opt_state, batch.tokens, batch.answer_positions, batch.answers)
        losses.append(float(loss))
        done = step + 1
        if done % config.eval_every == 0 or done == config.steps:
            record = {"step": done, "train_loss": float(np.mean(losses[-config.eval_every:])),
                      "seconds": time.perf_counter() - started, **evaluate(config, params)}
            history.append(record)
        if progress is not None:
            progress(done, {"loss": float(loss), **({"acc": history[-1]["accuracy_last"]} if history else {})})
        if out_dir is not None and (done % config.checkpoint_every == 0 or done == last):
            _save(out_dir, config, params, opt_state, done, history)
    return TrainResult(config, params, opt_state, last, history)
