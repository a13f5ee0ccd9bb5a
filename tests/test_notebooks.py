"""The worked examples are notebooks too: jupytext "percent" cells, executed end to end by nbclient.

Needs the ``notebook`` extra (jupytext, nbclient, ipykernel), which ``make test`` installs;
without it these tests are skipped with that reason.
"""

import contextlib
import io
import sys

import pytest

from superpose.cli import main
from superpose.examples.cli import EXAMPLES, notebook_of

REASON = "the notebook extra is not installed (pip install -e '.[notebook]'; `make test` installs it)"
jupytext = pytest.importorskip("jupytext", reason=REASON)
nbformat = pytest.importorskip("nbformat", reason=REASON)
pytest.importorskip("nbclient", reason=REASON)
pytest.importorskip("ipykernel", reason=REASON)


def call(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("module", list(EXAMPLES.values()))
def test_every_example_opens_as_a_notebook_with_its_prose_as_markdown(module):
    notebook = notebook_of(module)
    kinds = [cell.cell_type for cell in notebook.cells]
    first = notebook.cells[0].source
    assert kinds[0] == "markdown" and first.startswith("# Example ")
    assert "Run: `python examples/" in first and "``" not in first       # markdown, not reStructuredText
    assert kinds.count("code") >= 3 and kinds.count("markdown") >= 3
    # the code cells hold no leftover prose: the module docstring is one short paragraph
    docstring = notebook.cells[1].source.split('"""')[1]
    assert len(docstring.splitlines()) <= 4
    assert notebook.cells[-1].source == 'if __name__ == "__main__":\n    result = run_as_script(main)'
    # the script is the source: reading it back from the notebook gives the same cells
    again = jupytext.reads(jupytext.writes(notebook, fmt="py:percent"), fmt="py:percent")
    assert [cell.source for cell in again.cells] == [cell.source for cell in notebook.cells]


def test_one_notebook_runs_end_to_end(tmp_path):
    """`superpose examples layers --notebooks DIR`: executed in a fresh kernel, outputs and figure kept."""
    code, out, err = call("examples", "layers", "--notebooks", str(tmp_path))
    assert code == 0, err
    path = tmp_path / "inside_the_seven_layers.ipynb"
    assert f"wrote {path}" in out
    notebook = nbformat.read(path, as_version=4)
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert [o for o in outputs if o.output_type == "error"] == []
    printed = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    # two copy examples, one next digit, one to word; query 7 -> 7 : 8 : seven = 1/2 : 1/4 : 1/4
    assert "Readout at the query's ARROW: 7: 1/2, 8: 1/4, seven: 1/4" in printed
    assert "Layer 5 (tally mixture)" in printed
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 1                                                   # the figure, inline
    assert (tmp_path / "figures" / "inside_the_seven_layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # an existing notebook is refused without --force (before anything runs)
    code, _, err = call("examples", "layers", "--notebooks", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "exists; pass --force" in err


def test_without_the_notebook_extra_it_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nbclient", None)          # as if nbclient were not installed
    code, _, err = call("examples", "layers", "--notebooks", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "needs the notebook extra" in err
    assert not (tmp_path / "inside_the_seven_layers.ipynb").exists()
