"""`superpose sweep` and `superpose plot`: records, the summary, loud violations, sharding, figures, calibration."""

import json
import math
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import superpose.cli
from superpose import Task, TaskSet, build, d_model_formula, predict
from superpose.verify.analytic import consistent_tasks
from superpose.verify.calibration import calibration_kl
from superpose.verify.sampling import allocate, mixture_shares, random_task_set, sample_prompt

# Six configurations sharing two compiled shapes: prompt lengths 6, 9, 15 (buckets 8 and 16), two sharpnesses.
SMALL = ["--vocab", "4", "--tasks", "2", "--slots", "1", "--examples", "1,2,4", "--sharpness", "10,50",
         "--dtype", "float64", "--ambiguous", "0.25", "--noise", "0.2", "--prompts", "2", "--no-progress"]


@pytest.fixture(autouse=True)
def verify_commands(monkeypatch):
    monkeypatch.setattr(superpose.cli, "COMMAND_MODULES", ("superpose.verify.cli",))


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("sweep") / "small.jsonl")
    import superpose.cli as cli

    saved = cli.COMMAND_MODULES
    cli.COMMAND_MODULES = ("superpose.verify.cli",)
    try:
        code = cli.main(["sweep", "-o", path, *SMALL])
    finally:
        cli.COMMAND_MODULES = saved
    return code, path, sorted(read_jsonl(path), key=lambda r: r["index"])


# ---------------------------------------------------------------------------------------------
# The pieces the sweep is made of.

def test_calibration_kl_by_hand():
    half = [0.5, 0.5]
    assert calibration_kl(half, [0, 1], [0.5, 0.5, 0.0]) == 0.0
    # KL((1/2, 1/2) || (1/4, 3/4)) = 1/2 ln 2 + 1/2 ln(2/3)
    by_hand = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    assert calibration_kl(half, [0, 1], [0.25, 0.75]) == pytest.approx(by_hand, rel=1e-15)
    # mass on other tokens is not renormalised away: P = (1), Q = 1/2 -> ln 2
    assert calibration_kl([1.0], [2], [0.25, 0.25, 0.5]) == pytest.approx(math.log(2), rel=1e-15)
    # two tasks answering 1 are pooled: P = {1: 1/2, 2: 1/2} against Q = {1: 1/2, 2: 1/2}
    assert calibration_kl([0.25, 0.25, 0.5], [1, 1, 2], [0.0, 0.5, 0.5]) == 0.0
    # a task with share 0 contributes nothing even where the model puts no mass
    assert calibration_kl([1.0, 0.0], [0, 1], [1.0, 0.0]) == 0.0
    assert calibration_kl([0.5, 0.5], [0, 1], [1.0, 0.0]) == math.inf


def test_sampled_prompts_have_the_requested_mixture_ambiguity_and_noise():
    # three tasks on one slot; every (x, y) kind exists for every task
    tasks = TaskSet(6, 2, [Task("id", 0, [0, 1, 2, 3, 4, 5]), Task("rev", 0, [5, 4, 2, 3, 1, 0]),
                           Task("sh", 1, [1, 2, 3, 4, 5, 0])])
    rng = np.random.default_rng(3)
    for shares in ([0.5, 0.3, 0.2], [1.0, 0.0, 0.0], mixture_shares("dirichlet", 3, rng)):
        sample = sample_prompt(rng, tasks, 40, np.asarray(shares), ambiguous_share=0.25, noise_share=0.2)
        fits = [consistent_tasks(tasks, e) for e in sample.prompt.examples]
        assert len(fits) == 40
        assert sum(not f for f in fits) == 8                      # 20% noise
        assert sum(len(f) >= 2 for f in fits) == 8                # 25% of the 32 task examples
        assert list(sample.task_counts) == allocate(32, np.asarray(shares))
        assert sum(sample.task_counts) == 32
        assert sample.example_shares == pytest.approx([c / 32 for c in sample.task_counts])


def test_allocate_is_proportional_and_exact():
    assert allocate(10, np.array([0.5, 0.3, 0.2])) == [5, 3, 2]
    assert allocate(7, np.array([1, 1, 1])) == [3, 2, 2]
    assert allocate(0, np.array([0.2, 0.8])) == [0, 0]


# ---------------------------------------------------------------------------------------------
# The command.

def test_small_sweep_records_every_configuration_within_its_bound(small_sweep, capsys):
    code, path, records = small_sweep
    assert code == 0
    assert len(records) == 6 and [r["index"] for r in records] == list(range(6))
    for r in records:
        c = r["config"]
        assert r["prompt_length"] == (c["n_examples"] + 1) * (c["slots"] + 2)
        assert r["bound_holds"] and not r["violated"]
        assert 0.0 <= r["max_abs_error"] <= r["bound"] and r["error_over_bound"] <= 1.0
        if c["sharpness"] == 50:
            assert r["max_abs_error"] <= 1e-12 and r["calibration"]["kl_vote_shares_max"] <= 1e-12
        assert r["d_model"] == d_model_formula(4, r["slots_read"], c["n_tasks"], r["prompt_length"])
        assert 1 <= r["slots_read"] <= min(c["slots"], c["n_tasks"])
        assert set(r["seconds"]) == {"build", "run", "check", "total"} and r["devices"] == 1


