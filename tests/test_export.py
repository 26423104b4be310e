"""`yolo9000 export`: ONNX files run in onnxruntime give PyTorch's raw output and the builder's PostProcess's
pre-NMS tensors (dynamic batch and size, weights from a file, metadata, a tree model), and the darknet format writes a cfg + weights pair that loads back to the same network."""
from __future__ import annotations

import json

import pytest
import torch

from yolo9000.cli import main
from yolo9000.config import load_config
from yolo9000.darknet import model_from_cfg, save_darknet_weights
from yolo9000.builder import build_model

onnx = pytest.importorskip("onnx")  # a dev dependency (pyproject `dev` extra)
onnxruntime = pytest.importorskip("onnxruntime")


def trained_like_tiny() -> torch.nn.Module:
    """The tiny detector with non-trivial batch-norm statistics (fresh ones are 0 / 1 and would hide BN bugs)."""
    torch.manual_seed(0)
    model = build_model(load_config("tiny").model)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.1)
    return model.eval()


def run_onnx(path, x: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["raw"], {"images": x.numpy()})[0])


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    model = trained_like_tiny()
    path = save_darknet_weights(model, tmp_path_factory.mktemp("w") / "tiny.weights")
    return model, path


@pytest.mark.parametrize("exporter", ["default", "torchscript"])
def test_onnx_matches_pytorch_with_dynamic_batch_and_size(tiny_weights, tmp_path, capsys, exporter):
    """Both exporters; the default (torch.export-based) one takes 10-30 s for the tiny model on 2 shared cores."""
    model, weights = tiny_weights
    flags = ["--torchscript"] if exporter == "torchscript" else []
    out = tmp_path / "tiny.onnx"
    assert main(["export", "--config", "tiny", "--weights", str(weights), "--format", "onnx",
                 "--out", str(out), "--size", "64", "--verify", *flags]) == 0
    assert "onnxruntime vs PyTorch: max |diff|" in capsys.readouterr().out
    g = torch.Generator().manual_seed(1)
    for shape in [(1, 3, 64, 64), (3, 3, 96, 160)]:
        x = torch.rand(shape, generator=g)
        with torch.no_grad():
            expected = model(x)
        got = run_onnx(out, x)
        assert got.shape == expected.shape == (shape[0], 3, 16, shape[2] // 32, shape[3] // 32)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_onnx_metadata_and_graph(tiny_weights, tmp_path):
    _, weights = tiny_weights
    out = tmp_path / "tiny.onnx"
    assert main(["export", "--config", "tiny", "--weights", str(weights), "--out", str(out),
                 "--static", "--size", "64", "--torchscript"]) == 0
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["anchors"]) == [[0.6, 0.6], [1.2, 1.2], [2.4, 2.4]] and meta["stride"] == "32"
    assert json.loads(meta["yolo9000.config"])["kind"] == "yolov2"
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 64, 64]
    assert [o.name for o in proto.graph.output] == ["raw", "boxes", "objectness", "scores"]
    ops = {node.op_type for node in proto.graph.node}
    assert "BatchNormalization" not in ops and {"Sigmoid", "Exp", "Softmax"} <= ops  # folded BN; decode, scores


@pytest.mark.parametrize("exporter", ["default", "torchscript"])
def test_tree_model_onnx_outputs_are_the_postprocess_pre_nms_tensors(tiny_tree, tmp_path, exporter):
    """A tree model's graph holds decode and the tree's scores (grouped softmax, path products): onnxruntime
    gives `PostProcess.dense` of the builder's postprocess at other batch sizes and non-square inputs."""
    from wordtree.io import write_json
    from yolo9000.builder import build

    write_json(tiny_tree, tmp_path / "tree.json")
    overrides = [f"model.tree={tmp_path / 'tree.json'}"]
    torch.manual_seed(0)
    model, _, postprocess = build(load_config("tiny", overrides))
    torch.save(model.state_dict(), tmp_path / "tree.pt")
    out = tmp_path / "tree.onnx"
    flags = ["--torchscript"] if exporter == "torchscript" else []
    assert main(["export", "--config", "tiny", "--set", overrides[0], "--weights", str(tmp_path / "tree.pt"),
                 "--out", str(out), "--size", "64", *flags]) == 0
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, 96, 160, generator=torch.Generator().manual_seed(1))
    raw, boxes, objectness, scores = (torch.from_numpy(a) for a in session.run(None, {"images": x.numpy()}))
    with torch.no_grad():
        expected_raw = model.eval()(x)
        dense = postprocess.dense(expected_raw)
    torch.testing.assert_close(raw, expected_raw, rtol=1e-4, atol=1e-5)
    assert scores.shape == (3, 3 * 3 * 5, tiny_tree.num_nodes)
    torch.testing.assert_close(boxes, dense.boxes, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(objectness, dense.objectness, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(scores, dense.scores, rtol=1e-4, atol=1e-5)


def test_unfolded_export_matches_too(tiny_weights, tmp_path):
    model, weights = tiny_weights
    out = tmp_path / "unfolded.onnx"
    assert main(["export", "--config", "tiny", "--weights", str(weights), "--out", str(out),
                 "--no-fold", "--size", "64", "--torchscript"]) == 0
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(run_onnx(out, x), model(x), rtol=1e-4, atol=1e-5)


def test_darknet_export_round_trip(tiny_weights, tmp_path):
    model, weights = tiny_weights
    assert main(["export", "--config", "tiny", "--weights", str(weights), "--format", "darknet",
                 "--out", str(tmp_path / "net")]) == 0
    loaded, cfg = model_from_cfg(tmp_path / "net.cfg", tmp_path / "net.weights")
    assert cfg == load_config("tiny").model
    assert (tmp_path / "net.weights").read_bytes() == weights.read_bytes()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_export_errors(tmp_path, capsys):
    assert main(["export", "--config", "tiny", "--weights", str(tmp_path / "none.weights"),
                 "--out", str(tmp_path / "x.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    wrong = save_darknet_weights(build_model(load_config("tiny", ["model.num_classes=3"]).model),
                                 tmp_path / "wrong.weights")
    assert main(["export", "--config", "tiny", "--weights", str(wrong), "--out",
                 str(tmp_path / "x.onnx")]) == 2
    assert "the first layer that does not fit is convolution 9 pred" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
