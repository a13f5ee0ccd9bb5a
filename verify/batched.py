"""Many models at once: one compiled program per padded shape, sharded over the available devices.

A sweep runs models built for different task sets. ``padded_shape`` rounds every
dimension of a model's ``ModelConfig`` up to a power of two
(``superpose.executor.bucket_config`` without ``superpose.model.run``'s least widths), and
``superpose.model.pad_params`` zero-pads the weights to it (extra dimensions, heads,
units, tokens and positions carry zero weights, so every real output is computed from
the same non-zero terms). Models of one padded shape are then stacked along a leading
*model axis* and run together:

    readout[g, b] = Transformer(shape)(params[g], tokens[g, b])

``ShardedRunner`` runs this as ``jax.shard_map`` over a one-axis ``jax.sharding.Mesh``
of all devices: the model axis (the stacked weights and their prompts) is split
across the devices, each device runs the same per-model forward pass (``jax.vmap`` of
``superpose.model.Transformer``, attention block by block for prompts longer than the
block) on its slice, and nothing is communicated between devices. The same code
runs on one CPU or on many accelerators; the number of models per call is always a
multiple of the device count (padded with copies of the first model, whose results
are dropped).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from superpose.construct.build import ModelConfig
from superpose.model import Transformer, attention_block, bucket_config

AXIS = "models"
# Names kept for the command line's --executor: both run superpose.model.Transformer (one executor);
# "standard" uses its default block (attention_block), "chunked" the runner's ``block``.
EXECUTORS = ("standard", "chunked")
DEFAULT_ATTENTION_BUDGET = 2 ** 25   # attention-score elements per device per call
MAX_MODELS_PER_DEVICE = 8


def padded_shape(config: ModelConfig) -> ModelConfig:
    """``config`` with every width rounded up to a power of two (the layer count kept), with no least
    width: a sweep stacks many models of one shape, so it keeps short prompts short."""
    return bucket_config(config, minimums={})


def device_mesh(devices: Sequence[Any] | None = None) -> Mesh:
    """A one-axis mesh (axis ``"models"``) over ``devices`` (default: all of JAX's devices)."""
    return Mesh(np.asarray(list(devices) if devices is not None else jax.devices()), (AXIS,))


@dataclass
class Item:
    """One model's weights (padded to the call's shape) and a batch of its prompts ``tokens[B, T]``."""

    params: Any
    tokens: np.ndarray


@dataclass(frozen=True)
class Signature:
    """What one compiled program is specialised to."""

    shape: ModelConfig
    dtype: str
    models: int
    batch: int
    length: int


class ShardedRunner:
    """Run stacks of same-shape models, sharded over a device mesh along the model axis."""

    def __init__(self, mesh: Mesh | None = None, attention_budget: int = DEFAULT_ATTENTION_BUDGET,
                 max_models_per_device: int = MAX_MODELS_PER_DEVICE, executor: str = "standard", block: int = 256):
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
        self.mesh = mesh if mesh is not None else device_mesh()
        self.executor = executor
        self.block = int(block) if executor == "chunked" else None
        self.attention_budget = int(attention_budget)
        self.max_models_per_device = int(max_models_per_device)
        self.compiled: dict[Signature, Any] = {}
        self.compile_seconds: dict[Signature, float] = {}

    @property
    def n_devices(self) -> int:
        return int(self.mesh.devices.size)

    def _scores_per_prompt(self, shape: ModelConfig) -> int:
        """Attention-score elements alive at once for one prompt (all of them, or those of one block row)."""
        return shape.n_heads * shape.n_ctx * min(self.block or attention_block(shape.n_ctx), shape.n_ctx)

    def prompts_per_item(self, shape: ModelConfig, n_prompts: int) -> int:
        """Prompts per model per call: all of them unless their attention scores exceed the budget."""
        return max(1, min(n_prompts, self.attention_budget // self._scores_per_prompt(shape)))

    def items_per_call(self, shape: ModelConfig, batch: int) -> int:
        """Models per call: a multiple of the device count, within the per-device budget."""
        per_item = batch * self._scores_per_prompt(shape)
        per_device = max(1, min(self.max_models_per_device, self.attention_budget // per_item))
        return per_device * self.n_devices

    def _program(self, signature: Signature, params: Any, tokens: jax.Array):
        if signature not in self.compiled:
            shape = signature.shape

            def per_model(p, t):
                readout, _ = Transformer(shape).apply({"params": p}, t, False, self.block)
                return readout

            spec = PartitionSpec(AXIS)
            # check_vma=False: the block-wise attention's loops carry start as constants; every device
            # computes on its own slice only, so there is nothing to check across devices
            sharded = jax.shard_map(jax.vmap(per_model), mesh=self.mesh, in_specs=(spec, spec), out_specs=spec,
                                    check_vma=False)
            start = time.perf_counter()
            self.compiled[signature] = jax.jit(sharded).lower(params, tokens).compile()
            self.compile_seconds[signature] = time.perf_counter() - start
        return self.compiled[signature]

    def run(self, shape: ModelConfig, dtype: str, items: Sequence[Item],
            models: int | None = None) -> tuple[np.ndarray, float]:
        """Readouts ``[len(items), B, T, shape.d_out]`` and the seconds the call took (compile excluded).

        The stack is padded to ``models`` (default: the next multiple of the device
        count) with copies of the first item; their results are dropped.
        """
        if not items:
            raise ValueError("no items to run")
        models = models if models is not None else -(-len(items) // self.n_devices) * self.n_devices
        if models % self.n_devices or models < len(items):
            raise ValueError(f"models per call must be a multiple of {self.n_devices} and >= {len(items)}")
        stack = list(items) + [items[0]] * (models - len(items))
        batch, length = stack[0].tokens.shape
        if any(it.tokens.shape != (batch, length) for it in stack) or length != shape.n_ctx:
            raise ValueError(f"every item needs tokens of shape ({batch}, {shape.n_ctx})")
        signature = Signature(shape, dtype, models, batch, length)
        sharding = NamedSharding(self.mesh, PartitionSpec(AXIS))
        with jax.enable_x64(dtype == "float64"):
            params = jax.tree_util.tree_map(lambda *leaves: np.stack(leaves).astype(dtype),
                                            *[it.params for it in stack])
            tokens = np.stack([it.tokens for it in stack]).astype(np.int32)
            params, tokens = jax.device_put((params, tokens), sharding)
            program = self._program(signature, params, tokens)
            start = time.perf_counter()
            out = program(params, tokens)
            out.block_until_ready()
            devices = len(out.sharding.device_set)
            result = np.asarray(out)[: len(items)]
            seconds = time.perf_counter() - start
        if devices != self.n_devices:
            raise RuntimeError(f"result spans {devices} devices, expected {self.n_devices}")
        return result, seconds


def shapes_compiled(runner: ShardedRunner) -> list[dict]:
    """One entry per compiled program: its shape, dtype, stack size, batch, length and compile time."""
    return [{"shape": s.shape.to_json(), "dtype": s.dtype, "models": s.models, "batch": s.batch,
             "length": s.length, "compile_seconds": runner.compile_seconds[s]} for s in runner.compiled]


__all__ = ["AXIS", "EXECUTORS", "Item", "ShardedRunner", "Signature", "device_mesh", "padded_shape",
           "shapes_compiled"]
