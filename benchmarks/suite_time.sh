#!/usr/bin/env bash
# The test suite's time with an empty compilation cache (as CI runs it) for two revisions, run
# alternately in one clone so that both see the same machine (it is shared: its speed drifts by
# more than a change saves within the hour):
#
#   benchmarks/suite_time.sh CLONE REV_A REV_B [ROUNDS]     (default 2 rounds)
#
# CLONE is another clone of this repository whose .venv `make install` built: its editable install
# runs whatever revision is checked out there. The script checks out each revision in turn (the
# clone must have no local changes) and restores the clone's branch at the end. Per run it prints
# the 1-minute load average at the start, pytest's summary line, and wall-clock and CPU seconds.
# Each revision runs with its own settings: the PYTEST_ENV line of its Makefile (none when it has
# none), and gmpy2 installed in the venv only when its pyproject.toml lists it (pip installs or
# removes it before the run; sympy and mpmath use it whenever it is installed).
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 CLONE REV_A REV_B [ROUNDS]" >&2
  exit 2
fi
clone=$(cd "$1" 2>/dev/null && pwd) || { echo "$0: no directory $1" >&2; exit 2; }
a=$2
b=$3
rounds=${4:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
if [ "$clone" = "$here" ]; then
  echo "$0: CLONE must be another clone (this one runs the script, and checking out would change it)" >&2
  exit 2
fi
if [ ! -x "$clone/.venv/bin/python" ]; then
  echo "$0: $clone/.venv is missing: run make install there first" >&2
  exit 2
fi
cd "$clone"
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "$0: $clone has local changes" >&2
  exit 2
fi
start=$(git symbolic-ref -q --short HEAD || git rev-parse HEAD)
settings() {   # the checked-out revision's pytest environment; gmpy2 as its dependencies say
  if grep -q '"gmpy2' pyproject.toml; then
    .venv/bin/python -m pip install --quiet gmpy2 >/dev/null
  else
    .venv/bin/python -m pip uninstall --quiet --yes gmpy2 >/dev/null 2>&1 || true
  fi
  sed -n 's/^PYTEST_ENV := //p' Makefile
}
trap 'git checkout -q "$start" && settings >/dev/null' EXIT
for round in $(seq "$rounds"); do
  for rev in "$a" "$b"; do
    git checkout -q "$rev"
    pytest_env=$(settings)
    cache=$(mktemp -d)
    log=$(mktemp)
    load=$(cut -d' ' -f1 /proc/loadavg)
    # the Makefile's JAX_CACHE settings, with an empty cache directory: the first run of a fresh clone
    # shellcheck disable=SC2086   # pytest_env is a list of NAME=VALUE words
    /usr/bin/time -f "%e %U %S" -o "$log.time" env $pytest_env JAX_COMPILATION_CACHE_DIR="$cache" \
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_COMPILATION_CACHE_MAX_SIZE=268435456 \
      .venv/bin/python -m pytest -n auto --dist loadgroup -q -p no:cacheprovider > "$log" 2>&1 || true
    # the last line: GNU time puts "Command exited with non-zero status N" before it when tests fail
    read -r wall user sys < <(tail -n 1 "$log.time")
    cpu=$(python3 -c "print(round($user + $sys))")
    echo "round $round  $rev  load $load  $(tail -n 1 "$log")  wall ${wall} s  cpu ${cpu} s"
    rm -rf "$cache" "$log" "$log.time"
  done
done
