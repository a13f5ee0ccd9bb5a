"""The worked examples (``superpose examples``); ``superpose.examples.common`` has their shared helpers.

Figures go where the caller says (``--out`` or ``main(out_dir=...)``); by default into
``figures/`` in the current directory, never into the installed package.
"""

from pathlib import Path

DEFAULT_OUT = Path("figures")
