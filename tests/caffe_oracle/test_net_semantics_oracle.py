"""The net-level semantics cases (tests/caffe/net_semantics_cases.py) against real Caffe:
every blob after the forward pass and every input and parameter gradient. With
SPARKNET_NET_REFERENCES=DIR, Caffe's results are also written there as reference cases
(what tests/data/caffe_net_semantics holds for the default suite)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.caffe.net_semantics_cases import net_semantics_cases
from tests.caffe.oracle_cases import compare_net, run_sparknet_net, save_case

from .conftest import record
from .oracle import run_oracle

pytestmark = pytest.mark.caffe_oracle


def test_net_semantics_match_caffe(oracle_ready: None, tmp_path: Path) -> None:
    cases = net_semantics_cases()
    caffe = run_oracle(list(cases), tmp_path)
    problems = []
    for case in cases:
        result = caffe[case.name]
        assert not isinstance(result, str), f"{case.name}: {result}"
        problems += [f"{case.name}: {p}" for p in compare_net(case, run_sparknet_net(case),
                                                              result)]
        folder = os.environ.get("SPARKNET_NET_REFERENCES")
        if folder:
            save_case(case, result, Path(folder), found="reference: real Caffe's results")
    record({"kind": "net", "type": "net semantics", "generated": len(cases),
            "forward": len(cases), "backward": sum(c.backward for c in cases),
            "both_refused": 0, "mismatched": len({p.split(":")[0] for p in problems})}, [])
    assert not problems, "\n".join(problems)
