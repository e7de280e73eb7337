"""The openai SDK's client, imported without its typed models.

``import openai`` runs the package's ``__init__``, which imports every typed
model of the API (``openai.types``: ~450 modules, ~0.35 s of a small
machine's CPU) before it names the client. The model stream needs none of
them: it posts an encoded body and reads the raw SSE bytes (actors/model/stream.py).
:func:`load` imports only the client, its errors and ``omit``, with the
``__init__`` of ``openai``, ``openai.lib``, ``openai.types`` and
``openai.types.shared`` deferred: each is put in ``sys.modules`` before its
code runs, and runs it on the first access to a name it would define
(PEP 562 ``__getattr__``). Submodules import as usual meanwhile, so any other
``import openai`` in the process still sees the whole package, loaded on
first use. If the SDK's layout does not allow this, :func:`load` falls back
to a plain ``import openai``.

Thread-safe: the server calls :func:`load` in a worker thread at start-up.
"""

from __future__ import annotations

import errno
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import openai

#: Packages whose ``__init__`` the client does not need, parents first.
DEFERRED = ("openai", "openai.lib", "openai.types", "openai.types.shared")

_lock = threading.RLock()
_loaded: Sdk | None = None


class Sdk(NamedTuple):
    """The SDK names the model stream uses."""

    AsyncOpenAI: type[openai.AsyncOpenAI]
    Timeout: type[openai.Timeout]
    omit: Any
    APIError: type[openai.APIError]
    APIStatusError: type[openai.APIStatusError]
    APIConnectionError: type[openai.APIConnectionError]
    APITimeoutError: type[openai.APITimeoutError]


def load() -> Sdk:
    """Import the client modules (once; the names are kept after). Raises
    what the import raises, as ``OSError`` whenever the process is out of
    file descriptors; the next call tries again."""
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lock:
        before = set(sys.modules)
        try:
            if "openai._client" not in sys.modules and "openai" not in sys.modules:
                _import_lean()
            client = importlib.import_module("openai._client")
            errors = importlib.import_module("openai._exceptions")
            types = importlib.import_module("openai._types")
        except Exception as exc:
            # The import system caches directory listings, and importlib.metadata
            # caches one that failed for want of descriptors as empty: forget
            # them, or the next try fails the same way with descriptors to spare.
            importlib.invalidate_caches()
            importlib.metadata.MetadataPathFinder().invalidate_caches()  # an instance: 3.11 lacks its @classmethod
            # A package whose __init__ failed is gone but its submodules stay,
            # and a later import of it then fails otherwise (asyncio's
            # ``NameError: base_events``): take back everything this try added.
            for name in set(sys.modules) - before:
                sys.modules.pop(name, None)
            _raise_if_out_of_descriptors(exc)
            raise
        _loaded = Sdk(client.AsyncOpenAI, client.Timeout, types.omit, errors.APIError, errors.APIStatusError,
                      errors.APIConnectionError, errors.APITimeoutError)
    return _loaded


def _raise_if_out_of_descriptors(exc: Exception) -> None:
    """Raise the ``OSError`` (EMFILE) behind a failed import when the process
    is out of file descriptors: importing opens files everywhere, and some
    of its failures hide the cause (``importlib.metadata`` answers
    "no package metadata was found" when it cannot list site-packages). The
    caller retries an ``OSError``; anything else is a broken install."""
    try:
        os.close(os.open(os.devnull, os.O_RDONLY))
    except OSError as probe:
        if probe.errno in (errno.EMFILE, errno.ENFILE):
            raise probe from exc


def _import_lean() -> None:
    try:
        for name in DEFERRED:
            _defer(name)
        importlib.import_module("openai._client")
    except Exception:
        # Not the layout this was written for: drop what was made and import
        # the package whole (an error there is the caller's to see).
        for name in [n for n in sys.modules if n == "openai" or n.startswith("openai.")]:
            del sys.modules[name]
        importlib.import_module("openai")


def _defer(name: str) -> None:
    """Put package ``name`` in ``sys.modules`` with its code not yet run."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name} is not a package here")
    module = importlib.util.module_from_spec(spec)

    def __getattr__(attr: str) -> Any:
        return _resolve(module, attr)

    module.__dict__["__getattr__"] = __getattr__
    sys.modules[name] = module


def _resolve(module: ModuleType, attr: str) -> Any:
    """A name of a deferred package: a submodule is imported on its own;
    anything else runs the package's code first."""
    sub = f"{module.__name__}.{attr}"
    if not attr.startswith("__"):
        if sub in sys.modules:
            return sys.modules[sub]
        if importlib.util.find_spec(sub) is not None:
            return importlib.import_module(sub)
    with _lock:
        hook = module.__dict__.pop("__getattr__", None)
        if hook is not None:
            spec = module.__spec__
            assert spec is not None and spec.loader is not None  # as _defer made it
            try:
                spec.loader.exec_module(module)
            except BaseException:
                module.__dict__["__getattr__"] = hook
                raise
    if attr in module.__dict__:
        return module.__dict__[attr]
    # The package's own module __getattr__, if its code defines one.
    return getattr(module, attr)
