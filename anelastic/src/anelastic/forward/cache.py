"""The one cache of compiled Devito operators.

Building and JIT-compiling a Devito Operator costs seconds. Every compiled object of the package
(the forward :class:`~anelastic.forward.propagator.Propagator`, the kernel pass's replay and
adjoint operators, the inverse-step operator of reverse storage) is therefore kept in an
:class:`OperatorCache`, keyed by everything that shapes its generated code and its arrays; a new
problem with the same key only refills data. :func:`~anelastic.forward.runtime.configure` runs
before the first build.

A cached object holds Devito fields, so it serves one live user at a time: users ``claim`` it
(:class:`Claimable`) and check ``is_owned_by`` before touching its data. The caches are cleared
together (:func:`clear_operator_caches`), because the kernel operators hold the fields of a
cached propagator.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from anelastic.forward import runtime

T = TypeVar("T")


class Claimable:
    """A cached object that one live user (a simulation, a reconstruction) holds at a time."""

    owner: int | None = None

    def claim(self, user: object) -> None:
        self.owner = id(user)

    def is_owned_by(self, user: object) -> bool:
        return self.owner == id(user)

    def release(self) -> None:
        self.owner = None


class OperatorCache(Generic[T]):
    """Compiled objects by key, built on first use (see the module docstring)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[Hashable, T] = {}
        _CACHES.append(self)

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        """The object cached under ``key``, built by ``build()`` if there is none yet."""
        if key not in self._items:
            runtime.configure()
            self._items[key] = build()
        return self._items[key]

    def keys(self) -> list[Hashable]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Drop every object (live users of a claimed one are refused from then on)."""
        for item in self._items.values():
            if isinstance(item, Claimable):
                item.release()
        self._items.clear()


_CACHES: list[OperatorCache] = []


def clear_operator_caches() -> None:
    """Drop every compiled operator of the process (frees their fields)."""
    for cache in _CACHES:
        cache.clear()
