"""Tests for axon_grpc.schema: synapse classes <-> protobuf messages and .proto text."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import threading
import types
import typing
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Dict, List, Literal, NewType, Optional, Union

import pytest
from google.protobuf import descriptor_pb2
from pydantic import (
    BaseModel,
    Field,
    Json,
    PositiveFloat,
    StrictBool,
    conint,
    conlist,
    constr,
    create_model,
)

from axon_grpc.errors import SchemaError
from axon_grpc.schema import (
    DEFAULT_BASE_FIELDS,
    SynapseSchema,
    build_service_file,
    emit_proto,
    render_proto,
    schema_for,
)

# --------------------------------------------------------------------------- fixtures


class Dummy(BaseModel):
    input: int
    output: Optional[int] = None


class Point(BaseModel):
    x: int = 0
    y: int = 0


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Node(BaseModel):
    value: int = 0
    children: list[Node] = []
    parent: Optional[Node] = None


class FakeSynapse(BaseModel):
    """Stands in for the project's Synapse base class (same base field names)."""

    name: Optional[str] = None
    timeout: float = 12.0
    total_size: int = 0
    header_size: int = 0
    dendrite: Optional[Point] = None
    axon: Optional[Point] = None
    computed_body_hash: str = ""


class Everything(FakeSynapse):
    proto_json_fields: ClassVar[tuple[str, ...]] = ("extra",)

    i: int
    f: float = 0.0
    s: str = ""
    ok: bool = False
    raw: bytes = b""
    maybe: Optional[int] = None
    ints: list[int] = []
    scores: dict[str, float] = {}
    where: Point = Point()
    path: list[Point] = []
    named: dict[str, Point] = {}
    color: Color = Color.RED
    maybe_color: Optional[Color] = None
    colors: list[Color] = []
    tree: Optional[Node] = None
    maybe_ints: Optional[list[int]] = None
    maybe_map: Optional[dict[str, str]] = None
    extra: dict[str, Any] = {}


def row_model(annotation: Any, name: str = "Row", **kwargs: Any) -> type[BaseModel]:
    """A fresh model class with one required field ``f`` (plus ``kwargs`` fields)."""
    return create_model(name, f=(annotation, ...), **kwargs)


def round_trip(schema: SynapseSchema, instance: BaseModel) -> BaseModel:
    return schema.cls.model_validate(schema.from_bytes(schema.to_bytes(instance)))


# ------------------------------------------------------------------ cross-language wire


def test_wire_format_matches_protobuf_spec() -> None:
    schema = schema_for(Dummy)
    assert schema.from_bytes(b"\x08\x07") == {"input": 7, "output": None}
    assert schema.to_bytes({"input": 7, "output": 14}) == b"\x08\x07\x10\x0e"
    assert schema.to_bytes(Dummy(input=7, output=14)) == b"\x08\x07\x10\x0e"
    assert schema.to_bytes({"input": 7}) == b"\x08\x07"
    # proto3 optional keeps presence: an explicit 0 is sent, None is not
    assert schema.to_bytes({"input": 0, "output": 0}) == b"\x10\x00"
    assert schema.from_bytes(b"\x10\x00") == {"input": 0, "output": 0}
    assert schema.from_bytes(b"") == {"input": 0, "output": None}
    assert schema.field_names == ("input", "output")
    assert schema.name == "Dummy"
    assert schema.descriptor.full_name == "axon.v1.Dummy"
    assert schema.file_descriptor_proto.name == "axon/v1/Dummy.proto"
    assert schema.file_descriptor_proto.package == "axon.v1"
    assert schema.file_descriptor_proto.syntax == "proto3"
    msg = schema.to_message(Dummy(input=7))
    assert isinstance(msg, schema.message_class)
    assert msg.input == 7 and not msg.HasField("output")


# ---------------------------------------------------------------------- mapping rows

