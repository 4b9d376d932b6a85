"""Canonical, strict msgpack encoding of declared messages.

A message is a frozen dataclass deriving from :class:`Message` with a class-level ``TYPE`` id.
It is encoded as a msgpack map ``{"t": TYPE, <field>: <value>, ...}`` with the keys in sorted
order, so the same message always gives the same bytes.  Decoding is strict:

* the input must not exceed the class's ``MAX_BYTES`` and must hold exactly one msgpack object
  (no trailing bytes);
* the map must hold exactly the declared fields (an unknown or missing field is an error that
  names it) and every value must have the declared type (``True`` is not an int, a str is not
  bytes);
* the bytes must be the canonical encoding of the decoded message (re-encoding gives the same
  bytes), so a signature or hash over the bytes identifies one message and nothing else.

Field types: ``int``, ``float`` (finite), ``str``, ``bytes``, ``bool``, ``IntEnum`` subclasses,
nested ``Message`` subclasses, unions of ``Message`` subclasses (chosen by their ``"t"``),
``tuple[T, ...]`` and ``T | None``.  Bounds are declared with ``Annotated[...]`` and
:class:`Bytes`, :class:`Text`, :class:`Range`, :class:`Items`; they are checked both when a
message is built (so our own code cannot create an invalid one) and when it is decoded.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from typing import Annotated, Any, ClassVar, get_args, get_origin, get_type_hints

import msgpack

from ledger.errors import DecodeError, EncodeError

__all__ = ["Bytes", "Items", "Message", "Range", "Text", "MAX_MESSAGE_BYTES"]

MAX_MESSAGE_BYTES = 64 * 1024  # absolute ceiling for any message a peer may send us
TYPE_KEY = "t"
# msgpack.packb allocates a 256 KiB buffer per call, which costs more than packing a small
# message; the buffer grows when a message needs more.
_PACK_BUFFER_BYTES = 1024


@dataclasses.dataclass(frozen=True)
class Bytes:
    """Byte-string bounds: an exact ``size`` or at most ``max`` bytes."""

    size: int | None = None
    max: int = 1024


@dataclasses.dataclass(frozen=True)
class Text:
    """Text bounds: at most ``max`` characters."""

    max: int = 256


@dataclasses.dataclass(frozen=True)
class Range:
    """Inclusive numeric bounds."""

    lo: float
    hi: float


@dataclasses.dataclass(frozen=True)
class Items:
    """Sequence bounds: at most ``max`` items."""

    max: int = 64


class _Field:
    """How one declared type is checked, loaded from msgpack and dumped to msgpack."""

    def bad(self, v: str) -> str | None:
        """A Python expression, true when the decoded value named ``v`` is unacceptable as is.

        Used by the compiled loader (:func:`_compile_loader`) for a fast path; ``None`` means
        the value always goes through :meth:`load`.
        """
        return None

    def inline(self, v: str, name: str, env: dict) -> list[str]:
        """Lines of the compiled loader that check the decoded value ``v`` and make it typed.

        The fast path of :meth:`load`: any value the lines cannot accept as is goes through
        :meth:`load`, which raises the precise error.  Objects the lines use go into ``env``.
        """
        f = _bind(env, self)
        bad = self.bad(v)
        if bad is None:
            return [f"{v} = {f}.load({v}, path, {name!r})"]
        return [f"if {bad}:", f"    {f}.load({v}, path, {name!r})"]

    def check(self, value: Any, path: str) -> None:
        self.load(self.dump(value), path, "")

    def load(self, raw: Any, path: str, name: str) -> Any:
        """Check a decoded value (of field ``name`` under ``path``) and return it typed."""
        raise NotImplementedError

    def dump(self, value: Any) -> Any:
        return value


def _bind(env: dict, obj: Any) -> str:
    """Put ``obj`` into the compiled loader's namespace ``env``; return the name it has there."""
    name = f"_o{len(env)}"
    env[name] = obj
    return name


def _fail(path: str, why: str, name: str = "") -> typing.NoReturn:
    where = path if not name else f"{path}{name}" if name.startswith("[") else f"{path}.{name}"
    raise DecodeError(f"{where}: {why}")


class _Int(_Field):
    def __init__(self, bounds: Range | None):
        self.bounds = bounds or Range(-(2**63), 2**64 - 1)  # what msgpack can carry

    def bad(self, v: str) -> str:
        return f"type({v}) is not int or not {self.bounds.lo!r} <= {v} <= {self.bounds.hi!r}"

    def load(self, raw, path, name):
        if type(raw) is not int:
            _fail(path, f"expected int, got {type(raw).__name__}", name)
        if not self.bounds.lo <= raw <= self.bounds.hi:
            _fail(path, f"{raw} outside [{self.bounds.lo}, {self.bounds.hi}]", name)
        return raw


