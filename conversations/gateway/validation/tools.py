"""Checks of the fields that name functions and carry JSON Schemas: ``tools``, ``tool_choice``, the
deprecated ``functions`` and ``function_call``, and ``response_format``."""

from __future__ import annotations

from conversations.gateway.validation.values import (
    array_check,
    bad_type,
    boolean_check,
    choice_check,
    missing,
    name_check,
    object_check,
    string_check,
)


def _function_definition(value: object, param: str) -> None:
    """A function's name, description and JSON Schema parameters (tools[i].function or functions[i])."""
    function = object_check(value, param)
    if "name" not in function:
        raise missing(f"{param}.name")
    name_check(function["name"], f"{param}.name")
    if function.get("description") is not None:
        string_check(function["description"], f"{param}.description")
    if function.get("parameters") is not None:
        object_check(function["parameters"], f"{param}.parameters")
    if function.get("strict") is not None:
        boolean_check(function["strict"], f"{param}.strict")


def tools_check(value: object) -> None:
    for i, raw in enumerate(array_check(value, "tools", max_items=128)):
        at = f"tools[{i}]"
        tool = object_check(raw, at)
        if "type" not in tool:
            raise missing(f"{at}.type")
        kind = choice_check(tool["type"], f"{at}.type", ("function", "custom"))
        if kind not in tool:
            raise missing(f"{at}.{kind}")
        if kind == "function":
            _function_definition(tool["function"], f"{at}.function")
        else:
            custom = object_check(tool["custom"], f"{at}.custom")
            if "name" not in custom:
                raise missing(f"{at}.custom.name")
            name_check(custom["name"], f"{at}.custom.name")


def tool_choice_check(value: object) -> None:
    if isinstance(value, str):
        choice_check(value, "tool_choice", ("none", "auto", "required"))
        return
    if not isinstance(value, dict):
        raise bad_type("tool_choice", "'none', 'auto', 'required' or an object", value)
    if "type" not in value:
        raise missing("tool_choice.type")
    kind = choice_check(value["type"], "tool_choice.type", ("function", "custom", "allowed_tools"))
    if kind not in value:
        raise missing(f"tool_choice.{kind}")
    inner = object_check(value[kind], f"tool_choice.{kind}")
    if kind == "allowed_tools":
        choice_check(inner.get("mode"), "tool_choice.allowed_tools.mode", ("auto", "required"))
        if "tools" not in inner:
            raise missing("tool_choice.allowed_tools.tools")
        for i, tool in enumerate(array_check(inner["tools"], "tool_choice.allowed_tools.tools")):
            object_check(tool, f"tool_choice.allowed_tools.tools[{i}]")
        return
    if "name" not in inner:
        raise missing(f"tool_choice.{kind}.name")
    string_check(inner["name"], f"tool_choice.{kind}.name")


def functions_check(value: object) -> None:
    """The deprecated `functions`: 1 to 128 function definitions."""
    for i, function in enumerate(array_check(value, "functions", nonempty=True, max_items=128)):
        _function_definition(function, f"functions[{i}]")


def function_choice_check(value: object) -> None:
    """The deprecated `function_call`: 'none', 'auto' or {"name": ...}."""
    if isinstance(value, str):
        choice_check(value, "function_call", ("none", "auto"))
        return
    choice = object_check(value, "function_call")
    if "name" not in choice:
        raise missing("function_call.name")
    string_check(choice["name"], "function_call.name")


def response_format_check(value: object) -> None:
    response_format = object_check(value, "response_format")
    if "type" not in response_format:
        raise missing("response_format.type")
    kind = choice_check(response_format["type"], "response_format.type", ("text", "json_object", "json_schema"))
    if kind != "json_schema":
        return
    if "json_schema" not in response_format:
        raise missing("response_format.json_schema")
    schema = object_check(response_format["json_schema"], "response_format.json_schema")
    if "name" not in schema:
        raise missing("response_format.json_schema.name")
    name_check(schema["name"], "response_format.json_schema.name")
    if schema.get("description") is not None:
        string_check(schema["description"], "response_format.json_schema.description")
    if schema.get("schema") is not None:
        object_check(schema["schema"], "response_format.json_schema.schema")
    if schema.get("strict") is not None:
        boolean_check(schema["strict"], "response_format.json_schema.strict")