MAPPING_ROWS: list[tuple[str, Any, list[Any], list[str]]] = [
    ("int", int, [7, -(2**63), 2**63 - 1], ["int64 f = 1;"]),
    ("float", float, [1.5, -0.0, 1e300], ["double f = 1;"]),
    ("str", str, ["héllo", ""], ["string f = 1;"]),
    ("bool", bool, [True, False], ["bool f = 1;"]),
    ("bytes", bytes, [b"\x00\xff", b""], ["bytes f = 1;"]),
    ("optional-int", Optional[int], [0, 5, None], ["optional int64 f = 1;"]),
    ("pep604-optional", int | None, [3, None], ["optional int64 f = 1;"]),
    ("optional-float", Optional[float], [0.0, None], ["optional double f = 1;"]),
    ("optional-str", Optional[str], ["", "x", None], ["optional string f = 1;"]),
    ("optional-bool", Optional[bool], [False, None], ["optional bool f = 1;"]),
    ("optional-bytes", Optional[bytes], [b"", None], ["optional bytes f = 1;"]),
    ("list-int", list[int], [[1, -2, 3], []], ["repeated int64 f = 1;"]),
    ("typing-List-str", List[str], [["a", "b"]], ["repeated string f = 1;"]),
    ("list-bytes", list[bytes], [[b"a", b""]], ["repeated bytes f = 1;"]),
    ("list-float", list[float], [[0.5, 2.0]], ["repeated double f = 1;"]),
    ("list-bool", list[bool], [[True, False]], ["repeated bool f = 1;"]),
    ("dict-str-int", dict[str, int], [{"b": 2, "a": 1}, {}], ["map<string, int64> f = 1;"]),
    ("typing-Dict-str-str", Dict[str, str], [{"k": "v"}], ["map<string, string> f = 1;"]),
    (
        "dict-str-model",
        dict[str, Point],
        [{"p": Point(x=1, y=2), "q": Point()}],
        ["map<string, Row.Point> f = 1;", "message Point {"],
    ),
    ("model", Point, [Point(x=1, y=-1), Point()], ["Row.Point f = 1;", "int64 x = 1;"]),
    ("optional-model", Optional[Point], [Point(x=1), Point(), None], ["Row.Point f = 1;"]),
    ("list-model", list[Point], [[Point(x=1), Point()]], ["repeated Row.Point f = 1;"]),
    (
        "enum",
        Color,
        [Color.RED, Color.BLUE],
        ["Row.Color f = 1;", "enum Color {", "COLOR_RED = 0;", "COLOR_GREEN = 1;"],
    ),
    ("optional-enum", Optional[Color], [Color.RED, None], ["optional Row.Color f = 1;"]),
    ("list-enum", list[Color], [[Color.BLUE, Color.RED]], ["repeated Row.Color f = 1;"]),
    ("dict-enum", dict[str, Color], [{"a": Color.GREEN}], ["map<string, Row.Color> f = 1;"]),
    (
        "optional-list",
        Optional[list[int]],
        [None, [], [1, 2]],
        ["Row._ListInt64 f = 1;", "message _ListInt64 {", "repeated int64 values = 1;"],
    ),
    (
        "optional-list-model",
        Optional[list[Point]],
        [None, [], [Point(x=3)]],
        ["Row._ListPoint f = 1;"],
    ),
    ("optional-list-enum", Optional[list[Color]], [None, [Color.BLUE]], ["Row._ListColor f = 1;"]),
    (
        "optional-dict",
        Optional[dict[str, str]],
        [None, {}, {"a": "b"}],
        ["Row._MapString f = 1;", "message _MapString {", "map<string, string> values = 1;"],
    ),
    (
        "optional-dict-model",
        Optional[dict[str, Point]],
        [None, {"p": Point()}],
        ["Row._MapPoint f = 1;"],
    ),
    ("annotated", Annotated[int, Field(ge=0)], [5], ["int64 f = 1;"]),
    ("conint", conint(gt=0), [9], ["int64 f = 1;"]),
    ("constr", constr(max_length=5), ["abc"], ["string f = 1;"]),
    ("strict-bool", StrictBool, [True], ["bool f = 1;"]),
    ("positive-float", PositiveFloat, [2.5], ["double f = 1;"]),
    ("conlist", conlist(int, max_length=3), [[1, 2]], ["repeated int64 f = 1;"]),
    (
        "optional-annotated",
        Optional[Annotated[str, Field(min_length=1)]],
        ["x", None],
        ["optional string f = 1;"],
    ),
    ("newtype", NewType("UserId", int), [42], ["int64 f = 1;"]),
]


@pytest.mark.parametrize(
    ("annotation", "values", "decls"),
    [pytest.param(a, v, d, id=i) for i, a, v, d in MAPPING_ROWS],
)
def test_mapping_row_round_trip_and_declaration(annotation: Any, values: list[Any], decls: list[str]) -> None:
    model = row_model(annotation)
    schema = schema_for(model)
    text = emit_proto([schema])
    for decl in decls:
        assert decl in text
    for value in values:
        instance = model(f=value)
        data = schema.to_bytes(instance)
        decoded = schema.from_bytes(data)
        assert set(decoded) == {"f"}
        assert model.model_validate(decoded) == instance, (value, decoded)
        # the dict form of the values encodes identically
        assert schema.to_bytes({"f": instance.f}) == data


def test_decoded_values_are_plain_python() -> None:
    schema = schema_for(Everything)
    value = Everything(
        i=1,
        ints=[1, 2],
        scores={"a": 1.0},
        where=Point(x=1),
        path=[Point(y=2)],
        color=Color.BLUE,
        maybe_color=Color.GREEN,
        colors=[Color.RED],
    )
    out = schema.from_bytes(schema.to_bytes(value))
    assert type(out["ints"]) is list and out["ints"] == [1, 2]
    assert type(out["scores"]) is dict and out["scores"] == {"a": 1.0}
    assert out["where"] == {"x": 1, "y": 0}
    assert out["path"] == [{"x": 0, "y": 2}]
    assert out["color"] is Color.BLUE
    assert out["maybe_color"] is Color.GREEN
    assert out["colors"] == [Color.RED]
    assert out["maybe"] is None and out["tree"] is None
    assert out["maybe_ints"] is None and out["maybe_map"] is None