class _Float(_Field):
    def __init__(self, bounds: Range | None):
        self.bounds = bounds

    def load(self, raw, path, name):
        if type(raw) is not float:
            _fail(path, f"expected float, got {type(raw).__name__}", name)
        if not math.isfinite(raw):
            _fail(path, "must be finite", name)
        if self.bounds and not self.bounds.lo <= raw <= self.bounds.hi:
            _fail(path, f"{raw} outside [{self.bounds.lo}, {self.bounds.hi}]", name)
        return raw

    def dump(self, value):
        return float(value) if type(value) is int else value


class _Bool(_Field):
    def bad(self, v: str) -> str:
        return f"type({v}) is not bool"
    def load(self, raw, path, name):
        if type(raw) is not bool:
            _fail(path, f"expected bool, got {type(raw).__name__}", name)
        return raw


class _Str(_Field):
    def __init__(self, bounds: Text | None):
        self.max = (bounds or Text()).max

    def bad(self, v: str) -> str:
        return f"type({v}) is not str or len({v}) > {self.max}"

    def load(self, raw, path, name):
        if type(raw) is not str:
            _fail(path, f"expected str, got {type(raw).__name__}", name)
        if len(raw) > self.max:
            _fail(path, f"longer than {self.max} characters", name)
        return raw


class _Bin(_Field):
    def __init__(self, bounds: Bytes | None):
        bounds = bounds or Bytes()
        self.size, self.max = bounds.size, bounds.max

    def bad(self, v: str) -> str:
        size = f"len({v}) != {self.size}" if self.size is not None else f"len({v}) > {self.max}"
        return f"type({v}) is not bytes or {size}"

    def load(self, raw, path, name):
        if type(raw) is not bytes:
            _fail(path, f"expected bytes, got {type(raw).__name__}", name)
        if self.size is not None and len(raw) != self.size:
            _fail(path, f"expected {self.size} bytes, got {len(raw)}", name)
        if len(raw) > self.max:
            _fail(path, f"longer than {self.max} bytes", name)
        return raw


class _Enum(_Field):
    def __init__(self, enum_cls: type[enum.IntEnum]):
        self.enum_cls = enum_cls
        self.members = {int(member): member for member in enum_cls}

    def inline(self, v, name, env):
        f = _bind(env, self)
        return [  # a dict look-up instead of the (slow) call of the enum class
            f"m = {f}.members.get({v}) if type({v}) is int else None",
            "if m is None:",
            f"    {f}.load({v}, path, {name!r})",
            f"{v} = m",
        ]

    def load(self, raw, path, name):
        if type(raw) is not int:
            _fail(path, f"expected {self.enum_cls.__name__} (int), got {type(raw).__name__}", name)
        try:
            return self.enum_cls(raw)
        except ValueError:
            _fail(path, f"{raw} is not a {self.enum_cls.__name__}", name)

    def dump(self, value):
        return int(value)

    def check(self, value, path):
        if not isinstance(value, self.enum_cls):
            _fail(path, f"expected {self.enum_cls.__name__}, got {type(value).__name__}")


class _Nested(_Field):
    def __init__(self, classes: tuple[type[Message], ...]):
        self.by_type = {cls.TYPE: cls for cls in classes}
        self.names = " | ".join(cls.__name__ for cls in classes)
        # type id -> compiled loader, filled by load() (lazily: a class may nest itself)
        self.loaders: dict[int, Any] = {}

    def load(self, raw, path, name):
        if type(raw) is not dict:
            _fail(path, f"expected {self.names} (map), got {type(raw).__name__}", name)
        type_id = raw.get(TYPE_KEY)
        cls = self.by_type.get(type_id) if type(type_id) is int else None
        if cls is None:
            _fail(path, f"type id {type_id!r} is not one of {self.names}", name)
        self.loaders[cls.TYPE] = cls._schema().load
        return cls._load(raw, f"{path}.{name}" if name else path)

    def inline(self, v, name, env):
        f = _bind(env, self)
        return [  # the nested class's own compiled loader, once load() has looked it up
            f"m = {v}.get({TYPE_KEY!r}) if type({v}) is dict else None",
            f"m = {f}.loaders.get(m) if type(m) is int else None",
            "if m is None:",
            f"    {v} = {f}.load({v}, path, {name!r})",
            "else:",
            f"    {v} = m({v}, path + {'.' + name!r})",
        ]

    def dump(self, value):
        return value._dump()

    def check(self, value, path):
        if type(value) not in self.by_type.values():
            _fail(path, f"expected {self.names}, got {type(value).__name__}")


