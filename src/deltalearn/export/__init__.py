"""Deployment of the Multitask CenterNet: ONNX export (raw outputs, or with decoding inside the
graph), static INT8 quantization, and an onnxruntime predictor that stands in for the PyTorch
one in ``deltalearn mcn predict`` and evaluation.

Modules import onnx / onnxruntime themselves, so ``import deltalearn.export`` stays cheap:
``onnx`` (export), ``quantize`` (INT8), ``runtime`` (``OnnxPredictor``), ``commands`` (CLI).
"""
