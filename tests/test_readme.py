"""The README's tables of the construction are the ones the code produces."""

from pathlib import Path

from superpose.construct.build import LAYER_SPECS, build
from superpose.construct.spec import markdown_table
from superpose.verify.sizes import readme_task_sets

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_the_seven_layer_table_is_the_one_the_specs_print():
    assert markdown_table(LAYER_SPECS) in README


def test_the_size_table_states_the_sizes_of_real_builds():
    for name, tasks, m in readme_task_sets():
        row = next(line for line in README.splitlines() if line.startswith(f"| {name} |"))
        model = build(tasks, max_examples=m)
        cells = [c.strip() for c in row.strip("|").split("|")]
        now = [c.split("→")[-1].strip() for c in cells[3:]]
        assert cells[1:3] == [str(m), str(model.config.n_ctx)], row
        assert now == [str(model.config.n_heads), str(model.config.d_model), f"{model.n_params:,}"], row
