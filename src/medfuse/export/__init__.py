"""Export to ONNX (whole model, towers, fusion classifier), checked against PyTorch; int8 quantization.

>>> report = export_checkpoint("runs/demo", "runs/onnx", int8=True, calibration_manifest="data/manifest.csv")  # doctest: +SKIP
>>> report["graphs"]["model"]["max_abs_diff"] <= 1e-4                                                       # doctest: +SKIP

ONNX, onnxruntime and onnxscript are optional (``pip install 'medfuse[onnx]'``), imported when used.
"""

from medfuse.export.runner import export_checkpoint

__all__ = ["export_checkpoint"]
