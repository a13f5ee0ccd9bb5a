"""The command line without the optional extras: the core subcommands work, the others say which
extra to install (exit 2, one line). The commands run in a fresh interpreter in which importing
matplotlib, torch, transformer_lens or safetensors raises ImportError."""

import json
import subprocess
import sys

from conftest import PROMPT, TASKS, write_input

EXTRAS = ("matplotlib", "torch", "transformer_lens", "safetensors")

# A meta-path finder ahead of all others refuses the extras (and their submodules); then each
# command line given (a JSON list of argument lists) runs through superpose.cli.main, and
# [exit code, stdout, stderr] of each is printed as one JSON list.
BLOCKED = f"""
import contextlib, io, json, sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS!r}:
            raise ImportError(f"blocked for the test: {{name}}")
        return None
sys.meta_path.insert(0, Blocked())
from superpose.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def blocked_cli(*commands: list) -> list[tuple[int, str, str]]:
    proc = subprocess.run([sys.executable, "-c", BLOCKED, json.dumps([[str(a) for a in c] for c in commands])],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return [tuple(r) for r in json.loads(proc.stdout)]


def test_the_blocker_blocks():
    proc = subprocess.run([sys.executable, "-c", BLOCKED.replace("from superpose.cli import main",
                                                                 "import matplotlib")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "blocked for the test: matplotlib" in proc.stderr


def test_core_subcommands_work_without_the_extras(tmp_path):
    tasks, prompt = write_input(tmp_path, "t.json", TASKS), write_input(tmp_path, "p.json", PROMPT)
    weights = tmp_path / "m.npz"
    demo, run, built, layers, prove = blocked_cli(
        ["demo", "--json"], ["run", tasks, prompt, "--json", "--dtype", "float64"],
        ["build", tasks, "-o", weights, "--max-examples", "3"], ["layers", tasks, "--max-examples", "3"],
        ["prove", "--only", "G1"])
    for code, out, err in (demo, run):
        assert code == 0 and json.loads(out)["status"] == "within_bound", err
    assert built[0] == 0 and built[1].startswith(f"wrote {weights}") and weights.stat().st_size > 0, built[2]
    assert layers[0] == 0 and "Layer 7:" in layers[1], layers[2]
    assert prove[0] == 0 and "G1" in prove[1], prove[2]


def test_subcommands_that_need_an_extra_name_it(tmp_path):
    tasks = write_input(tmp_path, "t.json", TASKS)
    (tmp_path / "sweep.jsonl").write_text("")
    export = ["export", tasks, "-o", tmp_path / "m.safetensors", "--max-examples", "3"]
    cases = [("plot", ["examples", "digits", "--small", "--out", tmp_path / "figures"]),
             ("plot", ["plot", tmp_path / "sweep.jsonl", "-o", tmp_path / "figures"]),
             ("export", export),
             ("lens", [*export, "--check-transformer-lens", "1"]),
             ("lens", ["export-trained", "train/results/generation", "-o", tmp_path / "t.safetensors"]),
             ("lens", ["llm-eval", "--model", "train/results/generation", "-o", tmp_path / "r.jsonl"])]
    for (extra, argv), (code, out, err) in zip(cases, blocked_cli(*[argv for _, argv in cases])):
        lines = err.strip().splitlines()
        assert code == 2 and out == "" and len(lines) == 1, (argv, err)
        assert f"pip install 'superpose[{extra}]'" in lines[0], (argv, err)
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "t.safetensors").exists() and not (tmp_path / "r.jsonl").exists() and not (tmp_path / "figures").exists()
