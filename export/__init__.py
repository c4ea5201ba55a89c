"""Export side of the project: the PyTorch reference of TTMR++ and the ONNX exporter.

Needs torch, transformers, onnx and librosa; the runtime package never imports it.
"""
