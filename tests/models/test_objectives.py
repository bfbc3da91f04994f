"""Objectives as pure functions: each loss is its textbook definition, scores are laid out as
the ML stage reads them, and a user's loss factory is imported once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparknet.errors import ConfigError
from sparknet.models.objectives import Objective, resolve_objective, score_rows, score_widths

torch.manual_seed(0)
Z = torch.randn(6, 3)
T = torch.randn(6, 3)
B = (torch.rand(6, 3) > 0.5).float()


@pytest.mark.parametrize(("name", "targets", "expected"), [
    ("multiclass", torch.tensor([0, 1, 2, 0, 1, 2]),
     -torch.log_softmax(Z, 1)[torch.arange(6), torch.tensor([0, 1, 2, 0, 1, 2])].mean()),
    ("multilabel", B, -(B * torch.log(torch.sigmoid(Z)) +
                        (1 - B) * torch.log(1 - torch.sigmoid(Z))).mean()),
    ("mse", T, ((Z - T) ** 2).mean()),
    ("l1", T, (Z - T).abs().mean()),
    ("huber", T, torch.where((Z - T).abs() < 1, 0.5 * (Z - T) ** 2,
                             (Z - T).abs() - 0.5).mean()),
    ("sparknet_testing.nets:mse_loss", T, ((Z - T) ** 2).mean()),
])
def test_each_loss_is_its_definition(name: str, targets: torch.Tensor,
                                     expected: torch.Tensor) -> None:
    got = resolve_objective(name).loss(Z, targets)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_correct_counts_only_for_classifiers() -> None:
    assert int(Objective("multiclass").correct(Z, Z.argmax(1))) == 6  # type: ignore[arg-type]
    assert int(Objective("multilabel").correct(Z, (Z > 0).float())) == 6  # type: ignore[arg-type]
    assert Objective("mse").correct(Z, T) is None


def test_score_rows_lay_out_raw_probability_and_prediction() -> None:
    z = np.array([[2.0], [-1.0]])
    binary = score_rows(Objective("binary"), z)
    widths = score_widths(Objective("binary"), 1)
    assert binary.shape == (2, widths.total) == (2, 5)
    np.testing.assert_allclose(binary[:, :2], [[-2, 2], [1, -1]])
    np.testing.assert_allclose(binary[:, 3], 1 / (1 + np.exp(-z[:, 0])))
    np.testing.assert_allclose(binary[:, 2] + binary[:, 3], 1.0)
    assert binary[:, 4].tolist() == [1.0, 0.0]
    regression = score_rows(Objective("huber"), np.array([[1.5, -2.0]]))
    assert regression.tolist() == [[1.5, -2.0]] and score_widths(Objective("huber"), 2) \
        .vector_prediction
    multiclass = score_rows(Objective("multiclass"), np.array([[1000.0, 0.0, 999.0]]))
    assert np.isfinite(multiclass).all() and multiclass[0, -1] == 0.0


def test_unknown_objectives_are_one_line() -> None:
    with pytest.raises(ConfigError, match=r"objective='softmax' is unknown"):
        resolve_objective("softmax")
    with pytest.raises(ConfigError, match=r"has no callable 'nope' for loss factory"):
        resolve_objective("sparknet_testing.nets:nope")