def test_everything_round_trip_from_instance_and_dict() -> None:
    schema = schema_for(Everything)
    value = Everything(
        i=-5,
        f=2.25,
        s="ß",
        ok=True,
        raw=b"\x01",
        maybe=0,
        ints=[3],
        scores={"z": -1.5, "a": 0.0},
        where=Point(x=9),
        path=[Point(), Point(y=1)],
        named={"n": Point(x=4)},
        color=Color.GREEN,
        maybe_color=Color.RED,
        colors=[Color.BLUE, Color.BLUE],
        tree=Node(value=1, children=[Node(value=2)]),
        maybe_ints=[],
        maybe_map={},
        extra={"k": [1, "two", None]},
        timeout=99.0,  # a base field: not carried in the message
    )
    back = round_trip(schema, value)
    assert back.model_dump(exclude={"timeout"}) == value.model_dump(exclude={"timeout"})
    assert back.timeout == 12.0
    as_dict = {n: getattr(value, n) for n in schema.field_names}
    assert schema.to_bytes(as_dict) == schema.to_bytes(value)
    assert schema.to_bytes(types.MappingProxyType(as_dict)) == schema.to_bytes(value)


def test_base_fields_are_excluded_and_numbering_starts_at_one() -> None:
    schema = schema_for(Everything)
    assert schema.field_names[0] == "i"
    assert not set(DEFAULT_BASE_FIELDS) & set(schema.field_names)
    numbers = {f.name: f.number for f in schema.descriptor.fields}
    assert numbers["i"] == 1 and numbers["f"] == 2 and numbers["extra"] == 18
    # with no exclusions the base fields are ordinary fields, numbered first
    full = schema_for(Everything, exclude=())
    assert full is not schema
    assert full.field_names[: len(DEFAULT_BASE_FIELDS)] == DEFAULT_BASE_FIELDS


def test_nested_types_are_declared_once_inside_the_synapse() -> None:
    schema = schema_for(Everything)
    nested = [t.name for t in schema.file_descriptor_proto.message_type[0].nested_type]
    assert nested.count("Point") == 1
    assert nested.count("Node") == 1
    assert [e.name for e in schema.descriptor.enum_types] == ["Color"]
    assert len(schema.file_descriptor_proto.message_type) == 1  # nothing at file level


# ------------------------------------------------------------------------- refusals

REFUSED: list[tuple[str, Any]] = [
    ("any", Any),
    ("object", object),
    ("union", Union[int, str]),
    ("pep604-union", int | str),
    ("optional-union", Optional[Union[int, str]]),
    ("list-of-optional", list[Optional[int]]),
    ("list-of-list", list[list[int]]),
    ("list-of-dict", list[dict[str, int]]),
    ("list-of-any", list[Any]),
    ("set", set[int]),
    ("frozenset", frozenset[int]),
    ("tuple", tuple[int, ...]),
    ("fixed-tuple", tuple[int, str]),
    ("datetime", dt.datetime),
    ("decimal", decimal.Decimal),
    ("dict-int-key", dict[int, str]),
    ("dict-of-list", dict[str, list[int]]),
    ("dict-of-optional", dict[str, Optional[int]]),
    ("bare-list", list),
    ("bare-dict", dict),
    ("bare-typing-list", typing.List),
    ("bare-typing-dict", typing.Dict),
    ("literal", Literal["a", "b"]),
    ("sequence", Sequence[int]),
    ("pydantic-json", Json[list[int]]),
    ("optional-any", Optional[Any]),
    ("none", type(None)),
    ("bare-basemodel", BaseModel),
]


@pytest.mark.parametrize(("annotation"), [pytest.param(a, id=i) for i, a in REFUSED])
def test_unmappable_types_are_refused_with_class_field_and_hint(annotation: Any) -> None:
    model = row_model(annotation)
    with pytest.raises(SchemaError) as info:
        schema_for(model)
    text = str(info.value)
    assert text.startswith("Row.f: type ")
    assert "has no protobuf mapping" in text
    assert "proto_json_fields = ('f',)" in text


def test_refusal_message_for_any_is_exact() -> None:
    with pytest.raises(SchemaError) as info:
        schema_for(row_model(Any, name="Dummy"))
    assert str(info.value) == (
        "Dummy.f: type typing.Any has no protobuf mapping; mark it JSON-carried with "
        "proto_json_fields = ('f',) or change its type"
    )
    assert isinstance(info.value, TypeError)


