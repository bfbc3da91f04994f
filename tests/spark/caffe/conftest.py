"""The real LeNet solver and net from the shared Caffe folder (tests skip without it)."""

from __future__ import annotations

from pathlib import Path

import pytest

BVLC = Path(__file__).resolve().parents[4] / "shared" / "caffe" / "models" / "bvlc_prototxt"


@pytest.fixture(scope="session")
def lenet_files() -> tuple[Path, Path]:
    """(solver, train_test net) of Caffe's examples/mnist LeNet."""
    solver = BVLC / "examples__mnist__lenet_solver.prototxt"
    net = BVLC / "examples__mnist__lenet_train_test.prototxt"
    if not (solver.is_file() and net.is_file()):
        pytest.skip(f"the shared Caffe models are not at {BVLC} (../shared/caffe)")
    return solver, net


@pytest.fixture()
def solver_copy(tmp_path: Path, lenet_files: tuple[Path, Path]) -> Path:
    """The LeNet solver with its net path pointing at the real train_test file."""
    solver, net = lenet_files
    text = solver.read_text().replace('"examples/mnist/lenet_train_test.prototxt"', f'"{net}"')
    path = tmp_path / "lenet_solver.prototxt"
    path.write_text(text)
    return path
