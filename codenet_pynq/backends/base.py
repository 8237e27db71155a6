"""What every backend provides: pixels in, dequantized head maps out."""

from __future__ import annotations

from typing import Dict

import numpy as np


class Backend:
    """Runs the network on one letterboxed ``uint8`` (S, S, 3) BGR image.

    ``run`` returns ``{"hm": (C, H, W) logits, "wh": (2, H, W), "reg": (2, H, W)}`` float32.
    """

    name = "base"
    #: frames Detector.stream keeps in the backend at once; above 1 it must offer
    #: submit() / collect() / drain() (outputs in submission order)
    frames_in_flight = 1

    def run(self, pixels: np.ndarray) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Release hardware or sessions (idempotent)."""

    def describe(self) -> str:
        return self.name