def test_refusal_inside_nested_model_names_nested_class_and_path() -> None:
    class Leaf(BaseModel):
        when: dt.datetime

    class Branch(BaseModel):
        leaf: Leaf

    model = row_model(Optional[Branch])
    with pytest.raises(SchemaError, match=r"^Leaf\.when: type datetime\.datetime") as info:
        schema_for(model)
    assert "Row.f -> Branch.leaf" in str(info.value)


class Perms(enum.Flag):
    READ = 1
    WRITE = 2


class Empty(enum.Enum):
    pass


@pytest.mark.parametrize(
    ("annotation", "fragment"),
    [(Perms, "is a Flag"), (Empty, "has no members")],
    ids=["flag", "empty-enum"],
)
def test_unmappable_enums_are_refused(annotation: Any, fragment: str) -> None:
    with pytest.raises(SchemaError, match=r"^Row\.f: enum") as info:
        schema_for(row_model(annotation))
    assert fragment in str(info.value)


def test_json_field_that_is_not_a_field_is_refused() -> None:
    class Bad(BaseModel):
        proto_json_fields: ClassVar[tuple[str, ...]] = ("nope",)
        a: int = 0

    with pytest.raises(SchemaError, match=r"Bad\.proto_json_fields: 'nope' is not a field"):
        schema_for(Bad)

    class BaseFieldAsJson(FakeSynapse):
        proto_json_fields: ClassVar[tuple[str, ...]] = ("timeout",)

    with pytest.raises(SchemaError, match="'timeout' is not a field"):
        schema_for(BaseFieldAsJson)

    class NotATuple(BaseModel):
        proto_json_fields: ClassVar[Any] = "a"
        a: Any = None

    with pytest.raises(SchemaError, match="must be a tuple of field names"):
        schema_for(NotATuple)


def test_invalid_identifiers_are_refused() -> None:
    with pytest.raises(SchemaError, match="not a valid protobuf field name"):
        schema_for(create_model("Row", **{"café": (int, 0)}))
    with pytest.raises(SchemaError, match="not a valid protobuf message name"):
        schema_for(create_model("Bad-Name", a=(int, 0)))

    T = typing.TypeVar("T")

    class Box(BaseModel, typing.Generic[T]):
        item: T

    with pytest.raises(SchemaError, match=r"'Box\[int\]' is not a valid protobuf message name"):
        schema_for(Box[int])

    weird = enum.Enum("Weird", {"not ok": 0, "fine": 1})  # type: ignore[misc]
    with pytest.raises(SchemaError, match="member name 'not ok'"):
        schema_for(row_model(weird))


def test_reserved_names_clash_only_with_user_fields() -> None:
    terminal = create_model("TerminalInfo", ip=(str, ""))
    with pytest.raises(SchemaError, match="TerminalInfo: the name is reserved"):
        schema_for(terminal)

    # the base ping message: a "Synapse" class with no user fields is allowed
    ping = create_model("Synapse", __base__=FakeSynapse)
    schema = schema_for(ping)
    assert schema.field_names == ()
    assert "message Synapse {}" in emit_proto([schema])
    assert schema.from_bytes(b"") == {}
    assert schema.to_bytes(ping()) == b""

    with pytest.raises(SchemaError, match="Synapse: the name is reserved"):
        schema_for(create_model("Synapse", __base__=FakeSynapse, extra=(int, 0)))
    with pytest.raises(SchemaError, match="reserved"):
        schema_for(create_model("Chunk", data=(bytes, b"")))
    # the reserved set is a parameter
    custom = create_model("Mine", a=(int, 0))
    assert schema_for(custom, reserved_names=()).field_names == ("a",)
    with pytest.raises(SchemaError, match="reserved"):
        schema_for(custom, reserved_names=("Mine",))


def test_name_clashes_between_nested_types_are_refused() -> None:
    first = create_model("Point", a=(int, 0))
    second = create_model("Point", b=(int, 0))
    with pytest.raises(SchemaError, match="two different types are named 'Point'"):
        schema_for(row_model(first, g=(second, second())))

    same_as_synapse = create_model("Row", a=(int, 0))
    with pytest.raises(SchemaError, match="has the same name as the synapse"):
        schema_for(row_model(same_as_synapse))

    # a field called like a nested type clashes in protobuf's scope: the pool refuses
    with pytest.raises(SchemaError, match="'Point' is both a field and a message in message Row"):
        schema_for(create_model("Row", Point=(Point, Point())))
    # enum values live in the enclosing message's scope (protobuf's C++ scoping rule)
    with pytest.raises(SchemaError, match="'COLOR_RED' is both a field and a value of enum Color"):
        schema_for(create_model("Row", c=(Color, Color.RED), COLOR_RED=(int, 0)))


def test_json_name_clash_is_refused() -> None:
    with pytest.raises(SchemaError, match="Row"):
        schema_for(create_model("Row", foo_bar=(int, 0), fooBar=(int, 0)))