def test_a_record_matches_an_independent_recomputation(small_sweep):
    """Rebuild one configuration's prompts from its seed and run them through the plain executor."""
    _, _, records = small_sweep
    r = max(records, key=lambda r: r["prompt_length"])
    c = r["config"]
    rng = np.random.default_rng(c["seed"])
    tasks = random_task_set(rng, c["vocab_size"], c["n_tasks"], c["slots"])
    prompts = [sample_prompt(rng, tasks, c["n_examples"], mixture_shares(c["mixture"], c["n_tasks"], rng),
                             c["ambiguous_share"], c["noise_share"]).prompt for _ in range(c["n_prompts"])]
    model = build(tasks, max_examples=c["n_examples"], sharpness=c["sharpness"])
    outputs = model.run(prompts, dtype="float64")
    error = max(float(np.abs(out - predict(tasks, p)).max()) for out, p in zip(outputs, prompts))
    assert abs(r["max_abs_error"] - error) <= 1e-15
    assert r["bound"] == model.error_bound("float64", prompt_length=r["prompt_length"]).total
    assert r["n_params"] == model.n_params


def test_the_summary_table_is_printed_and_the_progress_bar_counts_configurations(tmp_path, capsys):
    path = str(tmp_path / "s.jsonl")
    assert superpose.cli.main(["sweep", "-o", path, "--vocab", "3", "--tasks", "2", "--slots", "1",
                               "--examples", "2", "--dtype", "float32,float64", "--ambiguous", "0",
                               "--noise", "0", "--prompts", "1", "--progress"]) == 0
    out, err = capsys.readouterr()
    assert "sweep: 100%" in err and "2/2" in err and "100%" not in out   # tqdm, on stderr
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["dtype", "sharpness", "configs"]
    rows = [line.split() for line in lines[2:4]]
    assert [row[0] for row in rows] == ["float32", "float64"]
    # one configuration each, its bound holds, no violations
    assert all(row[2] == "1" and row[3] == "1" and row[-1] == "0" for row in rows)
    assert "2 configurations -> " in out and "1 device(s)" in out


