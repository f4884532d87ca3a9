"""Live read-only views of a registry (a dict that ``register_*`` functions fill): its names in
order, and name -> one field of each entry. Lists derived from a registry (command-line choices,
help texts, labels) read it when asked, so an entry registered later is never missed."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, overload

V = TypeVar("V")


class RegistryNames(Sequence[str]):
    """The names of ``registry``, in registration order (always current)."""

    def __init__(self, registry: Mapping[str, Any]) -> None:
        self._registry = registry

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...
    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        return tuple(self._registry)[i]

    def __len__(self) -> int:
        return len(self._registry)

    def __repr__(self) -> str:
        return repr(tuple(self._registry))


class RegistryField(Mapping[str, V]):
    """name -> ``field(entry)`` for every entry of ``registry`` (always current)."""

    def __init__(self, registry: Mapping[str, Any], field: Callable[[Any], V]) -> None:
        self._registry, self._field = registry, field

    def __getitem__(self, name: str) -> V:
        return self._field(self._registry[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry)

    def __len__(self) -> int:
        return len(self._registry)

    def __repr__(self) -> str:
        return repr(dict(self))
