"""Schemathesis against the committed openapi.json: requests generated from the contract, valid
and invalid, sent to the real gateway. Each answer must be one the contract allows (its status
documented, its body matching the schema), every error a problem document whose code has that
status, and none a 5xx. The examples are bounded and derandomized, so CI runs the same cases."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from reliability.report import Report
from sam2_contract.errors import CATALOG, ErrorCode
from schemathesis import GenerationMode
from support import GatewayServer, bearer

OPENAPI = Path(__file__).parents[2] / "openapi.json"
EXAMPLES = 25  # per operation and generation mode


def test_requests_generated_from_the_contract_get_contract_answers(
    target: GatewayServer, report: Report
) -> None:
    schema = schemathesis.openapi.from_path(OPENAPI)
    statuses: Counter[int] = Counter()
    cases = 0
    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            cases += _fuzz(result.ok(), mode, target, statuses)
    assert cases >= 100
    assert all(status < 500 for status in statuses), statuses
    seen = ", ".join(f"{status} x{count}" for status, count in sorted(statuses.items()))
    report.add(
        "schemathesis on openapi.json",
        f"{cases} generated requests (valid and invalid, {EXAMPLES} per operation and mode)",
        f"{seen}; every answer as documented, no 5xx",
    )


def _fuzz(
    operation: Any, mode: GenerationMode, target: GatewayServer, statuses: Counter[int]
) -> int:
    """Send EXAMPLES requests generated for one operation; how many were sent."""
    sent = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        answer = case.call(base_url=target.url, headers=bearer(target.key), timeout=60)
        statuses[answer.status_code] += 1
        _check(operation, answer)

    try:
        run()
    except Unsatisfiable:
        assert mode == GenerationMode.NEGATIVE, operation.path  # nothing to get wrong (no input)
    return sent


def _check(operation: Any, answer: Any) -> None:
    """An answer the contract allows: documented status, problem documents for errors."""
    status = answer.status_code
    where = f"{operation.method.upper()} {operation.path} -> {status}: {answer.text}"
    assert status < 500, where
    assert str(status) in operation.definition.raw["responses"], where
    if status >= 400:
        assert answer.headers["content-type"][0].startswith("application/problem+json"), where
        assert CATALOG[ErrorCode(answer.json()["code"])].status == status, where
        assert "Traceback" not in answer.text, where
    else:
        operation.validate_response(answer)