class _Optional(_Field):
    def __init__(self, inner: _Field):
        self.inner = inner

    def load(self, raw, path, name):
        return None if raw is None else self.inner.load(raw, path, name)

    def inline(self, v, name, env):
        return [f"if {v} is not None:", *("    " + line for line in self.inner.inline(v, name, env))]

    def dump(self, value):
        return None if value is None else self.inner.dump(value)

    def check(self, value, path):
        if value is not None:
            self.inner.check(value, path)


class _Tuple(_Field):
    def __init__(self, inner: _Field, bounds: Items | None):
        self.inner, self.max = inner, (bounds or Items()).max

    def load(self, raw, path, name):
        if type(raw) is not list:
            _fail(path, f"expected a list, got {type(raw).__name__}", name)
        if len(raw) > self.max:
            _fail(path, f"more than {self.max} items", name)
        where = f"{path}.{name}" if name else path
        return tuple(self.inner.load(item, where, f"[{i}]") for i, item in enumerate(raw))

    def dump(self, value):
        return [self.inner.dump(item) for item in value]

    def check(self, value, path):
        if type(value) is not tuple:
            _fail(path, f"expected a tuple, got {type(value).__name__}")
        if len(value) > self.max:
            _fail(path, f"more than {self.max} items")
        for i, item in enumerate(value):
            self.inner.check(item, f"{path}[{i}]")


def _field_for(hint: Any) -> _Field:
    bounds = None
    if get_origin(hint) is Annotated:
        hint, bounds = get_args(hint)[0], get_args(hint)[1]
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = get_args(hint)
        if type(None) in args:
            rest = tuple(a for a in args if a is not type(None))
            inner = _field_for(rest[0] if len(rest) == 1 else typing.Union[rest])
            return _Optional(inner)
        return _Nested(args)
    if origin is tuple:
        return _Tuple(_field_for(get_args(hint)[0]), bounds)
    if isinstance(hint, type) and issubclass(hint, enum.IntEnum):
        return _Enum(hint)
    if isinstance(hint, type) and issubclass(hint, Message):
        return _Nested((hint,))
    simple = {int: _Int, float: _Float, str: _Str, bytes: _Bin}
    if hint is bool:
        return _Bool()
    if hint in simple:
        return simple[hint](bounds)
    raise TypeError(f"unsupported field type {hint!r}")


class _Schema:
    def __init__(self, cls: type[Message]):
        hints = get_type_hints(cls, include_extras=True)
        names = [f.name for f in dataclasses.fields(cls)]
        if TYPE_KEY in names:
            raise TypeError(f"{cls.__name__}: field name {TYPE_KEY!r} is reserved")
        self.fields = [(name, _field_for(hints[name])) for name in sorted(names)]
        self.keys = sorted([TYPE_KEY, *names])
        self.load = _compile_loader(cls, self)


def _compile_loader(cls: type[Message], schema: _Schema):
    """Generate ``load(raw, path) -> cls`` with the field checks inlined.

    Decoding is on the hot path of chain verification; inlining the common checks (and calling
    nested messages' compiled loaders directly) makes it several times faster than calling one
    checker per field.  On any failure the field's own :meth:`_Field.load` raises the precise
    error.
    """
    env = {"cls": cls, "new": object.__new__, "fail": _fail, "keys": schema.keys,
           "mismatch": _key_mismatch, "schema": schema}
    names = {name: f"v{i}" for i, (name, _) in enumerate(schema.fields)} | {TYPE_KEY: "m"}
    lines = [
        "def load(raw, path):",
        "    if list(raw) != keys:",
        "        fail(path, mismatch(cls, raw, schema))",
        f"    {', '.join(names[key] for key in schema.keys)}, = raw.values()",
        f"    if type(m) is not int or m != {cls.TYPE!r}:",
        "        fail(path, mismatch(cls, raw, schema))",
    ]
    for i, (name, field) in enumerate(schema.fields):
        lines += ("    " + line for line in field.inline(f"v{i}", name, env))
    values = ", ".join(f"{name!r}: v{i}" for i, (name, _) in enumerate(schema.fields))
    lines += [
        "    obj = new(cls)",
        f"    obj.__dict__.update({{{values}}})  # frozen dataclass: no __setattr__",
    ]
    if cls.validate is not Message.validate:
        lines += [
            "    problem = obj.validate()",
            "    if problem:",
            "        fail(path, problem)",
        ]
    lines.append("    return obj")
    exec("\n".join(lines), env)  # noqa: S102 -- code built from our own declarations only
    return env["load"]