def test_recursion() -> None:
    # supported through Optional and list
    schema = schema_for(row_model(Node))
    tree = Node(value=1, children=[Node(value=2, children=[Node(value=3)])], parent=Node(value=0))
    model = schema.cls
    assert round_trip(schema, model(f=tree)) == model(f=tree)
    assert "repeated Row.Node children = 2;" in emit_proto([schema])

    # refused when the model contains itself through a required field
    class Loop(BaseModel):
        again: Loop

    with pytest.raises(SchemaError, match="recursive model Loop contains itself"):
        schema_for(row_model(Optional[Loop]))

    class PingPong(BaseModel):
        pong: Optional[PongPing] = None
        strict: PongPing

    class PongPing(BaseModel):
        ping: PingPong

    PingPong.model_rebuild()
    with pytest.raises(SchemaError, match="recursive model"):
        schema_for(row_model(list[PingPong]))

    # and a synapse cannot contain itself
    class Selfish(BaseModel):
        me: Optional[Selfish] = None

    with pytest.raises(SchemaError, match="a synapse cannot contain itself"):
        schema_for(Selfish)


def test_not_a_model_is_refused() -> None:
    with pytest.raises(SchemaError):
        schema_for(int)  # type: ignore[arg-type]


# --------------------------------------------------------------------- JSON opt-in


class WithJson(BaseModel):
    proto_json_fields: ClassVar[tuple[str, ...]] = ("meta", "when", "anything")

    prompt: str = ""
    meta: dict[str, Any] = {}
    when: dt.datetime
    anything: Any = None


def test_json_carried_fields_round_trip() -> None:
    schema = schema_for(WithJson)
    assert schema.json_fields == ("meta", "when", "anything")
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    value = WithJson(prompt="p", meta={"a": [1, 2.5, "x", None]}, when=when, anything={"z": 1})
    data = schema.to_bytes(value)
    decoded = schema.from_bytes(data)
    assert decoded["meta"] == {"a": [1, 2.5, "x", None]}
    assert decoded["when"] == when
    assert WithJson.model_validate(decoded) == value

    msg = schema.message_class.FromString(data)
    assert msg.meta == b'{"a":[1,2.5,"x",null]}'
    assert msg.when == b'"2024-05-06T07:08:09Z"'
    # None is carried as JSON null, and comes back as None
    assert (
        schema.message_class.FromString(schema.to_bytes(value.model_copy(update={"anything": None}))).anything
        == b"null"
    )
    assert schema.from_bytes(schema.to_bytes(value.model_copy(update={"anything": None})))["anything"] is None


def test_json_carried_fields_in_proto_text() -> None:
    text = emit_proto([schema_for(WithJson)])
    assert "  // JSON-encoded dict[str, typing.Any]\n  bytes meta = 2;\n" in text
    assert "  // JSON-encoded datetime.datetime\n  bytes when = 3;\n" in text
    assert "  // JSON-encoded typing.Any\n  bytes anything = 4;\n" in text


def test_json_carried_field_errors_and_absence() -> None:
    schema = schema_for(WithJson)
    cls = schema.message_class
    good_when = b'"2024-01-01T00:00:00Z"'
    with pytest.raises(ValueError, match=r"WithJson\.meta") as info:
        schema.from_bytes(cls(meta=b"{not json", when=good_when).SerializeToString())
    assert not isinstance(info.value, SchemaError)
    with pytest.raises(ValueError, match=r"WithJson\.when"):
        schema.from_bytes(cls(when=b'"not a date"').SerializeToString())
    # an absent JSON field is left out so that pydantic applies the default
    decoded = schema.from_bytes(cls(when=good_when).SerializeToString())
    assert decoded == {"prompt": "", "when": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)}
    assert WithJson.model_validate(decoded).meta == {}


def test_json_opt_in_on_nested_model() -> None:
    class Inner(BaseModel):
        proto_json_fields: ClassVar[tuple[str, ...]] = ("blob",)
        blob: Any = None

    schema = schema_for(row_model(Inner))
    assert "  message Inner {\n    // JSON-encoded typing.Any\n    bytes blob = 1;" in emit_proto([schema])
    value = schema.cls(f=Inner(blob={"deep": True}))
    assert round_trip(schema, value) == value


# ---------------------------------------------------------------------------- enums


class Level(enum.IntEnum):
    HIGH = 5
    OFF = 0
    LOW = 2


class Rank(enum.IntEnum):  # no zero value: numbered in declaration order
    FIRST = 1
    SECOND = 2


class HTTPMethod(enum.Enum):
    GET = "GET"
    POST = "POST"


def _enum_numbers(schema: SynapseSchema, name: str) -> dict[str, int]:
    return {v.name: v.number for v in schema.descriptor.enum_types_by_name[name].values}


