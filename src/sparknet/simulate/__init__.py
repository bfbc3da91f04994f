"""K virtual SparkNet workers in one process, and the time model of SparkNet's speedup study."""

from sparknet.engine.aggregate import tree_combine
from sparknet.simulate.speedup import first_reaching, modelled_seconds, speedup, time_to_target
from sparknet.simulate.virtual import SimulationResult, simulate

__all__ = ["SimulationResult", "first_reaching", "modelled_seconds", "simulate", "speedup",
           "time_to_target", "tree_combine"]
