"""Tools for testing sparknet on a real Spark cluster: a standalone cluster and fault injection.

Importable by executors (the fault-injecting models live here), never imported by the library.
"""
