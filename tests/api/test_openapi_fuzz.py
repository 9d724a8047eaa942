"""Property-based fuzzing of the real server against its own OpenAPI document (schemathesis): no 5xx,
every status documented, every response body valid against its schema, and every request the schema
forbids refused with a 4xx (negative cases). Deterministic and bounded:
25 examples per operation, derandomized; the number of cases is printed at the end of the run."""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.settings import ApiSettings
from tests.api.conftest import FUZZ_CASES, Api

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 25


# The document is the app's own, built without starting it (create_app loads nothing); the cases are
# sent to the session's running server. (schemathesis.pytest.from_fixture needs pytest < 9.)
schema = schemathesis.openapi.from_dict(create_app(ApiSettings()).openapi())
# Valid and invalid requests: what the schema forbids (a string for `k`, `"stream": "yes"`, unknown
# fields) must be refused with a 4xx, never served as if it were valid.
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
# A body over MESHRAG_MAX_BODY_BYTES is refused before it is parsed: 413 is a rejection too.
schema.config.checks.negative_data_rejection.expected_statuses.append("413")


@schema.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_api_conforms_to_its_openapi(case: schemathesis.Case, api: Api):
    label = f"{case.operation.method.upper()} {case.operation.path}"  # the documented operation
    FUZZ_CASES[label] = FUZZ_CASES.get(label, 0) + 1
    case.call_and_validate(
        base_url=api.url,
        headers={"Authorization": f"Bearer {api.keys['ana']}"},
        timeout=120,
        checks=[
            schemathesis.checks.not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            negative_data_rejection,
        ],
    )
