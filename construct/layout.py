"""The named residual stream.

Every dimension of the residual stream has a name such as ``token[3]``,
``pos_cos[2]``, ``fetch[1,7]`` or ``mix[0]``. Dimensions are grouped in *blocks*
(``token``, ``pos_cos``, ``fetch``, ...); a block has a shape (``fetch`` is K x d)
and the layer that writes it. Weights are written by naming directions
(``layout.at("fetch", k, v)``), never by raw index, so the residual order can always
be reconstructed from the layout alone (``layout.labels``).

>>> lay = Layout([BlockSpec("token", (3,), "embedding", "one-hot token"),
...               BlockSpec("mix", (2,), "layer 5 attention", "task mixture")])
>>> lay.d_model, lay.at("mix", 1), lay.labels
(5, 4, ['token[0]', 'token[1]', 'token[2]', 'mix[0]', 'mix[1]'])
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class BlockSpec:
    """A named group of residual dimensions of the given shape."""

    name: str
    shape: tuple[int, ...]
    written_by: str
    meaning: str
    # labels of the entries along each axis, e.g. (("0", "1", "BOS", "ARROW"),) or
    # (("2", "5"), ("0", "1", "2")) for a block indexed by (slot read, token); None: 0, 1, 2, ...
    index_names: tuple[tuple[str, ...] | None, ...] | None = None


@dataclass(frozen=True)
class Block:
    spec: BlockSpec
    start: int

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def shape(self) -> tuple[int, ...]:
        return self.spec.shape

    @property
    def size(self) -> int:
        return math.prod(self.spec.shape)

    @property
    def slice(self) -> slice:
        return slice(self.start, self.start + self.size)

    def labels(self) -> list[str]:
        if not self.spec.shape:
            return [self.name]
        names = self.spec.index_names or (None,) * len(self.spec.shape)
        axes = [axis if axis is not None else tuple(str(i) for i in range(n))
                for axis, n in zip(names, self.spec.shape)]
        return [f"{self.name}[{','.join(idx)}]" for idx in itertools.product(*axes)]


class Layout:
    """An ordered list of named blocks; dimension ``i`` is ``labels[i]``."""

    def __init__(self, specs: Iterable[BlockSpec]):
        self.blocks: dict[str, Block] = {}
        start = 0
        for spec in specs:
            if spec.name in self.blocks:
                raise ValueError(f"duplicate block name {spec.name!r}")
            block = Block(spec, start)
            self.blocks[spec.name] = block
            start += block.size
        self.d_model = start
        self.labels: list[str] = [label for b in self.blocks.values() for label in b.labels()]
        # dimension -> its block: block_of runs for every non-zero weight of every build
        self._owner: list[Block] = [b for b in self.blocks.values() for _ in range(b.size)]

    def __getitem__(self, name: str) -> Block:
        return self.blocks[name]

    def at(self, name: str, *index: int) -> int:
        """Residual index of entry ``index`` of block ``name``."""
        block = self.blocks[name]
        shape = block.shape
        if len(index) != len(shape):
            raise IndexError(f"block {name!r} has shape {shape}, got index {index}")
        flat = 0
        for i, n in zip(index, shape):  # row-major, as np.ravel_multi_index (which is slow per call)
            if not 0 <= i < n:
                raise IndexError(f"index {index} out of range for block {name!r} of shape {shape}")
            flat = flat * n + int(i)
        return block.start + flat

    def block_of(self, dim: int) -> Block:
        if not 0 <= dim < self.d_model:
            raise IndexError(f"dimension {dim} is outside 0..{self.d_model - 1}")
        return self._owner[dim]

    def view(self, activation: np.ndarray, name: str) -> np.ndarray:
        """The entries of block ``name`` in ``activation[..., d_model]``, reshaped to its shape."""
        block = self.blocks[name]
        a = np.asarray(activation)[..., block.slice]
        return a.reshape(a.shape[:-1] + block.shape)

    def nonzero(self, vector: Sequence[float], tol: float = 0.0) -> dict[str, float]:
        """Label -> value of the entries of a residual vector with ``|value| > tol``."""
        v = np.asarray(vector)
        return {self.labels[i]: float(v[i]) for i in np.flatnonzero(np.abs(v) > tol)}

    def describe(self) -> str:
        """A table of the blocks: name, dimensions, written by, meaning."""
        rows = [("block", "dims", "range", "written by", "meaning")]
        for b in self.blocks.values():
            rows.append((b.name, "x".join(map(str, b.shape)) or "1", f"{b.start}..{b.start + b.size - 1}",
                         b.spec.written_by, b.spec.meaning))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join(
            "  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths)) + "  " + r[4] for r in rows
        )

    def to_json(self) -> list[dict]:
        return [
            {"name": b.name, "shape": list(b.shape), "start": b.start, "written_by": b.spec.written_by,
             "meaning": b.spec.meaning,
             **({"index_names": [None if a is None else list(a) for a in b.spec.index_names]}
                if b.spec.index_names else {})}
            for b in self.blocks.values()
        ]
