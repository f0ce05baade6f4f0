"""The OpenAPI 3 document of the gateway's HTTP/JSON API, generated from the protos: paths
from the `google.api.http` options (read by recsys.http_rules, as the gateway's routes
are), schemas from the messages by the proto3 JSON mapping (lowerCamelCase names, 64-bit
integers as strings, enums by name), descriptions from the proto comments.

protos/run_codegen.py writes it beside the generated code (the gateway serves that copy at
/openapi.json) and to docs/openapi.json; `--check` fails when either is stale."""

from __future__ import annotations

import json
import re
from importlib import resources

from google.protobuf import descriptor_pb2

from recsys.http_rules import method_rule, rule_bindings

OPENAPI_VERSION = "3.0.3"
GATEWAY_FILE = "recsys/gateway/v1/gateway.proto"
GATEWAY_SERVICE = "GatewayService"
PACKAGED = ("recsys.api.gateway.v1", "openapi.json")  # where run_codegen puts the document

Field = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    Field.TYPE_DOUBLE: {"type": "number", "format": "double"},
    Field.TYPE_FLOAT: {"type": "number", "format": "float"},
    Field.TYPE_INT32: {"type": "integer", "format": "int32"},
    Field.TYPE_SINT32: {"type": "integer", "format": "int32"},
    Field.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    Field.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    Field.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    # proto3 JSON writes 64-bit integers as strings (and reads numbers or strings)
    Field.TYPE_INT64: {"type": "string", "format": "int64"},
    Field.TYPE_SINT64: {"type": "string", "format": "int64"},
    Field.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    Field.TYPE_UINT64: {"type": "string", "format": "uint64"},
    Field.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    Field.TYPE_BOOL: {"type": "boolean"},
    Field.TYPE_STRING: {"type": "string"},
    Field.TYPE_BYTES: {"type": "string", "format": "byte"},
}
# FileDescriptorProto field numbers, for the paths of SourceCodeInfo locations
MESSAGE_TYPE, ENUM_TYPE, SERVICE, SYNTAX = 4, 5, 6, 12
FIELD, NESTED_TYPE, NESTED_ENUM, ENUM_VALUE, METHOD = 2, 3, 4, 2, 2

STATUS_SCHEMA = {
    "type": "object",
    "description": (
        "An error, as google.rpc.Status: the gRPC status code (e.g. 3 for INVALID_ARGUMENT), "
        "the message, and details such as google.rpc.BadRequest field violations."
    ),
    "properties": {
        "code": {"type": "integer", "format": "int32"},
        "message": {"type": "string"},
        "details": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"@type": {"type": "string"}},
                "additionalProperties": True,
            },
        },
    },
}
HEADER_PARAMETERS = {
    "RequestId": {
        "name": "X-Request-Id",
        "in": "header",
        "required": False,
        "description": "The request's id in the gateway's logs (one is made when absent); "
        "echoed in the response.",
        "schema": {"type": "string", "maxLength": 128},
    },
    "TimeoutMs": {
        "name": "X-Timeout-Ms",
        "in": "header",
        "required": False,
        "description": "Deadline of the call in milliseconds; past it the answer is 504 "
        "(DEADLINE_EXCEEDED).",
        "schema": {"type": "integer", "minimum": 1, "maximum": 3600000},
    },
}
REQUEST_ID_HEADER = {
    "description": "The request's id (the caller's X-Request-Id, or a new one).",
    "schema": {"type": "string"},
}
INFO_NOTE = (
    "Errors answer a google.rpc.Status (code, message, details) with the HTTP status of its "
    "code (INVALID_ARGUMENT 400, UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404, "
    "RESOURCE_EXHAUSTED 429, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, ...). With AUTH_TOKENS "
    "set, write routes need `Authorization: Bearer <token>` (every route with AUTH_READS)."
)


def comment_text(location) -> str:
    """A location's leading and trailing comments: lines joined, paragraphs kept."""
    paragraphs: list[list[str]] = []
    for raw in (location.leading_comments, location.trailing_comments):
        current: list[str] = []
        for line in [*raw.strip().splitlines(), ""]:
            if line.strip():
                current.append(line.strip())
            elif current:
                paragraphs.append(current)
                current = []
    return "\n\n".join(" ".join(lines) for lines in paragraphs)


