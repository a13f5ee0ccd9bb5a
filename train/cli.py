"""``superpose train`` and ``superpose evaluate-mixtures``."""

from __future__ import annotations

import json
import os
import time

from superpose.commands import require_extra
from superpose.files import atomic_write, check_outputs, make_directory
from superpose.setting import load_json_file

from .trainer import CHECKPOINT_FILES, TrainConfig, TrainConfigError, load_checkpoint, train

TRAIN_OUTPUTS = (*CHECKPOINT_FILES, "metrics.json")
EVALUATE_OUTPUTS = ("mixtures.json", "calibration.png")
EMERGENCE_OUTPUTS = ("emergence.json", "calibration.png", "coverage.png", "kl_size.png")
GENERATION_OUTPUTS = ("generation.json", "generation.png")


def _checkpoint_inputs(directory: str) -> list[str]:
    return [os.path.join(directory, name) for name in CHECKPOINT_FILES]

OVERRIDABLE = ("steps", "seed", "data_seed", "d_model", "n_layers", "n_heads", "batch_size", "learning_rate",
               "n_examples", "eval_every", "checkpoint_every")


def _config(args) -> TrainConfig:
    data = load_json_file(args.config, "--config") if args.config else {}
    if not isinstance(data, dict):
        raise TrainConfigError(f"--config: {args.config} must hold a JSON object of TrainConfig fields")
    for name in OVERRIDABLE:
        value = getattr(args, name)
        if value is not None:
            data[name] = value
    return TrainConfig.from_dict(data)


def _cmd_train(args) -> int:
    from tqdm import tqdm

    config = _config(args)
    config.validate()
    inputs = [args.config] if args.config else []
    if args.resume and args.continue_run:
        raise TrainConfigError("--resume and --continue: give one of them")
    if args.continue_run:   # finished: nothing to do; a checkpoint: resume it; nothing: start
        if os.path.exists(os.path.join(args.out, "checkpoint.json")):
            done = load_checkpoint(args.out)
            if done.config != config:
                raise TrainConfigError(f"{args.out}: holds a run of a different config; pick another --out "
                                       "or --force to replace it")
            if done.step >= config.steps and os.path.exists(os.path.join(args.out, "metrics.json")):
                print(f"{args.out}: finished ({done.step} steps), skipped")
                return 0
            args.resume = True
    # a new run refuses to replace an earlier run's files; --resume continues (and rewrites) them
    check_outputs(args.out, TRAIN_OUTPUTS, force=args.force or args.resume, inputs=inputs)
    bar = tqdm(total=config.steps, desc=os.path.basename(os.path.normpath(args.out)), unit="step",
               disable=args.quiet)
    start_step = load_checkpoint(args.out).step if args.resume else 0
    bar.update(start_step)

    def progress(step, stats):
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in stats.items()})

    started = time.perf_counter()
    result = train(config, args.out, resume=args.resume, progress=progress)
    bar.close()
    final = result.final
    summary = {"config": config.__dict__, "seconds_this_run": time.perf_counter() - started,
               "resumed_from_step": start_step, "final": final, "cpu_count": os.cpu_count()}
    with atomic_write(os.path.join(args.out, "metrics.json"), force=True, inputs=inputs) as tmp, \
            open(tmp, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"step {result.step}: eval loss {final.get('eval_loss', float('nan')):.4f}, in-context accuracy "
          f"(after {config.n_examples} examples) {final.get('accuracy_last', float('nan')):.3f}; "
          f"wrote {args.out}/checkpoint.* and metrics.json")
    return 0


