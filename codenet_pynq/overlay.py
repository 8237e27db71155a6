"""``CodenetOverlay``: the CoDeNet overlay in the PYNQ idiom.

>>> from codenet_pynq.overlay import CodenetOverlay     # doctest: +SKIP
>>> ol = CodenetOverlay()              # codenet.bit of the detected board, downloaded to the PL
>>> ol.codenet_top_0                   # the IP, bound to CodenetTopIP (a pynq.DefaultIP)
>>> det = ol.detector()                # a Detector running the shipped model on this overlay

``pynq`` is imported when ``CodenetOverlay`` (or :func:`overlay_class`) is first used, not when
this module is imported; the IP driver (``bindto`` the engine's VLNV) is registered with pynq at
that moment, before any overlay is parsed. Without pynq the access raises
:class:`~codenet_pynq.errors.BackendError` saying so and pointing at the CPU fallback.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

from .backends.fpga import PynqPlatform, _import_pynq, find_overlay, ip_driver_class

__all__ = ["CodenetOverlay", "overlay_class"]  # noqa: F822 - CodenetOverlay: module __getattr__

_CLASSES: Dict[int, type] = {}


class _ReusePynq:
    """pynq as :class:`PynqPlatform` sees it, except that ``Overlay(...)`` returns an already loaded overlay."""

    def __init__(self, pynq: Any, overlay: Any) -> None:
        self._pynq = pynq
        self._overlay = overlay

    def Overlay(self, *_args: Any, **_kw: Any) -> Any:  # noqa: N802 - pynq's spelling
        return self._overlay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pynq, name)


def overlay_class(pynq_module: Any = None) -> type:
    """The ``CodenetOverlay`` class for ``pynq_module`` (default ``import pynq``); registers the IP driver."""
    pynq = _import_pynq(pynq_module)
    key = id(pynq)
    if key in _CLASSES:
        return _CLASSES[key]
    ip_driver_class(pynq)  # bindto the VLNV before an overlay is parsed

    class CodenetOverlay(pynq.Overlay):  # type: ignore[misc, valid-type]
        """``pynq.Overlay`` of ``codenet.bit`` (default: the detected board's, see :mod:`codenet_pynq.boards`)."""

        def __init__(self, bitfile: Optional[Union[str, os.PathLike]] = None, download: bool = True,
                     **kwargs: Any) -> None:
            bit, _ = find_overlay(bitfile)
            super().__init__(str(bit), download=download, **kwargs)
            self.codenet_bitfile = bit

        def platform(self) -> PynqPlatform:
            """The driver's platform on this overlay (no second download)."""
            return PynqPlatform(self.codenet_bitfile, download=False, pynq_module=_ReusePynq(pynq, self))

        def detector(self, model: Optional[str] = None, timeout_s: float = 2.0) -> Any:
            """A :class:`~codenet_pynq.detector.Detector` for ``model`` (default: shipped) on this overlay."""
            from .artifact import default_model_path, load_artifact
            from .backends.fpga import FpgaBackend
            from .detector import Detector

            art = load_artifact(model or default_model_path())
            backend = FpgaBackend(art, timeout_s=timeout_s, platform=self.platform())
            return Detector(art, backend, "requested: CodenetOverlay.detector")

    _CLASSES[key] = CodenetOverlay
    return CodenetOverlay


def __getattr__(name: str) -> Any:  # lazy: the class exists once pynq is importable
    if name == "CodenetOverlay":
        return overlay_class()
    raise AttributeError(name)
