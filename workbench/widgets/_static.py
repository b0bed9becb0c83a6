"""Where the widgets' front ends live: the ES modules that ``npm run build`` writes.

The TypeScript in ``extension/src/widgets/`` is bundled by esbuild into one ES module per widget
in ``workbench/widgets/static/`` (git-ignored; the wheel ships them, built by the
``hatch-jupyter-builder`` hook in ``pyproject.toml``). A source checkout that never ran the build
has no bundles: creating a widget then fails with :class:`FrontEndNotBuiltError`, whose message
says how to build them, instead of anywidget's bare "file not found" at import time.

A widget class names its bundle with ``_esm = BundleESM("feature_map")``. The descriptor is looked
up lazily, when a widget is created, so ``import workbench.widgets`` works without the bundles and
tests can point :data:`STATIC_DIR` elsewhere (``monkeypatch.setattr(_static, "STATIC_DIR", ...)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["BUNDLES", "STATIC_DIR", "BundleESM", "FrontEndNotBuiltError", "bundle_path"]

STATIC_DIR: Path = Path(__file__).resolve().parent / "static"
"""The folder holding the built ES modules."""

BUNDLES = ("feature_map", "neighborhood", "patch_preview")
"""The widget bundles the front-end build produces (``<name>.js`` in :data:`STATIC_DIR`)."""

BUILD_HINT = (
    "the widget front end is not built: run `npm install && npm run build` in the repo root "
    "(or reinstall the package)"
)


class FrontEndNotBuiltError(FileNotFoundError):
    """A widget's ES module is missing from :data:`STATIC_DIR` (the front end was never built)."""


def bundle_path(name: str) -> Path:
    """The built ES module of widget ``name`` (one of :data:`BUNDLES`).

    Raises:
        FrontEndNotBuiltError: the file does not exist; the message names the fix.
    """
    if name not in BUNDLES:
        raise ValueError(f"unknown widget bundle {name!r}; expected one of {', '.join(BUNDLES)}")
    path = STATIC_DIR / f"{name}.js"
    if not path.is_file():
        raise FrontEndNotBuiltError(f"{BUILD_HINT}; missing {path}")
    return path


def _esm_source(path: Path) -> Any:
    """What anywidget's ``_esm`` trait is made from: its live ``FileContents`` when available
    (so ``ANYWIDGET_HMR=1`` reloads the bundle on rebuilds), else the module's text."""
    try:
        from anywidget._util import try_file_contents
    except ImportError:  # pragma: no cover - private anywidget API moved
        return path.read_text(encoding="utf-8")
    contents = try_file_contents(path)
    return contents if contents is not None else path.read_text(encoding="utf-8")


class BundleESM:
    """Class attribute ``_esm`` of a widget: resolves its bundle when a widget is created.

    anywidget reads ``self._esm`` in ``AnyWidget.__init__`` (the first thing each widget's
    ``__init__`` hands over to), so a missing bundle raises :class:`FrontEndNotBuiltError` there.
    On the class itself the descriptor returns itself, which anywidget leaves alone.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return _esm_source(bundle_path(self.name))

    @property
    def path(self) -> Path:
        """The bundle's path (raises :class:`FrontEndNotBuiltError` when it is missing)."""
        return bundle_path(self.name)
