"""Face alignment: detectors by name (`detectors`), `dfer train-detector` (`train_detector`), `dfer align`
(`stage`) and detection quality against the synthetic ground truth (`quality`)."""
from dfer.align.detectors import Detection, FaceDetector, build_detector, list_detectors

__all__ = ["Detection", "FaceDetector", "build_detector", "list_detectors"]
