"""Per-round metrics: JSON lines on disk and a PNG plot against rounds and wall-clock time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparknet.errors import DataError, require_package
from sparknet.weights_dir import open_new, replace_link


class MetricsLog:
    """Appends one JSON object per round to ``metrics.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []

    def load_existing(self, *, up_to_round: int) -> None:
        """Keeps the records of rounds already done (on resume) and rewrites the file."""
        self.records = [r for r in read_records(self.path) if r["round"] <= up_to_round]
        self.path.unlink(missing_ok=True)  # a link is replaced, never written through
        with open_new(self.path) as handle:
            handle.write("".join(json.dumps(r) + "\n" for r in self.records))

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        try:
            with open_new(self.path, append=True) as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as exc:
            # Disk full or a size limit: a line cut short is dropped on resume.
            raise DataError(f"cannot append round {record.get('round')} to {self.path} "
                            f"({exc.strerror or exc}): free space there, then --resume") from None


def read_records(path: Path) -> list[dict[str, Any]]:
    """The whole per-round records in ``path``, in order.

    A line that is not a whole record (a write cut short by a kill, an edit) is dropped: the
    checkpoint, not the log, says which rounds are done.
    """
    records: list[dict[str, Any]] = []
    if not Path(path).is_file():
        return records
    for line in Path(path).read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
            if isinstance(record, dict) and isinstance(record["round"], int):
                records.append(record)
        except (ValueError, KeyError):
            continue
    return records


def plot_metrics(records: list[dict[str, Any]], path: Path, *, title: str = "sparknet") -> None:
    """Test accuracy and loss against wall-clock time and against rounds."""
    require_package("matplotlib", extra="plot", needed_for="plotting metrics")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evaluated = [r for r in records if r.get("test_accuracy") is not None]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for col, (x_key, x_label) in enumerate((("wall_seconds", "wall-clock time (s)"),
                                            ("round", "round"))):
        xs = [r[x_key] for r in evaluated]
        axes[0, col].plot(xs, [100 * r["test_accuracy"] for r in evaluated], marker="o")
        axes[0, col].set_ylabel("test accuracy (%)")
        axes[1, col].plot(xs, [r["test_loss"] for r in evaluated], marker="o", label="test")
        axes[1, col].plot([r[x_key] for r in records], [r["train_loss"] for r in records],
                          alpha=0.6, label="train")
        axes[1, col].set_ylabel("loss")
        axes[1, col].legend()
        for row in range(2):
            axes[row, col].set_xlabel(x_label)
            axes[row, col].grid(alpha=0.3)
    fig.suptitle(title)
    replace_link(Path(path))
    fig.savefig(path, dpi=100)
    plt.close(fig)
