"""Prompt similarity with a real CLIP model from a local directory, on ONNX Runtime.

The directory holds CLIP's two towers exported to ONNX in the layout transformers.js and
Optimum use (and that `QC_CLIP_MODEL_DIR` names)::

    <dir>/onnx/vision_model.onnx        pixel_values -> image_embeds   (or <dir>/vision_model.onnx)
    <dir>/onnx/text_model.onnx          input_ids [, attention_mask] -> text_embeds
    <dir>/tokenizer.json                a Hugging Face `tokenizers` file
    <dir>/preprocessor_config.json      optional: size, crop_size, image_mean, image_std

`*_quantized.onnx` files are used when the plain ones are absent (8-bit: about 13 ms a frame
for ViT-B/32 on two cores). Nothing is ever fetched from a model hub. The score of a clip is
the mean cosine similarity between the prompt's embedding and the embeddings of a few frames
spread over the clip.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from shared.errors import ConfigurationError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CONTEXT_LENGTH = 77


class PromptScorer(Protocol):
    """Scores how well frames (RGB uint8, any size) match a prompt, as a cosine in [-1, 1]."""

    name: str

    def similarity(self, frames: Sequence[NDArray[np.uint8]], prompt: str) -> float: ...


class OnnxClipScorer:
    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self.name = f"clip-onnx:{model_dir.name}"
        self._vision = ort.InferenceSession(
            str(_tower(model_dir, "vision")), options, providers=providers
        )
        self._text = ort.InferenceSession(
            str(_tower(model_dir, "text")), options, providers=providers
        )
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(CONTEXT_LENGTH)
        self._pre = _Preprocess.from_dir(model_dir)

    def embed_text(self, prompt: str) -> NDArray[np.float32]:
        ids = np.asarray([self._tokenizer.encode(prompt).ids], dtype=np.int64)
        feeds: dict[str, Any] = {}
        for inp in self._text.get_inputs():
            if inp.name == "input_ids":
                feeds[inp.name] = ids
            elif inp.name == "attention_mask":
                feeds[inp.name] = np.ones_like(ids)
        return _unit(_embeds(self._text, feeds, "text_embeds"))

    def embed_images(self, frames: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        batch = np.stack([self._pre(f) for f in frames])
        name = self._vision.get_inputs()[0].name
        return _unit(_embeds(self._vision, {name: batch}, "image_embeds"))

    def similarity(self, frames: Sequence[NDArray[np.uint8]], prompt: str) -> float:
        if not frames:
            raise ValueError("no frames to compare with the prompt")
        text = self.embed_text(prompt)
        images = self.embed_images(frames)
        return float(np.mean(images @ text[0]))


class _Preprocess:
    """CLIP's image preprocessing: resize the short side, centre-crop, scale, normalise."""

    def __init__(self, size: int, crop: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.size, self.crop = size, crop
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    @classmethod
    def from_dir(cls, model_dir: Path) -> _Preprocess:
        path = model_dir / "preprocessor_config.json"
        cfg: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        size = _side(cfg.get("size", 224))
        crop = _side(cfg.get("crop_size", size))
        return cls(size, crop, cfg.get("image_mean", CLIP_MEAN), cfg.get("image_std", CLIP_STD))

    def __call__(self, rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
        h, w = rgb.shape[:2]
        scale = self.size / min(h, w)
        nw, nh = max(self.crop, round(w * scale)), max(self.crop, round(h * scale))
        img = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_CUBIC)
        top, left = (nh - self.crop) // 2, (nw - self.crop) // 2
        img = img[top : top + self.crop, left : left + self.crop].astype(np.float32) / 255.0
        out: NDArray[np.float32] = ((img - self.mean) / self.std).transpose(2, 0, 1)
        return np.ascontiguousarray(out, dtype=np.float32)


def _side(value: Any) -> int:
    if isinstance(value, dict):
        return int(value.get("shortest_edge") or value.get("height") or 224)
    return int(value)


def _tower(model_dir: Path, tower: str) -> Path:
    for folder in (model_dir / "onnx", model_dir):
        for name in (f"{tower}_model.onnx", f"{tower}_model_quantized.onnx"):
            if (folder / name).exists():
                return folder / name
    raise FileNotFoundError(f"no {tower}_model.onnx under {model_dir} or {model_dir / 'onnx'}")


def _embeds(session: Any, feeds: dict[str, Any], wanted: str) -> NDArray[np.float32]:
    names = [o.name for o in session.get_outputs()]
    name = wanted if wanted in names else names[0]
    (out,) = session.run([name], feeds)
    array = np.asarray(out, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"output {name!r} has shape {array.shape}; expected (batch, dim)")
    return array


def _unit(x: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


NO_MODEL = "no CLIP model configured (set QC_CLIP_MODEL_DIR to a local ONNX export)"


def load_prompt_scorer(model_dir: Path | None, threads: int = 1) -> PromptScorer | None:
    """The configured scorer, or None when no directory is configured (the check is then
    reported as skipped). A configured directory that cannot be loaded is a configuration
    error: the service refuses to start rather than silently skipping the check."""
    if model_dir is None:
        return None
    try:
        return OnnxClipScorer(model_dir, threads)
    except Exception as exc:  # any loading failure is the same configuration problem
        raise ConfigurationError(
            "QC_CLIP_MODEL_DIR", f"cannot load a CLIP model from {model_dir}: {exc}"
        ) from exc