class ProtoFiles:
    """The messages, enums and comments of a FileDescriptorSet (with source info)."""

    def __init__(self, files: descriptor_pb2.FileDescriptorSet):
        self.files = {f.name: f for f in files.file}
        self.messages: dict[str, tuple[descriptor_pb2.DescriptorProto, str, tuple]] = {}
        self.enums: dict[str, tuple[descriptor_pb2.EnumDescriptorProto, str, tuple]] = {}
        self.comments: dict[tuple[str, tuple], str] = {}
        for file in files.file:
            prefix = f".{file.package}" if file.package else ""
            for i, message in enumerate(file.message_type):
                self._add_message(file.name, f"{prefix}.{message.name}", message, (MESSAGE_TYPE, i))
            for i, enum in enumerate(file.enum_type):
                self.enums[f"{prefix}.{enum.name}"] = (enum, file.name, (ENUM_TYPE, i))
            for location in file.source_code_info.location:
                text = comment_text(location)
                if text:
                    self.comments[(file.name, tuple(location.path))] = text

    def _add_message(self, file: str, name: str, message, path: tuple) -> None:
        self.messages[name] = (message, file, path)
        for j, nested in enumerate(message.nested_type):
            self._add_message(file, f"{name}.{nested.name}", nested, (*path, NESTED_TYPE, j))
        for j, enum in enumerate(message.enum_type):
            self.enums[f"{name}.{enum.name}"] = (enum, file, (*path, NESTED_ENUM, j))

    def comment(self, file: str, path: tuple) -> str:
        return self.comments.get((file, path), "")


def schema_name(full_name: str) -> str:
    """ ".recsys.gateway.v1.UserState" → "UserState" (one package, so short names)."""
    return full_name.rsplit(".", 1)[-1]


def json_name(field: descriptor_pb2.FieldDescriptorProto) -> str:
    if field.json_name:
        return field.json_name
    head, *rest = field.name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class Generator:
    def __init__(self, protos: ProtoFiles):
        self.protos = protos
        self.schemas: dict[str, dict] = {}

    def ref(self, full_name: str) -> dict:
        """A $ref to the schema of a message or enum, adding it (and what it uses)."""
        name = schema_name(full_name)
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: recursive types terminate
            if full_name in self.protos.enums:
                self.schemas[name] = self.enum_schema(full_name)
            elif full_name in self.protos.messages:
                self.schemas[name] = self.message_schema(full_name)
            else:
                raise ValueError(f"{full_name}: not a type of the given files")
        return {"$ref": f"#/components/schemas/{name}"}

    def enum_schema(self, full_name: str) -> dict:
        enum, file, path = self.protos.enums[full_name]
        lines = []
        for i, value in enumerate(enum.value):
            about = self.protos.comment(file, (*path, ENUM_VALUE, i)).replace("\n\n", " ")
            lines.append(f"- `{value.name}`" + (f": {about}" if about else ""))
        about = self.protos.comment(file, path)
        values = "\n".join(lines)
        schema = {"type": "string", "enum": [v.name for v in enum.value]}
        return {**schema, "description": f"{about}\n\n{values}" if about else values}

    def message_schema(self, full_name: str, without: tuple[str, ...] = ()) -> dict:
        message, file, path = self.protos.messages[full_name]
        properties = {}
        for i, field in enumerate(message.field):
            if field.name in without:
                continue
            schema = self.field_schema(field)
            about = self.protos.comment(file, (*path, FIELD, i))
            properties[json_name(field)] = with_description(schema, about)
        description = self.protos.comment(file, path)
        choices = [
            [
                json_name(f)
                for f in message.field
                if f.HasField("oneof_index") and f.oneof_index == n
            ]
            for n, oneof in enumerate(message.oneof_decl)
        ]
        for names in choices:
            if len(names) > 1:
                choice = "At most one of " + ", ".join(f"`{n}`" for n in names) + "."
                description = f"{description}\n\n{choice}" if description else choice
        schema = {"type": "object", "properties": properties}
        return with_description(schema, description)

    def field_schema(self, field: descriptor_pb2.FieldDescriptorProto) -> dict:
        if field.type in (Field.TYPE_MESSAGE, Field.TYPE_ENUM):
            if field.type_name.startswith(".google.protobuf."):
                raise ValueError(f"{field.name}: well-known type {field.type_name} not supported")
            single = self.ref(field.type_name)
        elif field.type in SCALARS:
            single = dict(SCALARS[field.type])
        else:
            raise ValueError(f"{field.name}: field type {field.type} not supported")
        if field.label == Field.LABEL_REPEATED:
            return {"type": "array", "items": single}
        return single

    def operation(self, service: str, method, file: str, path: tuple, binding) -> dict:
        input_message, _, _ = self.protos.messages[method.input_type]
        fields = {f.name: f for f in input_message.field}
        parameters: list[dict] = [
            {"$ref": "#/components/parameters/RequestId"},
            {"$ref": "#/components/parameters/TimeoutMs"},
        ]
        _, message_file, message_path = self.protos.messages[method.input_type]
        about = {
            f.name: self.protos.comment(message_file, (*message_path, FIELD, i))
            for i, f in enumerate(input_message.field)
        }
        for name in binding.path_fields:
            parameters.append(
                with_description(
                    {
                        "name": name,
                        "in": "path",
                        "required": True,
                        "schema": self.field_schema(fields[name]),
                    },
                    about[name],
                )
            )
        if not binding.body:
            for field in input_message.field:
                if field.name in binding.path_fields or field.type == Field.TYPE_MESSAGE:
                    continue
                parameters.append(
                    with_description(
                        {
                            "name": json_name(field),
                            "in": "query",
                            "required": False,
                            "schema": self.field_schema(field),
                        },
                        about[field.name],
                    )
                )
        operation = {
            "operationId": f"{service}_{method.name}"
            + (f"_{binding.additional}" if binding.additional else ""),
            "summary": method.name,
            "tags": [service],
            "parameters": parameters,
        }
        description = self.protos.comment(file, path)
        if description:
            operation["description"] = description
        if binding.body == "*":
            if binding.path_fields:  # the path's fields come from the path, not the body
                body = self.message_schema(method.input_type, without=binding.path_fields)
                self.ref(method.input_type)
            else:
                body = self.ref(method.input_type)
            operation["requestBody"] = {
                "required": False,
                "content": {"application/json": {"schema": body}},
            }
        operation["responses"] = {
            "200": {
                "description": "OK",
                "headers": {"X-Request-Id": REQUEST_ID_HEADER},
                "content": {"application/json": {"schema": self.ref(method.output_type)}},
            },
            "default": {
                "description": "An error: a google.rpc.Status with the HTTP status of its code.",
                "headers": {"X-Request-Id": REQUEST_ID_HEADER},
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Status"}}
                },
            },
        }
        return operation


