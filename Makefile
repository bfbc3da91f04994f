# The two commands a fresh machine needs: `make demo` (train LeNet on Fashion-MNIST with K=2
# on local[2]) and `make test` (the default test suite). Both do the whole set-up first.
.PHONY: setup demo test test-all lint bench

setup:
	@bash scripts/bootstrap.sh

demo: setup
	.venv/bin/sparknet train --config configs/demo.toml

test: setup
	.venv/bin/python -m pytest -q -m "not slow and not gpu and not caffe_oracle"

test-all: setup
	.venv/bin/python -m pytest -q -m "not gpu"

lint: setup
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/mypy

bench: setup
	.venv/bin/python benchmarks/throughput.py
