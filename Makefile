# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and
# install the package (editable) with its test dependencies first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test examples prove emergence clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,plot]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/superpose demo

test: $(STAMP)
	$(BIN)/python -m pytest

prove: $(STAMP)
	$(BIN)/superpose prove

examples: $(STAMP)
	$(BIN)/superpose examples

# The emergence experiment (issue 6): three model sizes, then calibration on mixed prompts.
emergence: $(STAMP)
	for size in small default large; do \
	  $(BIN)/superpose train --config train/configs/$$size.json --out train/results/$$size || exit 1; \
	done
	$(BIN)/superpose evaluate-mixtures --checkpoint train/results/small train/results/default \
	  train/results/large --out train/results

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