def _cmd_evaluate(args) -> int:
    from .mixtures import constructed_probabilities, evaluate_mixtures, plot_calibration, trained_probabilities

    inputs = [p for path in args.checkpoint for p in _checkpoint_inputs(path)]
    # refuse existing outputs before any work: the family (from checkpoint.json) names them
    emergence = _family_of(args.checkpoint[0]) == "positions"
    check_outputs(args.out, EMERGENCE_OUTPUTS if emergence else EVALUATE_OUTPUTS, force=args.force, inputs=inputs)
    require_extra("matplotlib", "plot", "evaluate-mixtures")
    runs = [load_checkpoint(path) for path in args.checkpoint]
    tasks = runs[0].config.tasks
    for path, run in zip(args.checkpoint, runs):
        if run.config.tasks != tasks or run.config.n_examples != runs[0].config.n_examples:
            raise TrainConfigError(f"{path}: trained on a different task family than {args.checkpoint[0]}")
    subsets = _subsets(args.subsets, tasks)
    if args.prompts_per_point is not None and args.prompts_per_point < 1:
        raise TrainConfigError(f"--prompts-per-point: must be >= 1, got {args.prompts_per_point}")
    if runs[0].config.family == "positions":
        return _evaluate_emergence(args, runs, subsets, inputs)
    # the query takes the place of a training prompt's last example, so every position of an
    # evaluation prompt is one the trained models were trained on (learned position embeddings)
    m = runs[0].config.n_examples - 1
    models = {}
    for path, run in zip(args.checkpoint, runs):
        c = run.config
        models[f"trained d{c.d_model} L{c.n_layers} ({os.path.basename(os.path.normpath(path))})"] = \
            trained_probabilities(c, run.params)
    models["constructed (7 layers)"] = constructed_probabilities(tasks, m)
    per_point = args.prompts_per_point or 8
    results = evaluate_mixtures(tasks, models, m, subsets, per_point, args.seed)
    make_directory(args.out)
    with atomic_write(os.path.join(args.out, "mixtures.json"), force=args.force, inputs=inputs) as tmp, \
            open(tmp, "w") as f:
        json.dump({"n_examples": m, "prompts_per_point": per_point, "results": results}, f, indent=1)
    plot_calibration(results, os.path.join(args.out, "calibration.png"), force=args.force, inputs=inputs)
    print(f"{'model':44s} {'tasks':>6s} {'slope':>6s} {'R^2':>6s} {'KL':>7s} {'off-task':>8s}")
    for name, by_subset in results.items():
        for subset, cal in by_subset.items():
            print(f"{name:44s} {subset:>6s} {cal['slope']:6.3f} {cal['r2']:6.3f} {cal['kl']:7.4f} "
                  f"{cal['off_task_mass']:8.4f}")
    print(f"wrote {args.out}/mixtures.json and calibration.png")
    return 0


def _family_of(checkpoint: str) -> str | None:
    """The task family recorded in a checkpoint's ``checkpoint.json`` (``None`` if unreadable:
    ``load_checkpoint`` then reports why)."""
    try:
        with open(os.path.join(checkpoint, "checkpoint.json")) as f:
            return json.load(f)["config"].get("family", "retrieval")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _subsets(texts, tasks) -> list[tuple[int, ...]]:
    subsets = []
    for text in texts:
        try:
            s = tuple(int(k) for k in text.split(","))
        except ValueError:
            raise TrainConfigError(f"--subsets: {text!r} is not a comma-separated list of task indices") from None
        if len(set(s)) != len(s) or not all(0 <= k < tasks.K for k in s):
            raise TrainConfigError(f"--subsets: {text!r} must be distinct task indices in 0..{tasks.K - 1}")
        subsets.append(s)
    return subsets