def test_enum_numbering_uses_int_values_when_zero_is_present() -> None:
    schema = schema_for(row_model(Level))
    assert _enum_numbers(schema, "Level") == {"LEVEL_OFF": 0, "LEVEL_HIGH": 5, "LEVEL_LOW": 2}
    # proto3: the zero value is declared first
    assert next(v.name for v in schema.descriptor.enum_types_by_name["Level"].values) == "LEVEL_OFF"
    assert schema.to_bytes({"f": Level.HIGH}) == b"\x08\x05"
    assert schema.to_bytes({"f": 5}) == b"\x08\x05"  # raw values are accepted too
    assert schema.from_bytes(b"\x08\x02") == {"f": Level.LOW}
    assert schema.from_bytes(b"") == {"f": Level.OFF}
    assert schema.zero_values() == {"f": Level.OFF}


def test_enum_numbering_by_position_otherwise() -> None:
    schema = schema_for(row_model(Rank))
    assert _enum_numbers(schema, "Rank") == {"RANK_FIRST": 0, "RANK_SECOND": 1}
    assert schema.to_bytes({"f": Rank.SECOND}) == b"\x08\x01"
    assert schema.from_bytes(b"") == {"f": Rank.FIRST}

    schema = schema_for(row_model(HTTPMethod))
    assert _enum_numbers(schema, "HTTPMethod") == {"HTTP_METHOD_GET": 0, "HTTP_METHOD_POST": 1}
    assert schema.to_bytes({"f": HTTPMethod.POST}) == b"\x08\x01"
    assert schema.to_bytes({"f": "POST"}) == b"\x08\x01"
    assert schema.from_bytes(b"\x08\x01") == {"f": HTTPMethod.POST}


def test_enum_errors_name_the_field() -> None:
    schema = schema_for(row_model(Color))
    with pytest.raises(ValueError, match=r"Row\.f: 7 is not a value of enum Color"):
        schema.from_bytes(b"\x08\x07")
    with pytest.raises(ValueError, match=r"Row\.f: 'purple' is not a member of Color"):
        schema.to_bytes({"f": "purple"})


# ------------------------------------------------------------- Optional containers


def test_optional_list_and_dict_keep_none_distinct_from_empty() -> None:
    schema = schema_for(create_model("Row", xs=(Optional[list[int]], None), m=(Optional[dict[str, str]], None)))
    none, empty = schema.to_bytes({"xs": None, "m": None}), schema.to_bytes({"xs": [], "m": {}})
    assert none == b""
    assert empty == b"\x0a\x00\x12\x00"
    assert schema.from_bytes(none) == {"xs": None, "m": None}
    assert schema.from_bytes(empty) == {"xs": [], "m": {}}
    assert schema.from_bytes(schema.to_bytes({"xs": [1], "m": {"a": "b"}})) == {
        "xs": [1],
        "m": {"a": "b"},
    }


# ------------------------------------------------------------------------- nesting


def test_nested_model_round_trip() -> None:
    class Address(BaseModel):
        street: str
        number: Optional[int] = None

    class Person(BaseModel):
        name: str
        home: Address
        work: Optional[Address] = None
        past: list[Address] = []
        by_tag: dict[str, Address] = {}

    schema = schema_for(row_model(Person))
    value = schema.cls(
        f=Person(
            name="ann",
            home=Address(street="a", number=0),
            past=[Address(street="b")],
            by_tag={"x": Address(street="c", number=3)},
        )
    )
    decoded = schema.from_bytes(schema.to_bytes(value))
    assert decoded["f"]["home"] == {"street": "a", "number": 0}
    assert decoded["f"]["work"] is None
    assert schema.cls.model_validate(decoded) == value
    # nested values may be given as dicts
    as_dict = {
        "f": {
            "name": "ann",
            "home": {"street": "a", "number": 0},
            "past": [{"street": "b"}],
            "by_tag": {"x": {"street": "c", "number": 3}},
        }
    }
    assert schema.to_bytes(as_dict) == schema.to_bytes(value)
    # a non-optional model that is absent decodes as its zero value
    assert schema.from_bytes(b"")["f"] == {
        "name": "",
        "home": {"street": "", "number": None},
        "work": None,
        "past": [],
        "by_tag": {},
    }


# -------------------------------------------------------------- conversion errors


def test_int_out_of_range_names_the_field() -> None:
    schema = schema_for(Dummy)
    with pytest.raises(ValueError, match=r"Dummy\.input"):
        schema.to_bytes({"input": 2**63})
    with pytest.raises(ValueError, match=r"Dummy\.output"):
        schema.to_bytes(Dummy.model_construct(input=1, output=-(2**63) - 1))
    nested = schema_for(row_model(list[Point]))
    with pytest.raises(ValueError, match=r"Point\.x"):
        nested.to_bytes({"f": [{"x": 2**64}]})
    repeated = schema_for(row_model(list[int]))
    with pytest.raises(ValueError, match=r"Row\.f"):
        repeated.to_bytes({"f": [1, 2**70]})


