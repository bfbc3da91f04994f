"""Differential fuzzing of every solver type and lr_policy sparknet accepts against real
Caffe: the parameters after each of a few iterations of a small net."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparknet.caffe import parse_solver_text
from sparknet.errors import SparknetError
from tests.caffe.oracle_cases import (
    Arrays,
    NetCase,
    SolverCase,
    compare_solver,
    run_sparknet_solver,
)

from .conftest import case_rng, record, setting
from .oracle import run_oracle
from .solver_generators import LR_POLICIES, SOLVER_TYPES, solver_case

pytestmark = pytest.mark.caffe_oracle


@pytest.mark.parametrize("solver_type", SOLVER_TYPES)
def test_solver_matches_caffe(solver_type: str, oracle_ready: None, tmp_path: Path) -> None:
    count = setting("SPARKNET_ORACLE_SOLVER_CASES", 2)
    cases: list[NetCase | SolverCase] = []
    for policy in LR_POLICIES:
        for i in range(count):
            case = solver_case(case_rng("solver", solver_type, policy, i), solver_type, policy)
            case.name = f"{solver_type.lower()}_{policy}_{i:03d}"
            cases.append(case)
    caffe = run_oracle(cases, tmp_path)
    problems: list[str] = []
    mismatched: list[tuple[NetCase | SolverCase, Arrays, list[str]]] = []
    per_policy = dict.fromkeys(LR_POLICIES, 0)
    bad_policy = dict.fromkeys(LR_POLICIES, 0)
    both_refused = 0
    for case in cases:
        assert isinstance(case, SolverCase)
        result = caffe[case.name]
        try:
            parse_solver_text(case.solver, source=case.name)
            refusal = None
        except SparknetError as err:
            refusal = str(err)
        if isinstance(result, str):
            if refusal is not None:
                both_refused += 1
            else:
                problems.append(f"{case.name}: sparknet runs it but {result} [{case.note}]")
            continue
        per_policy[case.lr_policy] += 1
        if refusal is not None:
            found = [f"sparknet refuses it: {refusal}"]
        else:
            try:
                found = compare_solver(run_sparknet_solver(case), result)
            except (SparknetError, RuntimeError) as err:  # accepted, but fails when run
                found = [f"sparknet fails: {err}"]
        if found:
            bad_policy[case.lr_policy] += 1
            mismatched.append((case, result, found))
            problems += [f"{case.name}: {p} [{case.note}]" for p in found[:3]]
    record({"kind": "solver", "type": solver_type, "generated": len(cases),
            "compared": sum(per_policy.values()), "per_policy": per_policy,
            "both_refused": both_refused,
            "mismatched_per_policy": bad_policy,
            "mismatched": len({p.split(":")[0] for p in problems})}, mismatched)
    assert not problems, "\n".join(problems)
