#!/usr/bin/env bash
# One-time set-up on a fresh machine: checks prerequisites, installs the Fashion-MNIST
# Debian package when missing, creates .venv and installs sparknet with its dev tools.
# Safe to run again: every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "sparknet setup: $*" >&2; exit 1; }

PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || die "Python 3.11+ is required: install python3.11 and re-run (or set PYTHON=/path/to/python3.11)."
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python 3.11+ is required, found $("$PY" --version 2>&1). Set PYTHON=/path/to/python3.11."

command -v java >/dev/null || die "Java 17+ is required by Spark: install openjdk-17-jre-headless (apt-get install openjdk-17-jre-headless)."
java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
[ "${java_major:-0}" -ge 17 ] || die "Java 17+ is required by Spark, found Java ${java_major:-unknown}. Install openjdk-17-jre-headless and put it first on PATH."

FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  echo "sparknet setup: installing Debian package dataset-fashion-mnist"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get install -y dataset-fashion-mnist >/dev/null 2>&1 \
    || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y dataset-fashion-mnist >/dev/null; } \
    || die "could not install dataset-fashion-mnist; install it by hand or pass --data-dir to a folder with the four IDX .gz files."
fi

stamp=.venv/.sparknet-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi
