"""Small helpers shared by the examples: figures, command-line flags, formatting, tracing.

Every example is a module with ``main(out_dir=..., small=False)`` that prints what it
shows, saves its figures as PNG into ``out_dir`` and returns its key numbers.

>>> fraction_text(1 / 3), fraction_text(0.5), fraction_text(0.123456789)
('1/3', '1/2', '0.123457')
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window: the examples also run headless under test
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from superpose import tokenize  # noqa: E402
from superpose.model import run_tokens  # noqa: E402

DEFAULT_OUT = Path("examples") / "figures"
DPI = 100  # committed figures stay small
TASK_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")

__all__ = ["DEFAULT_OUT", "TASK_COLORS", "fraction_text", "plt", "residual_after", "run_as_script", "save_figure",
           "trace"]


def save_figure(fig, out_dir: str | Path, name: str) -> Path:
    """Save ``fig`` as ``out_dir/name`` (PNG) and close it; returns the path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def fraction_text(x: float, max_denominator: int = 60) -> str:
    """``x`` as a short fraction when it is one (to 1e-9), else as a decimal."""
    f = Fraction(float(x)).limit_denominator(max_denominator)
    return str(f) if abs(float(f) - x) < 1e-9 else f"{x:.6g}"


def trace(model, prompt, dtype: str = "float64"):
    """Token ids ``[T]``, the readout ``[T, d]`` and the activation cache of one prompt (batch of 1)."""
    tokens = tokenize(model.tasks, prompt)
    readout, cache = run_tokens(model, tokens[None, :], dtype=dtype, capture=True)
    return tokens, readout[0], cache


def residual_after(cache, layer: int) -> np.ndarray:
    """The residual stream ``[T, d_model]`` after ``layer`` (0 = the embedding)."""
    return cache["resid_pre"][0] if layer == 0 else cache[f"layer_{layer}"]["resid_post"][0]


def run_as_script(main: Callable[..., object]) -> None:
    """``python examples/<name>.py [--out DIR] [--small]`` calls ``main(out_dir, small)``."""
    parser = argparse.ArgumentParser(description=(main.__doc__ or "").strip().split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"folder for the figures (default {DEFAULT_OUT})")
    parser.add_argument("--small", action="store_true", help="smaller sizes (used by the tests)")
    args = parser.parse_args()
    main(out_dir=args.out, small=args.small)