def _evaluate_emergence(args, runs, subsets, inputs) -> int:
    """The emergence experiment's evaluation (``train.emergence``) of runs of the positions family."""
    from .emergence import evaluate_runs, plot_report, report_table, run_table

    for name in ("coverage_prompts", "constructed_prompts_per_point"):
        if getattr(args, name) < 0 or (name == "coverage_prompts" and getattr(args, name) < 1):
            raise TrainConfigError(f"--{name.replace('_', '-')}: out of range, got {getattr(args, name)}")
    names = [os.path.basename(os.path.normpath(path)) for path in args.checkpoint]
    if len(set(names)) != len(names):
        raise TrainConfigError(f"--checkpoint: run directories need distinct names, got {names}")
    started = time.perf_counter()
    report = evaluate_runs(dict(zip(names, runs)), subsets, args.prompts_per_point or 100, args.coverage_prompts,
                           args.constructed_prompts_per_point, args.seed,
                           progress=lambda name: print(f"evaluating {name}", flush=True))
    report["checkpoints"] = [os.path.normpath(p) for p in args.checkpoint]
    report["seconds"] = round(time.perf_counter() - started, 1)
    make_directory(args.out)
    with atomic_write(os.path.join(args.out, "emergence.json"), force=args.force, inputs=inputs) as tmp, \
            open(tmp, "w") as f:
        json.dump(report, f, indent=1, allow_nan=False)
    plot_report(report, {k: os.path.join(args.out, f"{k}.png") for k in ("calibration", "coverage", "kl_size")},
                force=args.force, inputs=inputs)
    print(report_table(report))
    print()
    print(run_table(report))
    print(f"wrote {args.out}/emergence.json, calibration.png, coverage.png and kl_size.png")
    return 0


def _cmd_evaluate_generation(args) -> int:
    from superpose.verify.generation import GenerationError

    from .generation import evaluate_checkpoint, plot_generation

    inputs = _checkpoint_inputs(args.checkpoint)
    check_outputs(args.out, GENERATION_OUTPUTS, force=args.force, inputs=inputs)
    require_extra("matplotlib", "plot", "evaluate-generation")
    if args.prompts_per_point < 1:
        raise TrainConfigError(f"--prompts-per-point: must be >= 1, got {args.prompts_per_point}")
    if not 0 <= args.threshold < 1:
        raise GenerationError(f"--threshold: must lie in [0, 1), got {args.threshold}")
    run = load_checkpoint(args.checkpoint)
    tasks = run.config.tasks
    if tasks.answer_length < 2:
        raise TrainConfigError(f"{args.checkpoint}: trained on one-token answers (family {run.config.family!r}); "
                               "evaluate-generation needs a family with answers of several tokens (\"pairs\" or \"words\")")
    subsets = []
    for text in args.subsets:
        try:
            s = tuple(sorted(int(k) for k in text.split(",")))
        except ValueError:
            raise TrainConfigError(f"--subsets: {text!r} is not a comma-separated list of task indices") from None
        if len(set(s)) != len(s) or not all(0 <= k < tasks.K for k in s):
            raise TrainConfigError(f"--subsets: {text!r} must be distinct task indices in 0..{tasks.K - 1}")
        subsets.append(s)
    report = {"checkpoint": os.path.normpath(args.checkpoint),
              **evaluate_checkpoint(run, subsets, args.prompts_per_point, args.seed, args.threshold, args.constructed)}
    results = report["results"]
    make_directory(args.out)
    with atomic_write(os.path.join(args.out, "generation.json"), force=args.force, inputs=inputs) as tmp, \
            open(tmp, "w") as f:
        json.dump(report, f, indent=1, allow_nan=False)
    plot_generation(results, os.path.join(args.out, "generation.png"), force=args.force, inputs=inputs)
    print(generation_table(results))
    print(f"wrote {args.out}/generation.json and generation.png")
    return 0


