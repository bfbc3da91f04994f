"""Tools for testing sparknet on a real Spark cluster: a standalone cluster and fault injection.

Importable by executors (the fault-injecting models live here), never imported by the library.
A top-level package beside ``sparknet`` and left out of its wheel: users never import it. A
development install (``pip install -e '.[dev]'``, as scripts/bootstrap.sh does) puts ``src/``
on every interpreter's path, Spark's Python workers included, so tests, benchmarks and
scripts import it from the checkout.
"""
