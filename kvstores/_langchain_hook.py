"""Make every kvstores store a `langchain_core.stores.BaseStore`, without importing LangChain.

LangChain's retrievers and `CacheBackedEmbeddings` check their stores with `isinstance`
against `langchain_core.stores.BaseStore`, an ABC. Registering `kvstores.BaseStore` as a
virtual subclass makes that check pass for every kvstores store. It must happen whichever
package is imported first, and `import kvstores` must not pay for importing LangChain
(about 200 ms): if `langchain_core.stores` is already imported we register now, otherwise a
one-shot import hook registers right after it is imported, and then removes itself.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ["install"]

_TARGET = "langchain_core.stores"


def _register(module: ModuleType) -> None:
    from kvstores._base import BaseStore

    module.BaseStore.register(BaseStore)


class _RegisteringLoader:
    """Runs the real loader, then registers kvstores with the module it loaded.

    (Finder and loader are duck-typed: importing `importlib.abc` would cost more than the rest
    of ``import kvstores``.)
    """

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _register(module)


class _LangChainFinder:
    """Finds nothing itself: wraps the loader of `langchain_core.stores` when it is imported."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TARGET:
            return None
        with contextlib.suppress(ValueError):  # one shot; keeps the lookup below from recursing
            sys.meta_path.remove(self)
        for finder in list(sys.meta_path):  # the finders that would have found it without us
            find_spec = getattr(finder, "find_spec", None)
            spec: importlib.machinery.ModuleSpec | None = (
                find_spec(fullname, path, target) if find_spec is not None else None
            )
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisteringLoader(spec.loader)  # type: ignore[assignment]
                return spec
        return None


def install() -> None:
    """Register now if LangChain's stores module is loaded, else when it gets imported."""
    module: Any = sys.modules.get(_TARGET)
    if module is not None:
        _register(module)
    elif not any(isinstance(finder, _LangChainFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _LangChainFinder())