def test_a_broken_model_is_reported_loudly_and_exits_1(tmp_path, capsys):
    path = str(tmp_path / "broken.jsonl")
    code = superpose.cli.main(["sweep", "-o", path, "--vocab", "4", "--tasks", "2", "--slots", "1",
                               "--examples", "4", "--dtype", "float64", "--prompts", "2", "--ambiguous", "0",
                               "--noise", "0", "--perturb", "1e-3", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert "BOUND VIOLATED in 1 of 1 configurations" in captured.err
    (record,) = read_jsonl(path)
    assert record["violated"] and record["max_abs_error"] > record["bound"]


def test_the_chunked_executor_gives_the_same_records(tmp_path, small_sweep):
    _, _, standard = small_sweep
    path = str(tmp_path / "chunked.jsonl")
    assert superpose.cli.main(["sweep", "-o", path, *SMALL, "--executor", "chunked", "--block", "4"]) == 0
    for a, b in zip(sorted(read_jsonl(path), key=lambda r: r["index"]), standard):
        assert a["executor"] == "chunked" and a["config"] == b["config"] and a["bound"] == b["bound"]
        assert abs(a["max_abs_error"] - b["max_abs_error"]) <= 1e-15 and not a["violated"]
        assert np.abs(np.asarray(a["calibration"]["points"]) - np.asarray(b["calibration"]["points"])).max() <= 1e-15


BAD = [
    (["--vocab", "four"], r"--vocab: expected comma-separated int values"),
    (["--ambiguous", "1.5"], r"ambiguous_share: must lie in \[0, 1\]"),
    (["--dtype", "float16"], r"dtype: must be one of"),
    (["--mixture", "zipf"], r"mixture: must be one of"),
    (["--preset", "nope"], r"--preset: unknown preset 'nope'"),
    (["--preset", "smoke", "--vocab", "4"], r"--preset: cannot be combined"),
    (["--random", "0"], r"--random: needs a count >= 1"),
    (["--devices", "9"], r"--devices: must lie in 1\.\.1"),
    (["--executor", "chunked", "--block", "48"], r"--block: must be a power of two"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[b[1][:24] for b in BAD])
def test_bad_sweep_options_exit_2_with_one_line(tmp_path, capsys, extra, message):
    code = superpose.cli.main(["sweep", "-o", str(tmp_path / "x.jsonl"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert __import__("re").search(message, err[0]), err[0]


# ---------------------------------------------------------------------------------------------
# Sharding: four forced host devices give the same results as one.

SHARDED = textwrap.dedent("""
    import os, sys
    import jax, numpy as np
    import superpose.cli as cli
    from superpose.verify.batched import Item, ShardedRunner, padded_shape
    from superpose.verify.sampling import random_task_set
    from superpose import build, model as executor
    out, devices = sys.argv[1], int(sys.argv[2])
    assert jax.device_count() == devices and jax.default_backend() == "cpu", jax.devices()
    cli.COMMAND_MODULES = ("superpose.verify.cli",)
    code = cli.main(["sweep", "-o", out + ".jsonl", *sys.argv[3:]])
    items, plain = [], []
    for seed in range(5):   # five models: padded to eight, two per device, on four devices
        tasks = random_task_set(np.random.default_rng(seed), 4, 2, 1)
        model = build(tasks, max_examples=3)
        shape = padded_shape(model.config)
        tokens = np.random.default_rng(seed).integers(0, 6, (2, shape.n_ctx)).astype(np.int32)
        items.append(Item(executor.pad_params(model.params, model.config, shape), tokens))
        plain.append(executor.run_tokens(model, tokens, dtype="float64", shape=shape))
    np.save(out + "-standard.npy", ShardedRunner().run(shape, "float64", items)[0])
    np.save(out + "-chunked.npy", ShardedRunner(executor="chunked", block=4).run(shape, "float64", items)[0])
    np.save(out + "-plain.npy", np.stack(plain))
    sys.exit(code)
""")


def test_sharding_over_four_host_devices_gives_the_unsharded_results(tmp_path):
    """The same sweep and the same stacked models on 4 forced host devices and on 1
    (both CPU, in subprocesses: XLA_FLAGS must be set before JAX starts)."""
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED)
    runs = {}
    for devices in (4, 1):
        env = {**os.environ, "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        out = str(tmp_path / f"devices{devices}")
        runs[devices] = (out, subprocess.Popen([sys.executable, str(script), out, str(devices), *SMALL], env=env,
                                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for devices, (out, proc) in runs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        assert f"{devices} device(s) (cpu)" in stdout
    (four, _), (one, _) = runs[4], runs[1]
    sharded = sorted(read_jsonl(four + ".jsonl"), key=lambda r: r["index"])
    unsharded = sorted(read_jsonl(one + ".jsonl"), key=lambda r: r["index"])
    assert [r["devices"] for r in sharded] == [4] * 6 and [r["devices"] for r in unsharded] == [1] * 6
    strip = lambda r: {k: v for k, v in r.items() if k not in ("seconds", "devices")}  # noqa: E731
    assert [strip(r) for r in sharded] == [strip(r) for r in unsharded]
    assert all(not r["violated"] and r["max_abs_error"] <= r["bound"] for r in sharded)

    for executor in ("standard", "chunked"):
        assert np.array_equal(np.load(f"{four}-{executor}.npy"), np.load(f"{one}-{executor}.npy")), executor
    stacked = np.load(f"{four}-standard.npy")
    plain = np.load(f"{one}-plain.npy")   # superpose.model.run_tokens, one model at a time
    assert np.abs(stacked[..., : plain.shape[-1]] - plain).max() <= 1e-15
    assert np.abs(np.load(f"{four}-chunked.npy") - stacked).max() <= 1e-14


# ---------------------------------------------------------------------------------------------
# Figures.

def test_plot_writes_png_and_svg_of_every_figure(tmp_path, small_sweep, capsys):
    _, path, _ = small_sweep
    out = tmp_path / "figs"
    assert superpose.cli.main(["plot", path, "-o", str(out)]) == 0
    names = ["error_vs_sharpness", "error_vs_length", "d_model_vs_length", "calibration"]
    for name in names:
        png, svg = out / f"{name}.png", out / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert ET.parse(svg).getroot().tag.endswith("svg")
    assert capsys.readouterr().out.count("wrote ") == 8


def test_the_calibration_figure_plots_each_answer_at_its_share(small_sweep):
    from superpose.verify.plots import calibration

    _, _, records = small_sweep
    fig = calibration(records)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    (clean_label,) = [k for k in lines if k.startswith("no ambiguous")]
    clean = [r for r in records if not r["realized"]["ambiguous"] and r["bound"] <= 1e-2]
    expected = [p for r in clean for p in r["calibration"]["points"]]
    x, y = lines[clean_label].get_data()
    assert len(x) == len(expected) > 0
    assert np.array_equal(x, [p[0] for p in expected]) and np.array_equal(y, [p[2] for p in expected])
    # calibrated: each probability lies within its configuration's error (<= bound) of the diagonal
    tolerance = [r["max_abs_error"] for r in clean for _ in r["calibration"]["points"]]
    assert np.all(np.abs(np.asarray(x) - np.asarray(y)) <= np.asarray(tolerance))
    assert any(r["config"]["sharpness"] == 50 for r in clean)


def test_plot_rejects_a_file_that_is_not_a_sweep(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "superpose-sweep/1"}\nnot json\n')
    assert superpose.cli.main(["plot", str(bad), "-o", str(tmp_path)]) == 2
    assert "line 2 is not valid JSON" in capsys.readouterr().err
    assert superpose.cli.main(["plot", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path)]) == 2
    assert "file not found" in capsys.readouterr().err