def generation_table(results: dict) -> str:
    """The README's table: one row per model and task subset."""
    lines = ["| model | tasks | first-token KL | answer slope / R² | sequence KL | collapse rate | chimera mass "
             "(mixed / absent task) | greedy coverage | 1-sample coverage | beam-2 coverage | "
             "superposed coverage / KL / passes |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def num(x, digits=3):   # (a rounding error below zero is shown as 0)
        return "—" if x is None else f"{max(x, 0.0) if x > -1e-9 else x:.{digits}f}"

    for name, by_subset in results.items():
        for summary in by_subset.values():
            dec = summary["decoders"]
            sup = dec["superposed"]
            sup_kl = num(sup["kl"]) + (f" ({sup['kl_infinite']:.0%} inf)" if sup["kl_infinite"] else "")
            lines.append(
                f"| {name} | {' + '.join(summary['tasks'])} | {num(summary['first_token_kl'])} | "
                f"{num(summary['sequence_slope'], 2)} / {num(summary['sequence_r2'], 2)} | "
                f"{num(summary['sequence_kl'])} | {num(summary['collapse_rate'])} | "
                f"{num(summary['chimera_mass'])} ({num(summary['mixed_chimera_mass'])} / "
                f"{num(summary['absent_task_mass'])}) | "
                f"{num(dec['greedy']['coverage'], 2)} | {num(dec['sample']['coverage'], 2)} | "
                f"{num(dec['beam 2']['coverage'], 2)} | {num(sup['coverage'], 2)} / {sup_kl} / "
                f"{num(sup['forward_passes'], 1)} |")
    return "\n".join(lines)


def register(subparsers) -> None:
    t = subparsers.add_parser("train", help="train a small transformer on single-task prompts")
    t.add_argument("--config", help="JSON file of TrainConfig fields (flags override it)")
    t.add_argument("--out", required=True, help="checkpoint directory")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    t.add_argument("--force", action="store_true",
                   help="start afresh even if --out holds an earlier run's checkpoint (it is replaced)")
    t.add_argument("--continue", dest="continue_run", action="store_true",
                   help="resume the run in --out if it holds one of this config, skip it if it is finished, "
                        "else start (for resumable experiment scripts)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    helps = {"seed": "seed of the initial weights, and of the prompts unless --data-seed is given",
             "data_seed": "seed of the training batches and the evaluation prompts (default: --seed)"}
    for name in OVERRIDABLE:
        kind = float if name == "learning_rate" else int
        t.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None, help=helps.get(name))
    t.set_defaults(func=_cmd_train)

    e = subparsers.add_parser("evaluate-mixtures",
                              help="calibration of trained checkpoints, the constructed model and (positions "
                                   "family) the Bayes-optimal predictors on mixed prompts")
    e.add_argument("--checkpoint", nargs="+", required=True, help="checkpoint directories from `superpose train`")
    e.add_argument("--out", required=True, help="directory for mixtures.json and calibration.png")
    e.add_argument("--force", action="store_true", help="overwrite mixtures.json and calibration.png")
    e.add_argument("--subsets", nargs="+", default=["0,1", "0,1,2"], help="task subsets, e.g. 0,1 0,1,2")
    e.add_argument("--prompts-per-point", type=int, default=None,
                   help="prompts per split of the examples (default 8; 100 for the positions family)")
    e.add_argument("--coverage-prompts", type=int, default=100,
                   help="positions family: prompts per K' for the coverage r/K' (default 100)")
    e.add_argument("--constructed-prompts-per-point", type=int, default=5,
                   help="positions family: prompts per point the constructed model runs on (0: skip it)")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=_cmd_evaluate)

    g = subparsers.add_parser("evaluate-generation",
                              help="generation collapse of a checkpoint trained on answers of several tokens, "
                                   "against the analytic rules")
    g.add_argument("--checkpoint", required=True, help="checkpoint directory from `superpose train` "
                                                       "(a family with answers of several tokens)")
    g.add_argument("--out", required=True, help="directory for generation.json and generation.png")
    g.add_argument("--force", action="store_true", help="overwrite generation.json and generation.png")
    g.add_argument("--subsets", nargs="+", default=["0,2", "0,1", "0,1,2"],
                   help="task subsets mixed in the prompts (default: 0,2 0,1 0,1,2; for the pairs family AB + BA, "
                        "AB + AC, all three)")
    g.add_argument("--prompts-per-point", type=int, default=4, help="prompts per split of the examples (default 4)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threshold", type=float, default=0.001, help="the superposed decoder's threshold")
    g.add_argument("--constructed", action="store_true",
                   help="also run the constructed model (needs build to support answers of several tokens)")
    g.set_defaults(func=_cmd_evaluate_generation)

