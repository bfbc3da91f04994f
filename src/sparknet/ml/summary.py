"""The training summary a fitted ``SparkNetModel`` carries, as Spark's models carry theirs.

Plain data: the loop's per-round records (train loss, validation metrics, seconds, bytes) plus
what early stopping decided. Saved beside the weights as JSON and read back with the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparknet.errors import require_package

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_FORMAT = "sparknet-summary/1"
# The record fields a summary keeps (the loop's metrics records hold these and more).
FIELDS = ("round", "tau", "samples", "train_loss", "train_accuracy", "val_loss",
          "val_accuracy", "round_seconds", "wall_seconds", "bytes_per_worker")
# The loop evaluates "test" data; in a fit those are the validation rows.
VALIDATION_NAMES = {"test_loss": "val_loss", "test_accuracy": "val_accuracy"}


def validation_record(record: dict[str, Any]) -> dict[str, Any]:
    """A loop record with its evaluation named as validation (``val_loss``,
    ``val_accuracy``), as the fit's summary, progress and MLflow records name it."""
    return {VALIDATION_NAMES.get(key, key): value for key, value in record.items()}


class SparkNetTrainingSummary:
    """Per-round history of one fit: ``objectiveHistory``, ``validationMetrics`` and more."""

    def __init__(self, rounds: list[dict[str, Any]], *, objective: str,
                 best_round: int | None = None, stopped_early: bool = False) -> None:
        # Summaries saved before val_* (test_*) read the same.
        renamed = [validation_record(record) for record in rounds]
        self.rounds: list[dict[str, Any]] = [{key: record.get(key) for key in FIELDS}
                                             for record in renamed]
        self.objective = objective
        self.bestRound = best_round
        self.stoppedEarly = stopped_early

    @property
    def totalIterations(self) -> int:
        """Rounds trained."""
        return len(self.rounds)

    @property
    def objectiveHistory(self) -> list[float]:
        """Mean training loss of each round (on the samples the workers stepped on)."""
        return [float(r["train_loss"]) for r in self.rounds]

    @property
    def validationMetrics(self) -> list[dict[str, Any]]:
        """``{"round", "loss", "accuracy"}`` of each evaluation on the validation rows."""
        return [{"round": r["round"], "loss": r["val_loss"], "accuracy": r["val_accuracy"]}
                for r in self.rounds if r["val_loss"] is not None]

    @property
    def roundSeconds(self) -> list[float]:
        return [float(r["round_seconds"]) for r in self.rounds]

    @property
    def bytesPerWorker(self) -> list[int]:
        """Bytes each worker sent back to the driver in each round."""
        return [int(r["bytes_per_worker"]) for r in self.rounds]

    def toPandas(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rounds, columns=list(FIELDS))

    def to_dict(self) -> dict[str, Any]:
        return {"format": SUMMARY_FORMAT, "objective": self.objective,
                "best_round": self.bestRound, "stopped_early": self.stoppedEarly,
                "rounds": self.rounds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SparkNetTrainingSummary:
        return cls(list(data["rounds"]), objective=str(data.get("objective", "multiclass")),
                   best_round=data.get("best_round"),
                   stopped_early=bool(data.get("stopped_early", False)))

    def plot(self, path: str | Path) -> Path:
        """Loss (train and validation) and validation accuracy against rounds, as a PNG."""
        require_package("matplotlib", extra="plot", needed_for="plotting the training summary")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        evaluated = self.validationMetrics
        accuracies = [m for m in evaluated if m["accuracy"] is not None]
        fig, axes = plt.subplots(1, 2 if accuracies else 1, figsize=(10 if accuracies else 5, 4),
                                 constrained_layout=True, squeeze=False)
        loss_axis = axes[0, 0]
        loss_axis.plot([r["round"] for r in self.rounds], self.objectiveHistory, label="train")
        if evaluated:
            loss_axis.plot([m["round"] for m in evaluated], [m["loss"] for m in evaluated],
                           marker="o", label="validation")
        if self.bestRound is not None:
            loss_axis.axvline(self.bestRound, color="grey", linestyle=":", label="best round")
        loss_axis.set_xlabel("round")
        loss_axis.set_ylabel(f"loss ({self.objective})")
        loss_axis.legend()
        if accuracies:
            axes[0, 1].plot([m["round"] for m in accuracies],
                            [100 * m["accuracy"] for m in accuracies], marker="o")
            axes[0, 1].set_xlabel("round")
            axes[0, 1].set_ylabel("validation accuracy (%)")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, dpi=100)
        plt.close(fig)
        return target
