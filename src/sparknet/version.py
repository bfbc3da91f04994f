"""The package version, in a module of its own so nothing inside sparknet imports the root.

pyproject.toml reads it from here (``[tool.setuptools.dynamic]``).
"""

__version__ = "0.1.0"
