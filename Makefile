# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and
# install the package (editable) with its test dependencies first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# torch for the TransformerLens check, CPU build. On the reference machines
# `pip install torch==2.13.0` takes a local CPU wheel; elsewhere use
# make test TORCH_INDEX=https://download.pytorch.org/whl/cpu (an unpinned torch pulls CUDA, GBs).
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: install demo test examples notebooks explain explain-figure prove emergence emergence-s8 emergence-offsets generation figures bench user-fuzz sweep-scale clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[test,plot,lens,notebook]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/superpose demo

# One pytest-xdist worker per core; tests/conftest.py groups tests by file (a module's fixtures run
# once) and puts every Hypothesis test with the compile-count test on one worker. XLA compiling is
# about a third of the suite's CPU time: JAX's persistent compilation cache (keyed by the program, the
# compile options and the jax/jaxlib versions) keeps every compiled program in $(VENV)/jax-cache, so a
# second run (and every subprocess a test starts) loads them instead; at most 256 MiB, least recently
# used evicted first; `make clean` removes it.
JAX_CACHE := JAX_COMPILATION_CACHE_DIR=$(abspath $(VENV))/jax-cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 \
             JAX_COMPILATION_CACHE_MAX_SIZE=268435456
# The two pytest plugins the suite uses, named, and no others: pytest assertion-rewrites the whole
# distribution of every plugin that setuptools registers (73 Hypothesis modules, compiled again in every
# process when Python writes no bytecode), and the others in the venv (anyio, jaxtyping, typeguard,
# platformdirs) are unused. Collecting takes a worker 3.9 s instead of 5.4 s.
PYTEST_ENV := PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 PYTEST_PLUGINS=xdist.plugin,_hypothesis_pytestplugin
test: $(STAMP)
	$(JAX_CACHE) $(PYTEST_ENV) $(BIN)/python -m pytest -n auto --dist loadgroup --durations=10

prove: $(STAMP)
	$(BIN)/superpose prove

examples: $(STAMP)
	$(BIN)/superpose examples --out examples/figures

# Every example as an executed notebook (jupytext + nbclient), figures beside them; build/ is not committed.
notebooks: $(STAMP)
	mkdir -p build/notebooks
	$(BIN)/superpose examples --notebooks build/notebooks --force

# The explain page for the demo (open build/explain/demo.html in a browser)
explain: $(STAMP)
	mkdir -p build/explain
	$(BIN)/superpose explain -o build/explain/demo.html --force

# The README's screenshots of the explain page, taken by the browser test (needs chromium)
explain-figure: $(STAMP)
	SUPERPOSE_REQUIRE_BROWSER=1 SUPERPOSE_EXPLAIN_SCREENSHOTS=docs/figures \
	  $(BIN)/python -m pytest tests/test_explain_browser.py -q -k screenshots

