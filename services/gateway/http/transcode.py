"""JSON ↔ protobuf for the HTTP side by the proto3 JSON mapping (google.protobuf.json_format):
a request message from a route's path variables, JSON body and query string (both the
lowerCamelCase and the proto field names accepted); a response as JSON with lowerCamelCase
names, enum names, 64-bit integers as strings and every field present (zeros, empty lists).
Input that does not fit is InvalidArgument naming the field."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from multidict import MultiMapping

from recsys.errors import InvalidArgument
from recsys.http_rules import Binding

BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
# where json_format's messages say the problem is: "... at RecommendRequest.inlineRatings.k"
_AT_PATH = re.compile(r" at \"?[A-Za-z0-9_]+\.([A-Za-z0-9_.\[\]]+)\"?\.*$")
_FIELD_NAMED = re.compile(r'has no field named "([^"]+)"')
_FAILED_FIELD = re.compile(r"^Failed to parse (\w+) field")


def request_message(
    binding: Binding,
    message: Message,
    path: Mapping[str, str],
    query: MultiMapping[str],
    body: bytes,
) -> Message:
    """Fill `message` (an empty request) from the HTTP request and return it: the JSON body
    for a body "*" route, else the query string; then the path variables, which win."""
    if binding.body == "*":
        if query:
            names = ", ".join(sorted(set(query)))
            raise InvalidArgument(
                f"{binding.route} reads its fields from the JSON body, not the query string "
                f"(got {names})",
                field=next(iter(query)),
            )
        if body.strip():
            parse_into(json_object(body), message)
    else:
        if body.strip():
            raise InvalidArgument(f"{binding.route} takes no body: give the fields in the query")
        parse_into(query_fields(query, message.DESCRIPTOR, binding.path_fields), message)
    for name in binding.path_fields:
        field = message.DESCRIPTOR.fields_by_name[name]
        try:
            parse_into({field.json_name: path[name]}, message)
        except InvalidArgument as error:
            raise InvalidArgument(f"path variable {name}: {error}", field=name) from None
    return message


def json_object(body: bytes) -> dict:
    try:
        parsed = json.loads(body)
    except UnicodeDecodeError:
        raise InvalidArgument("the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"the body is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidArgument(f"the body must be a JSON object, got {type(parsed).__name__}")
    return parsed


def query_fields(
    query: MultiMapping[str], descriptor: Descriptor, path_fields: tuple[str, ...]
) -> dict:
    """The query string as a JSON-mapping dict of top-level scalar fields (repeated ones by
    repeating the parameter); unknown or path-bound names are InvalidArgument."""
    fields = {}
    for key in dict.fromkeys(query):  # each name once, in order
        values = query.getall(key)
        field = field_named(descriptor, key)
        if field is None or field.name in path_fields:
            known = [f.json_name for f in descriptor.fields if f.name not in path_fields]
            raise InvalidArgument(
                f"unknown query parameter {key!r} (known: {', '.join(known) or 'none'})",
                field=key,
            )
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            raise InvalidArgument(f"{key} cannot be given in the query string", field=key)
        if field.is_repeated:
            fields[field.json_name] = [scalar(field, v) for v in values]
        elif len(values) > 1:
            raise InvalidArgument(f"query parameter {key} is given {len(values)} times", field=key)
        else:
            fields[field.json_name] = scalar(field, values[0])
    return fields


def field_named(descriptor: Descriptor, name: str) -> FieldDescriptor | None:
    """A field by its proto name or its JSON (lowerCamelCase) name."""
    field = descriptor.fields_by_name.get(name)
    if field is not None:
        return field
    return next((f for f in descriptor.fields if f.json_name == name), None)


def scalar(field: FieldDescriptor, text: str):
    """A query value as the JSON mapping takes it: booleans as true / false (or 1 / 0);
    numbers and enum names stay strings, which json_format parses for their field."""
    if field.type == FieldDescriptor.TYPE_BOOL:
        if text.lower() not in BOOLEANS:
            raise InvalidArgument(
                f"{field.json_name} must be true or false, got {text!r}", field=field.json_name
            )
        return BOOLEANS[text.lower()]
    return text


def parse_into(values: dict, message: Message) -> None:
    try:
        json_format.ParseDict(values, message)
    except json_format.ParseError as exc:
        problem = " ".join(str(exc).split())
        raise InvalidArgument(problem, field=problem_field(problem)) from None


def problem_field(problem: str) -> str | None:
    """The field a json_format message names, as the client wrote it (e.g.
    "inlineRatings.ratings[0].rating"), None when it names none."""
    for pattern in (_AT_PATH, _FIELD_NAMED, _FAILED_FIELD):
        match = pattern.search(problem)
        if match:
            return match[1].rstrip(".")
    return None


def response_json(message: Message) -> dict:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
