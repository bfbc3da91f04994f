"""Objectives as pure functions: each loss is its textbook definition, scores are laid out as
the ML stage reads them, and a user's loss factory is imported once."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from sparknet.errors import ConfigError
from sparknet.models.objectives import BUILTIN, objective_named, resolve_objective

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
    assert int(objective_named("multiclass").correct(Z, Z.argmax(1))) == 6  # type: ignore[arg-type]
    assert int(objective_named("multilabel").correct(Z, (Z > 0).float())) == 6  # type: ignore[arg-type]
    assert objective_named("mse").correct(Z, T) is None


def test_score_rows_lay_out_raw_probability_and_prediction() -> None:
    z = np.array([[2.0], [-1.0]])
    binary = objective_named("binary").score_rows(z)
    widths = objective_named("binary").score_widths(1)
    assert binary.shape == (2, widths.total) == (2, 5)
    np.testing.assert_allclose(binary[:, :2], [[-2, 2], [1, -1]])
    np.testing.assert_allclose(binary[:, 3], 1 / (1 + np.exp(-z[:, 0])))
    np.testing.assert_allclose(binary[:, 2] + binary[:, 3], 1.0)
    assert binary[:, 4].tolist() == [1.0, 0.0]
    regression = objective_named("huber").score_rows(np.array([[1.5, -2.0]]))
    assert regression.tolist() == [[1.5, -2.0]] and objective_named("huber").score_widths(2) \
        .vector_prediction
    multiclass = objective_named("multiclass").score_rows(np.array([[1000.0, 0.0, 999.0]]))
    assert np.isfinite(multiclass).all() and multiclass[0, -1] == 0.0


def test_unknown_objectives_are_one_line() -> None:
    with pytest.raises(ConfigError, match=r"objective='softmax' is invalid"):
        resolve_objective("softmax")
    with pytest.raises(ConfigError, match=r"has no callable 'nope' for loss factory"):
        resolve_objective("sparknet_testing.nets:nope")


@pytest.mark.parametrize("name", [*BUILTIN, "sparknet_testing.nets:mse_loss"])
def test_objectives_are_plain_data_and_serve_what_they_score(name: str) -> None:
    objective = resolve_objective(name)
    assert pickle.loads(pickle.dumps(objective)) == objective
    outputs = 1 if name == "binary" else 3
    z = torch.randn(5, outputs)
    rows = objective.score_rows(z.numpy())
    widths = objective.score_widths(outputs)
    assert rows.shape == (5, widths.total)
    served = objective.serving(z).numpy()
    # The ONNX graph's probability is the scored probability (class 1's for binary), or the
    # prediction for regression.
    if widths.probability == 0:
        expected = rows[:, :widths.prediction]
    else:
        expected = rows[:, widths.raw: widths.raw + widths.probability][:, -served.shape[1]:]
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-7)


def test_a_name_read_back_imports_no_loss_factory() -> None:
    objective = objective_named("no_such_module:loss")  # e.g. from a saved model's metadata
    assert objective.name == "no_such_module:loss" and not objective.is_classifier
    with pytest.raises(ConfigError, match=r"cannot import module 'no_such_module'"):
        resolve_objective("no_such_module:loss")
