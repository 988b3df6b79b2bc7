"""Where the network runs: ONNX through OpenCV's DNN (segcore, Blender) or the torch model
itself (training and checks). Both take a preprocessed blob (1, C, H, W) and return logits."""

from __future__ import annotations

import os
import threading

import cv2
import numpy as np

from .errors import ModelError


class OpenCVBackend:
    """ONNX through ``cv2.dnn``; one network per thread (a ``cv2.dnn.Net`` is not shareable)."""

    name = "opencv"

    def __init__(self, onnx_path: str | os.PathLike):
        self.path = str(onnx_path)
        if not os.path.exists(self.path):
            raise ModelError(f"{self.path}: ONNX model file not found; re-export or reinstall it")
        self._local = threading.local()
        self._net()  # fail now, before any frame is touched

    def _net(self):
        net = getattr(self._local, "net", None)
        if net is None:
            try:
                net = cv2.dnn.readNetFromONNX(self.path)
            except cv2.error as exc:
                msg = str(exc).strip().splitlines()[-1][:200]
                raise ModelError(
                    f"{self.path}: cannot load the ONNX model (corrupt or unsupported: {msg}); "
                    "re-export it with `python -m training export`"
                ) from exc
            net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
            self._local.net = net
        return net

    def logits(self, blob: np.ndarray) -> np.ndarray:
        net = self._net()
        net.setInput(blob)
        return net.forward()


class TorchBackend:
    """The same network in torch (training and checks); needs torch installed."""

    name = "torch"

    def __init__(self, model):
        import torch

        self.torch = torch
        self.model = model.eval()

    def logits(self, blob: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.model(self.torch.from_numpy(blob)).numpy()
