"""A base for wrappers that stand in for the store they wrap.

A wrapper that reaches its store only through ``__getattr__`` satisfies a
runtime-checkable Protocol on Python 3.11, whose ``isinstance`` asks ``hasattr``, but not
on Python 3.12 and later, which look a Protocol's members up with
:func:`inspect.getattr_static` and so never call ``__getattr__``. There every optional
capability check (:class:`~reelrank.FollowedColumnsCatalog`,
:class:`~reelrank.BulkReadEventStore`, :class:`~reelrank.AtomicSeenStore`, ...) would
quietly fail for a wrapped store, and its caller would take the slower path.
:class:`StoreProxy` gives each wrapper, per type of store it wraps, a class with one
forwarding method per public method of that type, which both rules find.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Self

__all__ = ["StoreProxy"]

# The class of each (proxy class, wrapped type) pair, made once: a process wraps a few
# types, and a class per instance would defeat the type attribute cache.
_forwarding_classes: dict[tuple[type, type], type] = {}
_forwarding_classes_lock = threading.Lock()
# Set in each forwarding class: the proxy class it was made from.
_PROXY_CLASS = "_store_proxy_class"


class StoreProxy:
    """A base for a wrapper that stands in for ``store``: every public method of
    ``store``'s type is a method of the wrapper, which calls :meth:`_forward`.

    The wrapper is an instance of a subclass made (once per wrapped type) with one
    forwarding method for each public method of ``type(store)``, so it satisfies every
    runtime-checkable Protocol ``store`` does, on Python 3.12 and later as well (where
    ``isinstance`` finds members with :func:`inspect.getattr_static`, never through
    ``__getattr__``), and no Protocol ``store`` does not: a wrapper never claims a
    capability its store lacks. ``isinstance(wrapper, YourProxy)`` holds, and the
    subclass has your class's name.

    A subclass takes the store as its constructor's first argument, passed
    positionally, calls ``super().__init__(store)``, and overrides :meth:`_forward` to
    wrap each call (a deadline, a span, a fault); the store is ``self._wrapped``. Methods the
    subclass defines itself are its own, not forwarded. The store's other attributes
    (data attributes and properties, private names, callables only its instance has) are
    read through ``__getattr__``; a public callable found there is called through
    :meth:`_forward` too. Capability declarations that are data, such as
    ``bounds_own_calls`` and ``in_process`` (:class:`~reelrank.SelfBoundingStore`,
    :class:`~reelrank.InProcessStore`), are looked up on the class and so are not the
    wrapper's: a wrapper does not bound its calls just because its store does. The
    wrapper copies and pickles when its store and state do. The class made for a
    wrapped type is kept for the life of the process.
    """

    _wrapped: Any

    def __new__(cls, store: object, /, *args: Any, **kwargs: Any) -> Self:
        return object.__new__(_forwarding_class(cls, type(store)))

    def __init__(self, store: object) -> None:
        self._wrapped = store

    def _forward(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call the store's ``method`` with the arguments; every forwarded call comes
        here, so a subclass overrides this to wrap them."""
        return getattr(self._wrapped, method)(*args, **kwargs)

    def __getattr__(self, attribute: str) -> Any:
        # Only what the class lacks comes here. Before __init__ has run (copy and pickle
        # probe a bare instance) there is no store to ask.
        try:
            store = vars(self)["_wrapped"]
        except KeyError:
            raise AttributeError(attribute) from None
        value = getattr(store, attribute)
        if attribute.startswith("_") or not _is_method(value):
            return value
        return _bound_forwarder(self, attribute)

    def __reduce__(self) -> tuple[Any, ...]:
        proxy_class = getattr(type(self), _PROXY_CLASS)
        return (_bare_proxy, (proxy_class, self._wrapped), vars(self))


def _bound_forwarder(proxy: StoreProxy, method: str) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        return proxy._forward(method, *args, **kwargs)

    forward.__name__ = method
    return forward


def _forwarder(method: str, proxy_class: type, wrapped_type: type) -> Callable[..., Any]:
    def forward(self: StoreProxy, /, *args: Any, **kwargs: Any) -> Any:
        return self._forward(method, *args, **kwargs)

    forward.__name__ = method
    forward.__qualname__ = f"{proxy_class.__qualname__}.{method}"
    forward.__doc__ = getattr(wrapped_type, method).__doc__
    return forward


def _public_methods(wrapped_type: type, proxy_class: type) -> list[str]:
    """The public methods of ``wrapped_type`` that ``proxy_class`` does not define."""
    methods = []
    for name in dir(wrapped_type):
        if name.startswith("_") or hasattr(proxy_class, name):
            continue
        # Resolved on the class: staticmethods and classmethods come out callable,
        # properties and other data do not.
        if _is_method(getattr(wrapped_type, name, None)):
            methods.append(name)
    return methods


def _is_method(value: object) -> bool:
    """Whether ``value`` is called through the proxy: a callable, but not a class (a
    nested class is read, as data is)."""
    return callable(value) and not isinstance(value, type)


def _forwarding_class(cls: type[StoreProxy], wrapped_type: type) -> type:
    proxy_class: type = cls.__dict__.get(_PROXY_CLASS, cls)
    key = (proxy_class, wrapped_type)
    made = _forwarding_classes.get(key)
    if made is not None:
        return made
    with _forwarding_classes_lock:
        made = _forwarding_classes.get(key)
        if made is None:
            namespace: dict[str, Any] = {
                name: _forwarder(name, proxy_class, wrapped_type)
                for name in _public_methods(wrapped_type, proxy_class)
            }
            namespace.update(
                {
                    _PROXY_CLASS: proxy_class,
                    "__module__": proxy_class.__module__,
                    "__qualname__": proxy_class.__qualname__,
                    "__doc__": proxy_class.__doc__,
                }
            )
            made = type(proxy_class)(proxy_class.__name__, (proxy_class,), namespace)
            _forwarding_classes[key] = made
        return made


def _bare_proxy(proxy_class: type[StoreProxy], store: object) -> StoreProxy:
    """An instance of ``proxy_class`` for ``store`` without its state, for copy and pickle
    to fill in."""
    return StoreProxy.__new__(proxy_class, store)