# The emergence experiment (issue 12): character retrieval (retrieve position i), three training arms
# (conclusive, weak evidence, mixed control), 3 seeds, then mixed prompts against the Bayes-optimal
# predictor of each arm and the constructed model. `emergence` trains the 4-position grid on the CPU
# and evaluates it and the committed 8-position runs; `emergence-s8` trains the 8-position grid (three
# sizes of the conclusive arm; a GPU-scale budget, see the README). Resumable: finished runs are
# skipped, interrupted ones resume from their checkpoints.
EMERGENCE_SEEDS := 0 1 2
# the 8-position runs whose weights are committed (the grid's seeds 1 and 2 keep their histories only)
S8_WEIGHTS = $(patsubst %/,%,$(dir $(wildcard train/results/emergence/s8/*/checkpoint.msgpack)))
emergence: $(STAMP)
	for seed in $(EMERGENCE_SEEDS); do for arm in conclusive weak mixed; do \
	  $(BIN)/superpose train --config train/configs/emergence/s4-$$arm.json --seed $$seed \
	    --out train/results/emergence/s4/s4-$$arm-seed$$seed --continue || exit 1; \
	done; done
	$(BIN)/superpose evaluate-mixtures --checkpoint train/results/emergence/s4/s4-*-seed* \
	  --out train/results/emergence/s4 --force
	$(BIN)/superpose evaluate-mixtures --checkpoint $(S8_WEIGHTS) --out train/results/emergence/s8 --force

emergence-s8: $(STAMP)
	for seed in $(EMERGENCE_SEEDS); do for run in conclusive weak mixed conclusive-small conclusive-large; do \
	  $(BIN)/superpose train --config train/configs/emergence/s8-$$run.json --seed $$seed \
	    --out train/results/emergence/s8/s8-$$run-seed$$seed --continue || exit 1; \
	done; done

# The emergence grid with the learned example-offset position embedding (TrainConfig.example_positions):
# 4 positions, three arms, 3 seeds of 9,000 steps, evaluated on mixed prompts; plus the conclusive
# arm's 3,000-step runs, which mostly stayed on the plateau (README, Emergence), the conclusive arm at
# two more sizes (d32 L2 and d96 L4, 9,000 steps); single runs that tried to get the arms and sizes
# that stayed on the plateau to learn (the mixed arm at d96 L4; a learning rate of 3e-3 for the
# conclusive arm's seed 1 and the mixed arm's seed 0; the mixed arm for 18,000 steps), four conclusive
# runs whose prompts come from another seed than their initial weights (data_seed: the configs
# ...-data<k>, run with --seed <init>), seeds 3 and 4 of the conclusive arm at all three sizes and of the
# weak arm, the mixed arm with peaked proportions (Dirichlet 0.05, seeds 0, 2, 4), and 8-position runs
# with the offsets (d64 L3 seeds 0-8, d96 L4 seeds 0-2, and 18,000 steps at d64 L3 for seeds 0, 2, 4;
# several were trained on a GPU, see the README), evaluated with the other 8-position runs by
# `emergence`. Resumable as above.
OFFSET_SINGLE_RUNS := s4-offsets/s4-offsets-mixed-long-large:0 s4-offsets/s4-offsets-conclusive-long-lr3:1 \
                      s4-offsets/s4-offsets-mixed-long-lr3:0 s4-offsets/s4-offsets-mixed-longer:0 \
                      s4-offsets/s4-offsets-conclusive-long-data0:1 s4-offsets/s4-offsets-conclusive-long-data1:0 \
                      s4-offsets/s4-offsets-conclusive-long-data2:1 s4-offsets/s4-offsets-conclusive-long-data1:2 \
                      s4-offsets/s4-offsets-conclusive-long:3 s4-offsets/s4-offsets-conclusive-long:4 \
                      s4-offsets/s4-offsets-weak-long:3 s4-offsets/s4-offsets-weak-long:4 \
                      s4-offsets/s4-offsets-conclusive-long-large:3 s4-offsets/s4-offsets-conclusive-long-large:4 \
                      s4-offsets/s4-offsets-conclusive-long-small:3 s4-offsets/s4-offsets-conclusive-long-small:4 \
                      s4-offsets/s4-offsets-mixed-long-peaked:0 s4-offsets/s4-offsets-mixed-long-peaked:2 \
                      s4-offsets/s4-offsets-mixed-long-peaked:4 \
                      $(foreach seed,0 1 2 3 4 5 6 7 8,s8/s8-offsets-conclusive-long:$(seed)) \
                      $(foreach seed,0 1 2,s8/s8-offsets-conclusive-long-large:$(seed)) \
                      $(foreach seed,0 2 4,s8/s8-offsets-conclusive-longer:$(seed))
emergence-offsets: $(STAMP)
	for seed in $(EMERGENCE_SEEDS); do for run in conclusive-long weak-long mixed-long conclusive \
	    conclusive-long-small conclusive-long-large; do \
	  $(BIN)/superpose train --config train/configs/emergence/s4-offsets-$$run.json --seed $$seed \
	    --out train/results/emergence/s4-offsets/s4-offsets-$$run-seed$$seed --continue || exit 1; \
	done; done
	for item in $(OFFSET_SINGLE_RUNS); do run=$${item%:*}; seed=$${item#*:}; \
	  $(BIN)/superpose train --config train/configs/emergence/$${run#*/}.json --seed $$seed \
	    --out train/results/emergence/$$run-seed$$seed --continue || exit 1; \
	done
	$(BIN)/superpose evaluate-mixtures --checkpoint train/results/emergence/s4-offsets/s4-offsets-*-seed* \
	  --out train/results/emergence/s4-offsets --force

# Generation collapse in a trained transformer (issue 13): two-token answers, then decoders and collapse
# on mixed prompts against the analytic rules.
generation: $(STAMP)
	$(BIN)/superpose train --config train/configs/generation.json --out train/results/generation --force
	$(BIN)/superpose evaluate-generation --checkpoint train/results/generation --out train/results/generation --force

# README figures and benchmark (issue 4)
figures: $(STAMP)
	$(BIN)/superpose sweep --preset figures -o docs/figures/sweep.jsonl --no-progress --force
	$(BIN)/superpose plot docs/figures/sweep.jsonl -o docs/figures --format png --force

# The benchmark program is benchmarks/bench.py (superpose bench runs it from this checkout)
# The committed results are refreshed on purpose (--force); the printed table goes to a .part file
# that replaces bench-cpu.txt only when the benchmark succeeded (never a half-written table).
bench: $(STAMP)
	bash -o pipefail -c '$(BIN)/superpose bench -o benchmarks/bench-cpu.json --force | tee benchmarks/.bench-cpu.txt.part'
	mv benchmarks/.bench-cpu.txt.part benchmarks/bench-cpu.txt

# A user's 1,000-example fuzz test written from the README's recipe, timed (issue 11)
user-fuzz: $(STAMP)
	$(BIN)/python benchmarks/user_fuzz.py -o benchmarks/user-fuzz.json --force

# Fuzzing at scale (issue 11): the scale sweep preset, 100,368 random prompts; records in build/,
# summary and a 100-record sample in benchmarks/
sweep-scale: $(STAMP)
	$(BIN)/python benchmarks/sweep_scale.py --records build/sweep-scale.jsonl -o benchmarks/sweep-scale.json --force

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
