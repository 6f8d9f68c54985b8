"""The real CLIP path (ONNX Runtime: tokenizer -> text tower, preprocess -> vision tower,
cosine) on a tiny model this test builds: a "colour CLIP" whose image embedding is the
normalised mean colour and whose text embedding maps the words red/green/blue to the colour
axes. Its scores only mean something for colours; that is enough to prove the plumbing ranks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
tokenizers = pytest.importorskip("tokenizers")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from services.qc.checks import run_checks  # noqa: E402
from services.qc.logic import CheckStatus, QcRules  # noqa: E402
from services.qc.similarity import OnnxClipScorer, load_prompt_scorer  # noqa: E402
from shared.errors import ConfigurationError  # noqa: E402
from tests.qc_clips import ClipSpec, write_clip  # noqa: E402

VOCAB = {"[UNK]": 0, "red": 1, "green": 2, "blue": 3, "a": 4, "frame": 5}


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _vision(path: Path) -> None:
    eye = numpy_helper.from_array(np.eye(3, dtype=np.float32), "proj")
    nodes = [
        helper.make_node("GlobalAveragePool", ["pixel_values"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "proj"], ["image_embeds"]),
    ]
    graph = helper.make_graph(
        nodes,
        "vision",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["n", 3, 32, 32])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["n", 3])],
        [eye],
    )
    _save(graph, path)


def _text(path: Path) -> None:
    table = np.zeros((len(VOCAB), 3), dtype=np.float32)
    table[1:4] = np.eye(3, dtype=np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["tokens"]),
        helper.make_node("ReduceSum", ["tokens", "axes"], ["text_embeds"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["n", "l"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["n", "l"]),
        ],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["n", 3])],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        ],
    )
    _save(graph, path)


@pytest.fixture(scope="module")
def colour_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("colour-clip")
    (root / "onnx").mkdir()
    _vision(root / "onnx" / "vision_model.onnx")
    _text(root / "onnx" / "text_model.onnx")
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(VOCAB, unk_token="[UNK]"))
    tok.normalizer = tokenizers.normalizers.Lowercase()
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.save(str(root / "tokenizer.json"))
    (root / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "size": {"shortest_edge": 32},
                "crop_size": {"height": 32, "width": 32},
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
            }
        )
    )
    return root


def _solid(rgb: tuple[int, int, int]) -> np.ndarray:
    frame = np.zeros((90, 160, 3), dtype=np.uint8)
    frame[:] = rgb
    return frame


def test_loads_from_a_directory_and_ranks_the_matching_prompt_first(colour_clip: Path) -> None:
    scorer = OnnxClipScorer(colour_clip)
    red = [_solid((230, 20, 20))] * 3
    assert scorer.similarity(red, "a red frame") > 0.5
    assert scorer.similarity(red, "a red frame") > scorer.similarity(red, "a blue frame")
    assert -1.0 <= scorer.similarity(red, "a green frame") <= 1.0


def test_similarity_check_passes_or_fails_on_the_real_path(
    colour_clip: Path, tmp_path: Path
) -> None:
    clip = write_clip(ClipSpec("pan"), tmp_path / "pan.mp4")
    scorer = load_prompt_scorer(colour_clip)
    assert scorer is not None
    from tests.qc_clips import expectation

    rules = QcRules(similarity_min=-1.0)
    results = run_checks(clip, expectation().model_copy(update={"prompt": "red"}), rules, scorer)
    similarity = next(r for r in results if r.name == "prompt_similarity")
    assert similarity.status is CheckStatus.PASS
    assert similarity.score is not None
    strict = run_checks(
        clip,
        expectation().model_copy(update={"prompt": "red"}),
        QcRules(similarity_min=1.01),
        scorer,
    )
    assert next(r for r in strict if r.name == "prompt_similarity").status is CheckStatus.FAIL


def test_no_directory_means_no_scorer_and_a_broken_one_refuses_to_start(tmp_path: Path) -> None:
    assert load_prompt_scorer(None) is None
    with pytest.raises(ConfigurationError, match="QC_CLIP_MODEL_DIR"):
        load_prompt_scorer(tmp_path)
