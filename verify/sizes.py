"""The sizes of the built model for the README's task sets: ``python -m superpose.verify.sizes``.

Prints one Markdown row per task set: heads per attention layer, d_model, d_mlp and the
parameter count, each read off a real build (``superpose.build``).
"""

from __future__ import annotations

from superpose.demo import digit_tasks
from superpose.setting import Task, TaskSet


def readme_task_sets() -> list[tuple[str, TaskSet, int]]:
    """(description, task set, max_examples) for each row of the README's size table."""
    return [
        ("d = 4, s = 2, K = 2 (copy slot 0, next of slot 1)",
         TaskSet(4, 2, [Task("copy", 0, [0, 1, 2, 3]), Task("next", 1, [1, 2, 3, 0])]), 8),
        ("digit demo: d = 20, s = 1, K = 3 (all read slot 0)", digit_tasks(), 64),
        ("d = 8, s = 2, K = 4 (slots 0, 1, 0, 0)",
         TaskSet(8, 2, [Task("copy0", 0, list(range(8))), Task("shift1", 1, [(x + 3) % 8 for x in range(8)]),
                        Task("const", 0, [5] * 8), Task("copy0 again", 0, list(range(8)))]), 1023),
        ("d = 16, s = 1, K = 32 (all read slot 0)",
         TaskSet(16, 1, [Task(f"t{k}", 0, [(x + k) % 16 for x in range(16)]) for k in range(32)]), 4095),
        ("AB digits: d = 10, s = 2, K = 3 (A, B, A+B)",
         TaskSet(10, 2, [Task("A", 0, list(range(10))), Task("B", 1, list(range(10))),
                         Task("A+B", [0, 1], [[(a + b) % 10 for b in range(10)] for a in range(10)])]), 24),
    ]


def rows() -> list[str]:
    from superpose.construct.build import build

    lines = ["| task set | m_max | T_max | heads | d_model | d_mlp | parameters |", "|---|---|---|---|---|---|---|"]
    for name, tasks, m in readme_task_sets():
        model = build(tasks, max_examples=m)
        c = model.config
        lines.append(f"| {name} | {m} | {c.n_ctx} | {c.n_heads} | {c.d_model} | {c.d_mlp} | {model.n_params:,} |")
    return lines


if __name__ == "__main__":
    print("\n".join(rows()))