def test_wrong_value_type_names_the_field() -> None:
    schema = schema_for(Dummy)
    with pytest.raises(TypeError, match=r"Dummy\.input"):
        schema.to_bytes({"input": "seven"})
    with pytest.raises(TypeError, match="expected a pydantic model or a mapping"):
        schema.to_bytes([("input", 1)])  # type: ignore[arg-type]


def test_undecodable_bytes() -> None:
    schema = schema_for(Dummy)
    for data in (b"\xff\xff\xff", b"\x0a\x05ab", b"\x08"):
        with pytest.raises(ValueError, match=r"^body is not a valid Dummy message$") as info:
            schema.from_bytes(data)
        assert not isinstance(info.value, SchemaError)
    text = schema_for(row_model(str))
    with pytest.raises(ValueError, match="body is not a valid Row message"):
        text.from_bytes(b"\x0a\x02\xff\xfe")  # bad UTF-8 in a string field


# ------------------------------------------------------------------------ zero values


def test_zero_values() -> None:
    class Inner(BaseModel):
        a: int
        b: str = "kept"
        c: Color

    class Req(BaseModel):
        proto_json_fields: ClassVar[tuple[str, ...]] = ("blob",)
        i: int
        f: float
        s: str
        ok: bool
        raw: bytes
        xs: list[int]
        m: dict[str, int]
        inner: Inner
        color: Color
        level: Level
        maybe: Optional[int]  # required (no default) but optional: None
        maybe_xs: Optional[list[int]]
        blob: Any  # JSON-carried: no zero value, left to pydantic
        defaulted: int = 5

    schema = schema_for(Req)
    zero = schema.zero_values()
    assert zero == {
        "i": 0,
        "f": 0.0,
        "s": "",
        "ok": False,
        "raw": b"",
        "xs": [],
        "m": {},
        "inner": Inner.model_construct(a=0, c=Color.RED),
        "color": Color.RED,
        "level": Level.OFF,
        "maybe": None,
        "maybe_xs": None,
    }
    assert zero["inner"].b == "kept"
    assert schema.zero_values()["xs"] is not zero["xs"]  # fresh containers each call
    assert Req.model_validate({**zero, "blob": None}).defaulted == 5
    assert schema_for(Dummy).zero_values() == {"input": 0}


# -------------------------------------------------------------- stability & caching


def test_field_numbers_stable_when_subclass_appends() -> None:
    class V1(BaseModel):
        a: int = 0
        b: str = ""

    class V2(V1):
        c: float = 0.0

    old, new = schema_for(V1), schema_for(V2)
    assert [(f.name, f.number) for f in old.descriptor.fields] == [("a", 1), ("b", 2)]
    assert [(f.name, f.number) for f in new.descriptor.fields] == [("a", 1), ("b", 2), ("c", 3)]
    data = new.to_bytes(V2(a=1, b="x", c=2.5))
    assert old.from_bytes(data) == {"a": 1, "b": "x"}  # old readers skip the new field
    assert new.from_bytes(old.to_bytes(V1(a=1, b="x"))) == {"a": 1, "b": "x", "c": 0.0}


def _make_dummy_with_text() -> type[BaseModel]:
    class Dummy(BaseModel):
        text: str = ""
        count: int = 0

    return Dummy


def test_two_classes_with_the_same_name_get_independent_schemas() -> None:
    other = _make_dummy_with_text()
    first, second = schema_for(Dummy), schema_for(other)
    assert first is not second
    assert first.name == second.name == "Dummy"
    assert first.message_class is not second.message_class
    assert first.descriptor.full_name == second.descriptor.full_name == "axon.v1.Dummy"
    assert first.field_names == ("input", "output")
    assert second.field_names == ("text", "count")
    assert second.to_bytes({"text": "hi", "count": 2}) == b"\x0a\x02hi\x10\x02"
    assert first.from_bytes(b"\x08\x07") == {"input": 7, "output": None}
    assert second.from_bytes(b"\x08\x07") == {"text": "", "count": 0}
    third = schema_for(_make_dummy_with_text())
    assert third is not second and third.field_names == second.field_names
    with pytest.raises(SchemaError, match="duplicate message name 'Dummy'"):
        build_service_file([first, second])


