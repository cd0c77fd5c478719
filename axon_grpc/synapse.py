"""Synapse and TerminalInfo: the typed request/response objects of the Axon model.

Field set and behaviour follow Bittensor's ``bittensor.core.synapse`` (SDK 7.2-10.5),
so a miner's synapse classes port by changing an import: header (de)serialization
with ``bt_header_*`` names, ``body_hash`` over ``required_hash_fields``,
``get_total_size`` and the ``is_*`` status properties.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from typing import Any, ClassVar, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Names of the fields every synapse has; they travel as headers/metadata, never in
#: the protobuf message, and are not "user fields".
BASE_FIELDS: frozenset[str] = frozenset(
    {"name", "timeout", "total_size", "header_size", "dendrite", "axon", "computed_body_hash"}
)

#: Terminal-info header prefixes (``bt_header_dendrite_nonce`` ...).
AXON_PREFIX = "bt_header_axon_"
DENDRITE_PREFIX = "bt_header_dendrite_"
INPUT_OBJ_PREFIX = "bt_header_input_obj_"

#: The plain headers that map one-to-one onto base fields.
_PLAIN_HEADERS = frozenset({"name", "timeout", "header_size", "total_size", "computed_body_hash"})
_AXON_CUT, _DENDRITE_CUT, _INPUT_CUT = len(AXON_PREFIX), len(DENDRITE_PREFIX), len(INPUT_OBJ_PREFIX)

EMPTY_HASH = hashlib.sha3_256(b"").hexdigest()


def get_hash(content: str) -> str:
    """Lowercase hex SHA3-256 of ``content`` encoded UTF-8 (Bittensor's ``get_hash``)."""
    return hashlib.sha3_256(content.encode("utf-8")).hexdigest()


def get_size(obj: Any, seen: set[int] | None = None) -> int:
    """Recursive ``sys.getsizeof`` over containers and object attributes."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(get_size(k, seen) + get_size(v, seen) for k, v in obj.items())
    elif hasattr(obj, "__dict__"):
        size += get_size(vars(obj), seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        size += sum(get_size(i, seen) for i in obj)
    return size


def _cast_int(raw: Any) -> Any:
    if isinstance(raw, str) and raw != "":
        try:
            return int(raw)
        except ValueError:
            raise ValueError("not an integer") from None  # never echo the value
    return raw


def _cast_float(raw: Any) -> Any:
    if isinstance(raw, str) and raw != "":
        try:
            return float(raw)
        except ValueError:
            raise ValueError("not a number") from None
    return raw


class TerminalInfo(BaseModel):
    """One end of a call: the dendrite (caller) or the axon (server)."""

    model_config = ConfigDict(validate_assignment=True)

    status_code: Optional[int] = Field(None, description="HTTP-style status of the call")
    status_message: Optional[str] = Field(None, description="Human-readable status")
    process_time: Optional[float] = Field(None, description="Seconds spent on the call")
    ip: Optional[str] = Field(None, description="IP address of the terminal")
    port: Optional[int] = Field(None, description="Port of the terminal")
    version: Optional[int] = Field(None, description="Protocol version as an int")
    nonce: Optional[int] = Field(None, description="time.time_ns() when the message was signed")
    uuid: Optional[str] = Field(None, description="Per-instance unique id of the terminal")
    hotkey: Optional[str] = Field(None, description="SS58 address of the terminal's hotkey")
    signature: Optional[str] = Field(None, description="'0x' + hex signature by the hotkey")

    _int_fields = field_validator("status_code", "port", "version", "nonce", mode="before")(_cast_int)
    _float_fields = field_validator("process_time", mode="before")(_cast_float)


class Synapse(BaseModel):
    """Base class of every request/response type an axon serves.

    Subclass it with your own fields; list in ``required_hash_fields`` the fields
    whose values the body hash (and so the signature) must cover.
    """

    model_config = ConfigDict(validate_assignment=True)

    required_hash_fields: ClassVar[tuple[str, ...]] = ()

    name: Optional[str] = Field(None, frozen=True, description="The synapse class name")
    timeout: Optional[float] = Field(12.0, description="Seconds the caller waits for a response")
    total_size: Optional[int] = Field(0, description="Approximate size of the synapse in bytes")
    header_size: Optional[int] = Field(0, description="Approximate size of the headers in bytes")
    dendrite: Optional[TerminalInfo] = Field(default_factory=TerminalInfo, description="Caller info")
    axon: Optional[TerminalInfo] = Field(default_factory=TerminalInfo, description="Server info")
    computed_body_hash: Optional[str] = Field("", frozen=True, description="Hash of the body")

    _int_fields = field_validator("total_size", "header_size", mode="before")(_cast_int)
    _float_fields = field_validator("timeout", mode="before")(_cast_float)

    @model_validator(mode="before")
    @classmethod
    def _set_name(cls, values: Any) -> Any:
        if isinstance(values, dict):
            values = {**values, "name": cls.__name__}  # never write into the caller's dict
        return values

    def deserialize(self) -> Any:
        """What ``Dendrite.forward(..., deserialize=True)`` returns; override to unwrap."""
        return self

    # -- status -------------------------------------------------------------------
    @property
    def is_success(self) -> bool:
        return self.dendrite is not None and self.dendrite.status_code == 200

    @property
    def is_failure(self) -> bool:
        return self.dendrite is not None and self.dendrite.status_code != 200

    @property
    def is_timeout(self) -> bool:
        return self.dendrite is not None and self.dendrite.status_code == 408

    @property
    def is_blacklist(self) -> bool:
        return self.dendrite is not None and self.dendrite.status_code == 403

    @property
    def failed_verification(self) -> bool:
        return self.dendrite is not None and self.dendrite.status_code == 401

    # -- sizes and hashes -----------------------------------------------------------
    def get_total_size(self) -> int:
        """Recompute, store and return ``total_size``."""
        self.total_size = get_size(self)
        return self.total_size  # type: ignore[return-value]

    @classmethod
    def get_required_fields(cls) -> list[str]:
        """User fields without a default (a dendrite sends a placeholder header for each)."""
        return _required_fields(cls)

    @property
    def body_hash(self) -> str:
        """Legacy field-based hash: SHA3 of the joined SHA3s of ``str`` of each hashed field.

        The fields are those of :func:`hash_fields_of`, so both ways a class may declare
        ``required_hash_fields`` hash as Bittensor SDK 10.5 hashes them.
        """
        fields = hash_fields_of(self)
        if not fields:
            return EMPTY_HASH
        return field_body_hash(self.model_dump(include=set(fields)), fields)

    # -- headers ----------------------------------------------------------------------
    def to_headers(self) -> dict[str, str]:
        """The legacy HTTP headers of this synapse (all values are strings)."""
        headers: dict[str, str] = {"name": str(self.name)}
        if self.timeout is not None:
            headers["timeout"] = str(self.timeout)
        for prefix, info in ((AXON_PREFIX, self.axon), (DENDRITE_PREFIX, self.dendrite)):
            if info is None:
                continue
            for key, value in info.__dict__.items():
                if value is not None:
                    headers[prefix + key] = str(value)
        for field in _required_fields(type(self)):
            placeholder = input_obj_placeholder(getattr(self, field))
            if placeholder is not None:
                headers[INPUT_OBJ_PREFIX + field] = placeholder
        headers["header_size"] = str(sys.getsizeof(headers))
        headers["total_size"] = str(self.get_total_size())
        headers["computed_body_hash"] = self.body_hash
        return headers

    @classmethod
    def parse_headers_to_inputs(cls, headers: Mapping[str, str]) -> dict[str, Any]:
        """Constructor inputs from headers; undecodable ``input_obj`` headers are skipped."""
        axon: dict[str, str] = {}
        dendrite: dict[str, str] = {}
        inputs: dict[str, Any] = {"axon": axon, "dendrite": dendrite}
        user_fields = _user_fields(cls)
        for key, value in headers.items():
            if not key.startswith("bt_header_"):
                if key in _PLAIN_HEADERS:
                    inputs[key] = value
            elif key.startswith(DENDRITE_PREFIX):
                field = key[_DENDRITE_CUT:]
                if field in TERMINAL_FIELDS:
                    dendrite[field] = value
            elif key.startswith(AXON_PREFIX):
                field = key[_AXON_CUT:]
                if field in TERMINAL_FIELDS:
                    axon[field] = value
            elif key.startswith(INPUT_OBJ_PREFIX):
                field = key[_INPUT_CUT:]
                if field in user_fields:
                    try:
                        inputs[field] = json.loads(base64.b64decode(value, validate=True))
                    except (ValueError, TypeError):
                        continue
        return inputs

    @classmethod
    def from_headers(cls, headers: dict[str, str]) -> Synapse:
        """A synapse built from headers only (user fields from ``input_obj`` or defaults)."""
        return cls(**cls.parse_headers_to_inputs(headers))


def field_body_hash(dumped: dict[str, Any], fields: tuple[str, ...]) -> str:
    """The legacy body hash of already-dumped field values (PROTOCOL.md, "Body hash")."""
    return get_hash("".join(get_hash(str(dumped[f])) for f in fields))


_SCALARS = frozenset({int, float, str, bool, type(None)})
_TERMINAL_NONE = dict.fromkeys(TerminalInfo.model_fields)
_set = object.__setattr__


def terminal_info(**values: Any) -> TerminalInfo:
    """A TerminalInfo of already-checked ``values`` (every other field None), unvalidated.

    What ``TerminalInfo.model_construct`` makes, at a fraction of its cost: the request
    path builds two of these per call.
    """
    info = TerminalInfo.__new__(TerminalInfo)
    fields = dict(_TERMINAL_NONE)
    fields.update(values)
    _set(info, "__dict__", fields)
    _set(info, "__pydantic_fields_set__", set(values))
    _set(info, "__pydantic_extra__", None)
    _set(info, "__pydantic_private__", None)
    return info


def signed_fields(timeout: float | None, computed_body_hash: str, dendrite: TerminalInfo) -> Synapse:
    """A base Synapse holding only what a legacy signature covers (unvalidated, values
    already checked): what the signature check reads before any body is parsed."""
    synapse = Synapse.__new__(Synapse)
    _set(
        synapse,
        "__dict__",
        {
            "name": None,
            "timeout": timeout,
            "total_size": 0,
            "header_size": 0,
            "dendrite": dendrite,
            "axon": None,
            "computed_body_hash": computed_body_hash,
        },
    )
    _set(synapse, "__pydantic_fields_set__", {"timeout", "computed_body_hash", "dendrite"})
    _set(synapse, "__pydantic_extra__", None)
    _set(synapse, "__pydantic_private__", None)
    return synapse


def legacy_body_hash(synapse: Synapse, fields: tuple[str, ...]) -> str:
    """The legacy field-based body hash of ``synapse`` over ``fields``, without a full dump."""
    values = synapse.__dict__
    if all(type(values[f]) in _SCALARS for f in fields):  # str() of a scalar is that of its dump
        return field_body_hash(values, fields)
    return field_body_hash(synapse.model_dump(include=set(fields)), fields)


def hash_fields_of(synapse: Synapse | type[Synapse]) -> tuple[str, ...]:
    """The fields the legacy body hash covers, in the order they are hashed.

    A class declares them in one of two ways, and both hash as SDK 10.5 hashes them:

    - the class variable ``required_hash_fields = ("a", "b")``: those names, in that order;
    - the deprecated pydantic field ``required_hash_fields: list[str] = Field(["b", "a"])``:
      the names in the field's *default*, in field declaration order (the order of
      ``model_dump()``), whatever value an instance carries (a caller cannot change
      what is hashed).
    """
    cls = synapse if isinstance(synapse, type) else type(synapse)
    declared = cls.model_fields.get("required_hash_fields")
    if declared is None:
        return tuple(cls.required_hash_fields)
    found = _field_form_cache.get(cls)
    if found is None:
        named = set(declared.get_default(call_default_factory=True) or ())
        found = _field_form_cache[cls] = tuple(
            name for name, info in cls.model_fields.items() if name in named and not info.exclude
        )
    return found


_field_form_cache: dict[type, tuple[str, ...]] = {}
_answer_fields_cache: dict[type, tuple[str, ...]] = {}


def answer_fields(cls: type[Synapse]) -> tuple[str, ...]:
    """Every user field ``model_dump()`` includes, in declaration order: what a signed
    answer's HTTP body hash covers (the outputs too, unlike ``required_hash_fields``)."""
    found = _answer_fields_cache.get(cls)
    if found is None:
        found = _answer_fields_cache[cls] = tuple(
            name for name, info in cls.model_fields.items() if name not in BASE_FIELDS and not info.exclude
        )
    return found


