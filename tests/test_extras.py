"""The command line without the optional extras: the core subcommands work, the others say which
extra to install (exit 2, one line). Each case runs in a fresh interpreter in which importing
matplotlib, torch, transformer_lens or safetensors raises ImportError."""

import json
import subprocess
import sys

import pytest

from conftest import PROMPT, TASKS, write_input

EXTRAS = ("matplotlib", "torch", "transformer_lens", "safetensors")

# A meta-path finder ahead of all others refuses the extras (and their submodules), then the CLI runs.
BLOCKED = f"""
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS!r}:
            raise ImportError(f"blocked for the test: {{name}}")
        return None
sys.meta_path.insert(0, Blocked())
from superpose.cli import main
sys.exit(main(sys.argv[1:]))
"""


def blocked_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKED, *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def test_the_blocker_blocks():
    proc = subprocess.run([sys.executable, "-c", BLOCKED.replace("from superpose.cli import main",
                                                                 "import matplotlib")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "blocked for the test: matplotlib" in proc.stderr


def test_core_subcommands_work_without_the_extras(tmp_path):
    tasks, prompt = write_input(tmp_path, "t.json", TASKS), write_input(tmp_path, "p.json", PROMPT)
    demo = blocked_cli("demo", "--json")
    assert demo.returncode == 0, demo.stderr
    assert json.loads(demo.stdout)["status"] == "within_bound"
    run = blocked_cli("run", tasks, prompt, "--json", "--dtype", "float64")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["status"] == "within_bound"
    weights = tmp_path / "m.npz"
    built = blocked_cli("build", tasks, "-o", weights, "--max-examples", "3")
    assert built.returncode == 0 and built.stdout.startswith(f"wrote {weights}"), built.stderr
    layers = blocked_cli("layers", tasks, "--max-examples", "3")
    assert layers.returncode == 0 and "Layer 7:" in layers.stdout, layers.stderr
    prove = blocked_cli("prove", "--only", "G1")
    assert prove.returncode == 0 and "G1" in prove.stdout, prove.stderr


@pytest.mark.parametrize("args,extra", [
    (["examples", "digits", "--small", "--out", "{tmp}"], "plot"),
    (["plot", "{tmp}/sweep.jsonl", "-o", "{tmp}/figures"], "plot"),
    (["export", "{tasks}", "-o", "{tmp}/m.safetensors", "--max-examples", "3"], "export"),
    (["export", "{tasks}", "-o", "{tmp}/m.safetensors", "--max-examples", "3", "--check-transformer-lens", "1"],
     "lens"),
])
def test_subcommands_that_need_an_extra_name_it(tmp_path, args, extra):
    tasks = write_input(tmp_path, "t.json", TASKS)
    (tmp_path / "sweep.jsonl").write_text("")
    proc = blocked_cli(*[a.format(tmp=tmp_path, tasks=tasks) for a in args])
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pip install 'superpose[{extra}]'" in lines[0], proc.stderr
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "figures").exists()