def test_schema_is_cached_per_class_and_thread_safe() -> None:
    assert schema_for(Dummy) is schema_for(Dummy)
    fresh = _make_dummy_with_text()
    results: list[SynapseSchema] = []
    threads = [threading.Thread(target=lambda: results.append(schema_for(fresh))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r is results[0] for r in results)


def test_to_bytes_is_deterministic_for_maps() -> None:
    schema = schema_for(row_model(dict[str, int]))
    a = schema.to_bytes({"f": {"b": 2, "a": 1, "c": 3}})
    b = schema.to_bytes({"f": {"c": 3, "a": 1, "b": 2}})
    assert a == b


# ------------------------------------------------------------------- service & text


def _all_schemas() -> list[SynapseSchema]:
    return [schema_for(Dummy), schema_for(Everything), schema_for(WithJson)]


def test_emit_proto_is_deterministic() -> None:
    first = emit_proto(_all_schemas(), header_comment="generated by axon-grpc\ndo not edit")
    second = emit_proto(_all_schemas(), header_comment="generated by axon-grpc\ndo not edit")
    assert first == second
    # and independent of the schema objects: a fresh, equal class renders identically
    assert emit_proto([schema_for(_make_dummy_with_text())]) == emit_proto([schema_for(_make_dummy_with_text())])
    assert first.startswith('// generated by axon-grpc\n// do not edit\n\nsyntax = "proto3";\n')


def test_emit_proto_layout() -> None:
    text = emit_proto([schema_for(Dummy)])
    assert text == (
        'syntax = "proto3";\n'
        "\n"
        "package axon.v1;\n"
        "\n"
        "service Axon {\n"
        "  rpc Dummy(axon.v1.Dummy) returns (axon.v1.Dummy);\n"
        "}\n"
        "\n"
        "message Dummy {\n"
        "  int64 input = 1;\n"
        "  optional int64 output = 2;\n"
        "}\n"
    )


def test_build_service_file() -> None:
    schemas = _all_schemas()
    chunk = schema_for(create_model("EverythingChunk", data=(str, "")))
    fdp = build_service_file(schemas, streaming={"Everything": chunk})
    assert isinstance(fdp, descriptor_pb2.FileDescriptorProto)
    assert fdp.package == "axon.v1" and fdp.syntax == "proto3"
    assert [m.name for m in fdp.message_type] == [
        "Dummy",
        "Everything",
        "EverythingChunk",
        "EverythingStream",
        "WithJson",
    ]
    (service,) = fdp.service
    assert service.name == "Axon"
    methods = {m.name: m for m in service.method}
    assert methods["Dummy"].input_type == ".axon.v1.Dummy"
    assert methods["Dummy"].output_type == ".axon.v1.Dummy"
    assert not methods["Dummy"].server_streaming
    assert methods["Everything"].server_streaming
    assert methods["Everything"].output_type == ".axon.v1.EverythingStream"
    text = emit_proto(schemas, streaming={"Everything": chunk})
    assert "  rpc Everything(axon.v1.Everything) returns (stream axon.v1.EverythingStream);\n" in text
    assert "  EverythingChunk chunk = 1;\n  Everything final = 2;\n" in text
    with pytest.raises(SchemaError, match="streaming names no attached synapse: Nope"):
        build_service_file(schemas, streaming={"Nope": chunk})
    with pytest.raises(SchemaError, match="service"):
        build_service_file(schemas, service="not valid")
    # another package re-qualifies every type reference
    other = build_service_file(schemas, package="acme.v2", service="Miner")
    where = next(f for f in other.message_type[1].field if f.name == "where")
    assert where.type_name == ".acme.v2.Everything.Point"
    assert "package acme.v2;" in render_proto(other)
    # a synapse named like the service clashes in protobuf's scope
    with pytest.raises(SchemaError, match="same name as the service"):
        build_service_file([schema_for(create_model("Axon", a=(int, 0)))])


def test_protoc_compiles_the_emitted_file_to_the_same_descriptors(tmp_path: Any) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc")
    schemas = [
        *_all_schemas(),
        schema_for(row_model(Level, name="Levels")),
        schema_for(create_model("Synapse", __base__=FakeSynapse)),
        # scoping corner: a field named like its message, next to a `Wrap.Point` reference
        schema_for(create_model("Wrap", Wrap=(int, 0), p=(Point, Point()))),
    ]
    chunk = schema_for(create_model("DummyChunk", data=(bytes, b"")))
    ours = build_service_file(schemas, streaming={"Dummy": chunk})
    text = emit_proto(schemas, header_comment="test file", streaming={"Dummy": chunk})
    proto = tmp_path / "axon" / "v1" / "axon.proto"
    proto.parent.mkdir(parents=True)
    proto.write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    descriptor_set = tmp_path / "set.pb"
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{tmp_path}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--descriptor_set_out={descriptor_set}",
            "axon/v1/axon.proto",
        ]
    )
    assert rc == 0
    assert (out / "axon" / "v1" / "axon_pb2.py").exists()

    (theirs,) = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file
    mine = descriptor_pb2.FileDescriptorProto()
    mine.CopyFrom(ours)
    mine.ClearField("source_code_info")

    def clear_json_names(messages: Any) -> None:
        for m in messages:
            for f in m.field:
                f.ClearField("json_name")
            clear_json_names(m.nested_type)

    clear_json_names(theirs.message_type)
    assert theirs == mine