def answer_body_hash(synapse: Synapse) -> str:
    """The body hash of a signed answer carried as JSON: the legacy rule over :func:`answer_fields`."""
    return legacy_body_hash(synapse, answer_fields(type(synapse)))


#: Field names of TerminalInfo (what ``bt_header_{axon,dendrite}_*`` may carry).
TERMINAL_FIELDS: frozenset[str] = frozenset(TerminalInfo.model_fields)

_user_fields_cache: dict[type, frozenset[str]] = {}


def _user_fields(cls: type[BaseModel]) -> frozenset[str]:
    found = _user_fields_cache.get(cls)
    if found is None:
        found = _user_fields_cache[cls] = frozenset(cls.model_fields) - BASE_FIELDS
    return found


_required_cache: dict[type, list[str]] = {}


def _required_fields(cls: type[BaseModel]) -> list[str]:
    found = _required_cache.get(cls)
    if found is None:
        found = [n for n, f in cls.model_fields.items() if f.is_required() and n not in BASE_FIELDS]
        _required_cache[cls] = found
    return found


_input_obj_cache: dict[type, str | None] = {}


def input_obj_placeholder(value: Any) -> str | None:
    """base64 of the JSON of the value type's default, as a legacy dendrite sends it.

    ``None`` when the type has no argument-free default (the header is then omitted).
    """
    kind = type(value)
    if kind not in _input_obj_cache:
        try:
            _input_obj_cache[kind] = base64.b64encode(json.dumps(kind()).encode()).decode()
        except (TypeError, ValueError):
            _input_obj_cache[kind] = None
    return _input_obj_cache[kind]