class Message:
    """Base of every declared message: subclass as ``@dataclass(frozen=True)``."""

    TYPE: ClassVar[int]
    MAX_BYTES: ClassVar[int] = 4096
    _schemas: ClassVar[dict[type, _Schema]] = {}

    # -- building --------------------------------------------------------------------
    def __post_init__(self) -> None:
        schema = self._schema()
        for name, field in schema.fields:
            try:
                field.check(getattr(self, name), f"{type(self).__name__}.{name}")
            except DecodeError as exc:
                raise EncodeError(str(exc)) from None
        problem = self.validate()
        if problem:
            raise EncodeError(f"{type(self).__name__}: {problem}")

    def validate(self) -> str | None:
        """Cross-field rule of this message: return a description of what is wrong, or None."""
        return None

    @classmethod
    def _schema(cls) -> _Schema:
        schema = Message._schemas.get(cls)
        if schema is None:
            schema = Message._schemas[cls] = _Schema(cls)
        return schema

    # -- encoding --------------------------------------------------------------------
    def _dump(self) -> dict:
        out = {TYPE_KEY: self.TYPE}
        for name, field in self._schema().fields:
            out[name] = field.dump(getattr(self, name))
        return dict(sorted(out.items()))

    def encode(self) -> bytes:
        """The canonical bytes of this message."""
        return _pack(self._dump())

    # -- decoding --------------------------------------------------------------------
    @classmethod
    def _load(cls, raw: dict, path: str) -> Message:
        return cls._schema().load(raw, path)

    @classmethod
    def decode(cls, data: bytes) -> typing.Self:
        """Decode ``data`` strictly; raise :class:`DecodeError` naming what is wrong."""
        if type(data) is not bytes:
            raise DecodeError(f"{cls.__name__}: expected bytes, got {type(data).__name__}")
        if len(data) > cls.MAX_BYTES:
            raise DecodeError(f"{cls.__name__}: {len(data)} bytes exceeds {cls.MAX_BYTES}")
        raw = unpack_strict(data, cls.__name__)
        if type(raw) is not dict:
            raise DecodeError(f"{cls.__name__}: expected a map, got {type(raw).__name__}")
        schema = Message._schemas.get(cls) or cls._schema()
        obj = schema.load(raw, cls.__name__)
        # load accepted exactly the declared keys in sorted order and exactly the declared
        # value types, so re-packing the decoded objects gives the canonical bytes (in C).
        if _pack(raw) != data:
            raise DecodeError(f"{cls.__name__}: bytes are not the canonical encoding")
        return obj


def _pack(obj: Any) -> bytes:
    """msgpack bytes of ``obj`` (``msgpack.packb`` with a buffer the size of a message)."""
    return msgpack.Packer(use_bin_type=True, buf_size=_PACK_BUFFER_BYTES).pack(obj)


def unpack_strict(data: bytes, what: str) -> Any:
    """Unpack exactly one msgpack object with string keys and no ext types."""
    try:
        return msgpack.unpackb(
            data, raw=False, strict_map_key=True, use_list=True, ext_hook=_no_ext,
        )
    except msgpack.ExtraData:
        raise DecodeError(f"{what}: trailing bytes after the message") from None
    except DecodeError:
        raise
    except (ValueError, msgpack.UnpackException) as exc:
        raise DecodeError(f"{what}: malformed msgpack ({exc})") from exc


def _no_ext(code: int, data: bytes) -> typing.NoReturn:
    raise DecodeError(f"msgpack extension type {code} is not allowed")


def _key_mismatch(cls: type[Message], raw: dict, schema: _Schema) -> str:
    """What is wrong with the type id or the keys of ``raw`` as a ``cls``."""
    type_id = raw.get(TYPE_KEY)
    if type(type_id) is not int or type_id != cls.TYPE:
        return f"type id {type_id!r} is not {cls.__name__} ({cls.TYPE})"
    present, declared = set(raw), set(schema.keys)
    unknown = sorted(map(str, present - declared))
    missing = sorted(declared - present)
    if unknown:
        return f"unknown field {unknown[0]!r} in {cls.__name__}"
    if missing:
        return f"missing field {missing[0]!r} in {cls.__name__}"
    return f"fields of {cls.__name__} are not in canonical (sorted) order"
