"""How Python 3.12 and later decide ``isinstance(obj, SomeRuntimeProtocol)``, checked on
any version.

Since 3.12 a runtime-checkable Protocol's members are looked up with
:func:`inspect.getattr_static`, which never calls ``__getattr__``, and a member whose
value is ``None`` counts as absent (a class opts out of a method so, as ``__hash__ =
None`` does of hashing). Python 3.11 asks ``hasattr`` instead, so a proxy that forwards
through ``__getattr__`` passes there and fails here.
"""

from __future__ import annotations

import builtins
import inspect
import typing
from typing import Any

_MISSING = object()


def protocol_members(protocol: type) -> frozenset[str]:
    """The members ``isinstance`` checks for ``protocol``, on 3.11 and on 3.12+."""
    members = getattr(protocol, "__protocol_attrs__", None)  # 3.12 and later
    if members is None:
        members = typing._get_protocol_attrs(protocol)  # type: ignore[attr-defined]
    return frozenset(members)


def has_member_statically(obj: object, name: str) -> bool:
    """Whether ``name`` counts as present on ``obj`` by the 3.12 rule."""
    return inspect.getattr_static(obj, name, _MISSING) not in (_MISSING, None)


def is_runtime_protocol(obj: object) -> bool:
    return isinstance(obj, type) and getattr(obj, "_is_runtime_protocol", False) is True


def satisfies_as_of_312(obj: object, protocol: type) -> bool:
    """``isinstance(obj, protocol)`` as Python 3.12 and later answer it."""
    return all(has_member_statically(obj, name) for name in protocol_members(protocol))


def isinstance_as_of_312(obj: object, classes: Any) -> bool:
    """:func:`isinstance` with runtime-checkable Protocols checked by the 3.12 rule."""
    if is_runtime_protocol(classes):
        return satisfies_as_of_312(obj, classes)
    return builtins.isinstance(obj, classes)
