"""Where the network runs: ONNX through ONNX Runtime where it is installed (the command line;
1.5 times OpenCV's speed on these networks), else through OpenCV's DNN (Blender, which has no
ONNX Runtime), or the torch model itself (training and checks). All take a preprocessed blob
(N, C, H, W) and return logits. On the same graph the two ONNX ones agree to 1e-4; where the
card names a graph of its own for ONNX Runtime (``ModelCard.runtime_onnx``: most layers in
int8, ``training.runtime_graph``), that one runs there and its masks agree with the
reference graph's to an IoU above 0.99.

``SEGCORE_BACKEND=opencv`` (or ``onnxruntime``) in the environment chooses one; by default
(``auto``) ONNX Runtime when it can be imported, else OpenCV.
"""

from __future__ import annotations

import os
import threading

import cv2
import numpy as np

from .errors import ModelError


def _existing(onnx_path) -> str:
    """``onnx_path`` as a string, or a one-line :class:`ModelError` when it is missing."""
    path = str(onnx_path)
    if not os.path.exists(path):
        raise ModelError(f"{path}: ONNX model file not found; re-export or reinstall it")
    return path


def _unloadable(path: str, exc: Exception) -> ModelError:
    """The one-line error for an ONNX file a backend cannot load."""
    msg = str(exc).strip().splitlines()[-1][:200]
    return ModelError(
        f"{path}: cannot load the ONNX model (corrupt or unsupported: {msg}); "
        "re-export it with `python -m training export`"
    )


class OpenCVBackend:
    """ONNX through ``cv2.dnn``; one network per thread (a ``cv2.dnn.Net`` is not shareable)."""

    name = "opencv"

    def __init__(self, onnx_path: str | os.PathLike):
        self.path = _existing(onnx_path)
        self._local = threading.local()
        self._net()  # fail now, before any frame is touched

    def _net(self):
        net = getattr(self._local, "net", None)
        if net is None:
            try:
                net = cv2.dnn.readNetFromONNX(self.path)
            except cv2.error as exc:
                raise _unloadable(self.path, exc) from exc
            net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
            self._local.net = net
        return net

    def logits(self, blob: np.ndarray) -> np.ndarray:
        net = self._net()
        net.setInput(blob)
        return net.forward()


class OrtBackend:
    """ONNX through ONNX Runtime on the CPU, for the input sizes its graph takes (OpenCV's
    DNN for any other). One session per thread count: a run uses as many threads as OpenCV
    is set to (one per worker when a sequence runs on several, the cores otherwise), so
    workers do not oversubscribe the cores.

    ``runtime``: the card's graph for ONNX Runtime (``ModelCard.runtime_onnx``), run in place
    of ``onnx_path``; it takes any input size (portrait and 3:2 frames too). A reference
    graph alone (``onnx_path``) has the size it was exported at, and OpenCV runs it at any
    other."""

    name = "onnxruntime"

    def __init__(self, onnx_path: str | os.PathLike, runtime: str | os.PathLike | None = None):
        self.reference = _existing(onnx_path)
        self.path = _existing(runtime) if runtime is not None else self.reference
        self._sessions: dict[int, object] = {}
        self._lock = threading.Lock()
        first = self._session(1).get_inputs()[0]  # fail now, before any frame
        self._input = first.name
        # an exported network has a fixed input size (OpenCV's DNN reshapes it to any other,
        # ONNX Runtime does not): other sizes run through OpenCV. A runtime graph names its
        # batch, height and width, so every size runs here
        self._fixed = tuple(d if isinstance(d, int) else None for d in first.shape[1:])
        self._other: OpenCVBackend | None = None

    def _session(self, threads: int):
        sess = self._sessions.get(threads)  # made once per thread count, then only read
        if sess is not None:
            return sess
        with self._lock:
            sess = self._sessions.get(threads)
            if sess is None:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                opts.log_severity_level = 3  # errors only
                try:
                    sess = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
                except Exception as exc:  # onnxruntime's own error types
                    raise _unloadable(self.path, exc) from exc
                self._sessions[threads] = sess
            return sess

    def logits(self, blob: np.ndarray) -> np.ndarray:
        if any(f is not None and f != d for f, d in zip(self._fixed, blob.shape[1:])):
            if self._other is None:
                with self._lock:
                    if self._other is None:
                        self._other = OpenCVBackend(self.reference)
            return self._other.logits(blob)
        sess = self._session(max(1, cv2.getNumThreads()))
        return sess.run(None, {self._input: np.ascontiguousarray(blob, np.float32)})[0]


BACKENDS = ("auto", "onnxruntime", "opencv")


def onnx_backend(onnx_path: str | os.PathLike, runtime: str | os.PathLike | None = None):
    """The backend for an ONNX file: ``SEGCORE_BACKEND`` (module docstring) or ``auto``;
    ``runtime``: the same network as ONNX Runtime's own graph (:class:`OrtBackend`)."""
    choice = os.environ.get("SEGCORE_BACKEND", "auto").strip().lower() or "auto"
    if choice not in BACKENDS:
        raise ModelError(
            f"SEGCORE_BACKEND={choice!r}: choose one of {', '.join(BACKENDS)} (or unset it)"
        )
    if choice != "opencv":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            if choice == "onnxruntime":
                raise ModelError(
                    "SEGCORE_BACKEND=onnxruntime but onnxruntime is not installed: "
                    "pip install onnxruntime, or unset SEGCORE_BACKEND"
                ) from None
        else:
            if runtime is not None and not os.path.exists(runtime):
                runtime = None  # a copy without it (the Blender add-on's): the reference
            return OrtBackend(onnx_path, runtime)
    return OpenCVBackend(onnx_path)


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
