"""The OpenAPI document of the HTTP/JSON API: regenerated from the protos it equals the
committed docs/openapi.json and the copy the gateway serves; it describes exactly the
routes the gateway builds from the same annotations, and it is self-consistent."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from recsys import openapi
from recsys.api.gateway.v1 import gateway_pb2
from recsys.http_rules import service_bindings

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "openapi.json"
SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"]


def committed() -> dict:
    return json.loads(DOCS.read_text())


def test_regenerated_from_the_protos_it_equals_the_committed_and_served_copies(tmp_path):
    # protoc runs in a process of its own, as run_codegen.py does for --check (in this
    # process, beside the loaded stacks, grpc_tools' protoc has crashed)
    script = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
        "import run_codegen; run_codegen.generate(Path(sys.argv[2])); "
        "print(run_codegen.PACKAGED_OPENAPI)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(REPO / "protos"), str(tmp_path / "api")],
        capture_output=True,
        text=True,
        check=True,
    )
    packaged = result.stdout.strip().splitlines()[-1]
    fresh = (tmp_path / "api" / packaged).read_text()
    assert fresh == DOCS.read_text(), "stale docs/openapi.json: run python protos/run_codegen.py"
    assert openapi.served_document().decode() == fresh


def test_it_describes_exactly_the_gateways_routes():
    document = committed()
    described = {
        (verb.upper(), path)
        for path, operations in document["paths"].items()
        for verb in operations
    }
    assert described == {(b.verb, b.path) for b in service_bindings(SERVICE)}
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_parameters_follow_the_http_rules():
    document = committed()
    bindings = {(b.verb.lower(), b.path): b for b in service_bindings(SERVICE)}
    for path, operations in document["paths"].items():
        variables = re.findall(r"\{(\w+)\}", path)
        for verb, operation in operations.items():
            binding = bindings[(verb, path)]
            parameters = [p for p in operation["parameters"] if "$ref" not in p]
            in_path = [p["name"] for p in parameters if p["in"] == "path"]
            in_query = [p["name"] for p in parameters if p["in"] == "query"]
            assert in_path == variables == list(binding.path_fields)
            if binding.body == "*":
                assert "requestBody" in operation and not in_query
                body = operation["requestBody"]["content"]["application/json"]["schema"]
                assert not set(variables) & set(body.get("properties", {}))
            else:  # every other scalar field of the request, by its JSON name
                request = SERVICE.methods_by_name[binding.rpc].input_type
                scalars = [
                    f.json_name
                    for f in request.fields
                    if f.name not in binding.path_fields and f.message_type is None
                ]
                assert "requestBody" not in operation and in_query == scalars
            assert {"200", "default"} == set(operation["responses"])


def test_schemas_use_the_proto3_json_mapping_and_every_ref_resolves():
    document = committed()
    assert document["openapi"].startswith("3.")
    assert openapi.dangling_refs(document) == []
    schemas = document["components"]["schemas"]
    rating = schemas["Rating"]["properties"]
    assert rating["movieId"]["type"] == "string" and rating["movieId"]["format"] == "int64"
    assert rating["rating"] == {**rating["rating"], "type": "number", "format": "float"}
    assert schemas["RankBy"]["enum"][0] == "RANK_BY_UNSPECIFIED"
    assert "At most one of `userId`, `inlineRatings`." in schemas["RecommendRequest"]["description"]
    # descriptions come from the proto comments
    assert "1 to 1000" in schemas["RecommendRequest"]["properties"]["k"]["description"]
    for message in SERVICE.methods_by_name["Recommend"].output_type.fields:
        assert message.json_name in schemas["RecommendResponse"]["properties"]
