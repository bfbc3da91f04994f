"""The placements of shards on Spark; see ``sparknet.data.placement``."""
