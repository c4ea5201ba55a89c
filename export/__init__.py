"""Export side of the project: each model family's PyTorch reference and the ONNX exporter.

A shared core (``onnx_export``, ``frontend``, ``text_tower``, ``checkpoint``, ``untrusted``,
``demo``, ``synthetic``, ``command``), one package per family (``ttmrpp``, ``clap``,
``muscall``) registered in ``families``, and the commands (``to_onnx``, ``quantize``,
``fp16``, ``to_tensorrt``, ``to_triton``), which never name a family.

Needs torch, transformers, onnx and librosa; the runtime package never imports it.
"""
