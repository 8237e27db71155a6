"""codenet-pynq: CoDeNet detection on Zynq FPGAs through PYNQ, with a bit-exact CPU fallback.

Runtime package: numpy + OpenCV; ONNX Runtime and pynq are imported by the backends that
need them. Start with :class:`codenet_pynq.detector.Detector`.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "Detector", "Detections"]


def __getattr__(name):  # lazy: importing the package stays cheap
    if name == "Detector":
        from .detector import Detector

        return Detector
    if name == "Detections":
        from .detections import Detections

        return Detections
    raise AttributeError(name)