def with_description(schema: dict, description: str) -> dict:
    """`schema` (or a parameter) with a description; a $ref is wrapped in allOf, as
    OpenAPI 3.0 ignores the siblings of a $ref."""
    if not description:
        return schema
    if "$ref" in schema:
        return {"allOf": [schema], "description": description}
    return {**schema, "description": description}


def document(files: descriptor_pb2.FileDescriptorSet, file: str = GATEWAY_FILE) -> dict:
    """The OpenAPI document of the first service of `file` in `files` (a set made with
    `protoc --include_source_info --include_imports`)."""
    protos = ProtoFiles(files)
    proto = protos.files[file]
    service_index, service = next(
        (i, s) for i, s in enumerate(proto.service) if s.name == GATEWAY_SERVICE
    )
    generator = Generator(protos)
    paths: dict[str, dict] = {}
    for m, method in enumerate(service.method):
        rule = method_rule(method.options)
        if rule is None:
            continue
        path = (SERVICE, service_index, METHOD, m)
        for binding in rule_bindings(method.name, rule):
            operation = generator.operation(service.name, method, file, path, binding)
            paths.setdefault(binding.path, {})[binding.verb.lower()] = operation
    schemas = dict(sorted(generator.schemas.items()))
    schemas["Status"] = STATUS_SCHEMA
    about = protos.comment(file, (SYNTAX,))
    version = proto.package.rsplit(".", 1)[-1]
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": f"{proto.package}.{service.name} over HTTP/JSON",
            "version": version,
            "description": f"{about}\n\n{INFO_NOTE}" if about else INFO_NOTE,
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": HEADER_PARAMETERS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearerAuth": []}],
    }


def render(doc: dict) -> str:
    """The document as committed: indented JSON, keys in generation order, a final newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def served_document() -> bytes:
    """The document run_codegen.py wrote into the generated package."""
    package, name = PACKAGED
    return resources.files(package).joinpath(name).read_bytes()


_REF = re.compile(r'"\$ref": "#/components/(\w+)/(\w+)"')


def dangling_refs(doc: dict) -> list[str]:
    """The $refs of `doc` that name no component (empty for a consistent document)."""
    components = doc.get("components", {})
    return [
        f"{kind}/{name}"
        for kind, name in _REF.findall(json.dumps(doc))
        if name not in components.get(kind, {})
    ]
