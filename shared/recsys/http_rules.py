"""The HTTP bindings of gRPC methods, read from their `google.api.http` options: verb, path
template, where the request comes from (path, JSON body, query string). One reader for the
gateway's HTTP routes and the OpenAPI document, so the two cannot disagree.

The subset of HttpRule supported: the verbs get, post, put, patch and delete; path templates
of literal segments and `{field}` variables naming a scalar field of the request (a literal
`:verb` suffix allowed); body "" (the fields not in the path come from the query string) or
"*" (they come from the JSON body); additional_bindings one level deep. Anything else is
refused with ValueError when the bindings are read (at start-up), not at the first call."""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.api import annotations_pb2, http_pb2

VERBS = ("get", "post", "put", "patch", "delete")
VARIABLE = re.compile(r"\{([^{}]*)\}")
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
LITERAL = re.compile(r"^[A-Za-z0-9._~:-]*$")


@dataclass(frozen=True)
class Binding:
    rpc: str  # the method's name, e.g. "RateItems"
    verb: str  # upper case, e.g. "POST"
    path: str  # the template, e.g. "/v1/users/{user_id}/ratings"
    body: str  # "*": the JSON body holds the fields not in the path; "": the query string
    path_fields: tuple[str, ...]  # request fields the path binds, in order
    additional: int  # 0 for the rule itself, n for its n-th additional binding

    @property
    def route(self) -> str:
        """e.g. "POST /v1/users/{user_id}/ratings" (a metrics label, a log field)."""
        return f"{self.verb} {self.path}"


def rule_bindings(rpc: str, rule: http_pb2.HttpRule) -> list[Binding]:
    """The bindings of one method's HttpRule (its own, then its additional ones)."""
    found = [_binding(rpc, rule, 0)]
    for n, extra in enumerate(rule.additional_bindings, 1):
        if extra.additional_bindings:
            raise ValueError(f"{rpc}: additional_bindings may not nest")
        found.append(_binding(rpc, extra, n))
    return found


def method_rule(options) -> http_pb2.HttpRule | None:
    """The `google.api.http` option of a MethodOptions message, None when it has none."""
    if not options.HasExtension(annotations_pb2.http):
        return None
    return options.Extensions[annotations_pb2.http]


def _binding(rpc: str, rule: http_pb2.HttpRule, additional: int) -> Binding:
    verb = rule.WhichOneof("pattern")
    if verb not in VERBS:
        raise ValueError(f"{rpc}: HTTP pattern {verb!r} is not supported (use one of {VERBS})")
    path = getattr(rule, verb)
    if rule.body not in ("", "*"):
        raise ValueError(f'{rpc}: body {rule.body!r} is not supported (use "*" or none)')
    if rule.response_body:
        raise ValueError(f"{rpc}: response_body is not supported")
    if verb in ("get", "delete") and rule.body:
        raise ValueError(f"{rpc}: a {verb.upper()} binding takes no body")
    return Binding(rpc, verb.upper(), path, rule.body, path_variables(rpc, path), additional)


def path_variables(rpc: str, path: str) -> tuple[str, ...]:
    """The field names of a template's `{field}` variables; ValueError for a template
    outside the supported subset."""
    if not path.startswith("/"):
        raise ValueError(f"{rpc}: path {path!r} must start with /")
    names = []
    for segment in path[1:].split("/"):
        variables = VARIABLE.findall(segment)
        literal = VARIABLE.sub("", segment)
        if len(variables) > 1 or not segment or not LITERAL.match(literal):
            raise ValueError(f"{rpc}: path segment {segment!r} is not supported")
        if variables:
            name = variables[0]
            if not FIELD_NAME.match(name):
                raise ValueError(f"{rpc}: path variable {{{name}}} must name a top-level field")
            if not segment.startswith("{"):
                raise ValueError(f"{rpc}: a variable must start its segment: {segment!r}")
            names.append(name)
    if len(set(names)) != len(names):
        raise ValueError(f"{rpc}: path {path!r} binds a field twice")
    return tuple(names)


def service_bindings(service) -> list[Binding]:
    """Every binding of a service (a ServiceDescriptor), in declaration order; ValueError
    when a path variable does not name a singular scalar field of the request, or two
    bindings share a verb and path."""
    from google.protobuf.descriptor import FieldDescriptor

    found: list[Binding] = []
    for method in service.methods:
        rule = method_rule(method.GetOptions())
        if rule is None:
            continue
        for binding in rule_bindings(method.name, rule):
            for name in binding.path_fields:
                field = method.input_type.fields_by_name.get(name)
                if field is None or field.type == FieldDescriptor.TYPE_MESSAGE or field.is_repeated:
                    raise ValueError(
                        f"{method.name}: path variable {{{name}}} is not a singular scalar "
                        f"field of {method.input_type.name}"
                    )
            found.append(binding)
    routes = [b.route for b in found]
    duplicates = sorted({r for r in routes if routes.count(r) > 1})
    if duplicates:
        raise ValueError(f"routes bound twice: {duplicates}")
    return found
