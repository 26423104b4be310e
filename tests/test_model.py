"""Networks: darknet's operation count, output shapes, hand-computed parameter counts, reorg golden values,
darknet max-pool padding, darknet batch norm, gradients, and config errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from yolo9000.config import ConfigError, ModelConfig, load_config
from yolo9000.builder import build_model
from yolo9000.model import DarknetBatchNorm2d, MaxPoolDarknet, Reorg
from yolo9000.model.summary import summarize

# The paper's Table 6 written out independently of yolo9000.model.darknet19: (filters, size) or "M" for max-pool.
TABLE6 = [(32, 3), "M", (64, 3), "M", (128, 3), (64, 1), (128, 3), "M", (256, 3), (128, 1), (256, 3), "M",
          (512, 3), (256, 1), (512, 3), (256, 1), (512, 3), "M", (1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3)]


def bn_conv_params(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + 2 * cout  # conv without bias + BN weight and bias


def trunk_params() -> tuple[int, int, int]:
    """(params, channels at stride 16, channels at stride 32) of the Darknet-19 trunk."""
    total, c, c16 = 0, 3, 0
    for row in TABLE6:
        if row == "M":
            c16 = c
            continue
        total += bn_conv_params(c, row[0], row[1])
        c = row[0]
    return total, c16, c


def test_darknet19_flops_at_224_is_5_58_billion():
    model = build_model(ModelConfig(kind="darknet19", num_classes=1000, input_size=224))
    summary = summarize(model, 224)
    assert abs(summary.flops / 1e9 - 5.58) < 0.01
    # Cross-check with PyTorch's own counter (2 x MACs per conv too); the mean pool adds no flops there.
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, 224, 224))
    assert counter.get_total_flops() == summary.flops
    assert summary.output_shape == (1, 1000)


def test_parameter_counts_match_hand_computation():
    trunk, _, c32 = trunk_params()
    with torch.device("meta"):
        darknet19 = build_model(load_config("darknet19").model)
        yolov2 = build_model(load_config("yolov2").model)
    assert sum(p.numel() for p in darknet19.parameters()) == trunk + c32 * 1000 + 1000
    # YOLOv2: two 3x3x1024, 1x1x64 on the 512-channel stride-16 map, reorg x4 -> 256 + 1024, 3x3x1024, 1x1 to 425.
    head = (bn_conv_params(1024, 1024, 3) * 2 + bn_conv_params(512, 64, 1) + bn_conv_params(1280, 1024, 3)
            + 1024 * 425 + 425)
    assert sum(p.numel() for p in yolov2.parameters()) == trunk + head == 50_962_889


@pytest.fixture(scope="module")
def yolo9000_meta():
    with torch.device("meta"):
        return build_model(load_config("yolo9000").model)


def test_yolo9000_params_and_output_shape(yolo9000_meta):
    trunk, _, c32 = trunk_params()
    filters = 3 * (5 + 9418)
    assert filters == 28269
    assert sum(p.numel() for p in yolo9000_meta.parameters()) == trunk + c32 * filters + filters
    assert summarize(yolo9000_meta, 544).output_shape == (1, 3, 9423, 17, 17)
    assert yolo9000_meta.anchors.shape == (3, 2) and yolo9000_meta.stride == 32
    assert yolo9000_meta.num_classes == 9418


@pytest.mark.parametrize("height,width", [(64, 64), (96, 160)])
def test_tiny_output_shape_any_multiple_of_32(height, width):
    model = build_model(load_config("tiny").model)
    out = model(torch.rand(2, 3, height, width))
    assert out.shape == (2, 3, 5 + 11, height // 32, width // 32)
    with pytest.raises(ValueError, match="multiple of 32"):
        model(torch.rand(1, 3, 70, 64))


def test_stride_16_keeps_the_last_stage_at_stride_16():
    cfg = load_config("tiny", ["model.stride=16", "model.passthrough=false", "model.input_size=144"]).model
    model = build_model(cfg)
    assert model.stride == 16
    out = model(torch.rand(2, 3, 80, 144))
    assert out.shape == (2, 3, 5 + 11, 5, 9)
    # Same parameters as the stride-32 network without passthrough: only the last max-pool's stride differs.
    same = build_model(load_config("tiny", ["model.passthrough=false"]).model)
    assert [p.shape for p in model.parameters()] == [p.shape for p in same.parameters()]
    assert summarize(model, 144).output_shape == (1, 3, 16, 9, 9)
    with pytest.raises(ValueError, match="multiple of 16"):
        model(torch.rand(1, 3, 72, 64))
    with pytest.raises(ConfigError, match=r"model\.stride"):
        load_config("tiny", ["model.stride=16", "model.passthrough=false", "model.trunk=torchvision:resnet18"])


def test_tiny_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = build_model(load_config("tiny").model)
    x = torch.rand(2, 3, 64, 64)
    out = model(x)
    out.square().mean().backward()
    assert not torch.isnan(out).any()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"


def test_tree_overrides_num_classes(tiny_tree, tmp_path):
    from wordtree.io import write_darknet
    prefix = tmp_path / "tiny"
    write_darknet(tiny_tree, prefix)
    cfg = load_config("tiny", [f"model.tree={prefix}.tree"]).model
    model = build_model(cfg)
    assert model.num_classes == 11 and model.pred.out_channels == 3 * (5 + tiny_tree.num_nodes)


def darknet_reorg_reference(x: torch.Tensor, stride: int) -> torch.Tensor:
    """darknet's reorg_cpu(x, w, h, c, batch, stride, forward=0, out), written as its loops (src/blas.c)."""
    batch, c, h, w = x.shape
    flat_in = x.flatten().tolist()
    out = [0.0] * len(flat_in)
    out_c = c // (stride * stride)
    for b in range(batch):
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2 = k % out_c
                    offset = k // out_c
                    w2 = i * stride + offset % stride
                    h2 = j * stride + offset // stride
                    out_index = w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))
                    out[in_index] = flat_in[out_index]  # forward=0: out[in_index] = x[out_index]
    return torch.tensor(out).view(batch, c * stride * stride, h // stride, w // stride)


def test_reorg_golden_by_hand():
    # C=4, H=W=2, stride 2 -> out_c = 1, x viewed as (1, 4, 4). Output buffer (k, j, i) takes x_flat at
    # (2i + k%2) + 4 * (2j + k//2): k=0 -> 0, 2, 8, 10; k=1 -> 1, 3, 9, 11; k=2 -> 4, 6, 12, 14; k=3 -> 5, 7, 13, 15.
    x = torch.arange(16.0).view(1, 4, 2, 2)
    expected = torch.tensor([0, 2, 8, 10, 1, 3, 9, 11, 4, 6, 12, 14, 5, 7, 13, 15.0]).view(1, 16, 1, 1)
    assert torch.equal(Reorg(2)(x), expected)
    assert not torch.equal(Reorg(2)(x), F.pixel_unshuffle(x, 2))  # darknet's order is not space-to-depth


def test_reorg_matches_darknet_loop(generator):
    x = torch.randn(2, 8, 6, 4, generator=generator)
    assert torch.equal(Reorg(2)(x), darknet_reorg_reference(x, 2))


def test_maxpool_darknet_padding():
    x = torch.arange(27 * 27.0).view(1, 1, 27, 27)
    out = MaxPoolDarknet(2, 2)(x)
    assert out.shape[-2:] == (14, 14)  # (27 + 1 - 2) // 2 + 1
    assert out[0, 0, -1, -1] == x[0, 0, 26, 26]  # the last window holds one real cell and three pads
    assert MaxPoolDarknet(2, 1)(torch.rand(1, 2, 13, 13)).shape[-2:] == (13, 13)
    even = torch.rand(1, 3, 26, 26)
    assert torch.equal(MaxPoolDarknet(2, 2)(even), F.max_pool2d(even, 2, 2))


def test_darknet_batchnorm_eval_uses_epsilon_on_std(generator):
    bn = DarknetBatchNorm2d(3).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.0, 1e-8]))  # zero and tiny variances occur in darknet weights
        bn.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
        bn.bias.copy_(torch.tensor([0.0, 0.1, -0.2]))
    x = torch.randn(1, 3, 2, 2, generator=generator)
    expected = torch.stack([(x[0, c] - bn.running_mean[c]) / (bn.running_var[c].sqrt() + 1e-6) * bn.weight[c]
                            + bn.bias[c] for c in range(3)])[None]
    torch.testing.assert_close(bn(x), expected)


@pytest.mark.parametrize("override,key", [
    ("model.widht=0.5", "model.widht"),
    ("model.width=-1", "model.width"),
    ("model.stride=8", "model.stride"),
    ("model.stride=16", "model.passthrough"),    # the passthrough folds stride-16 features onto a stride-32 grid
    ("model.anchors=[[1.0, 0.0]]", "model.anchors"),
    ("model.input_size=100", "model.input_size"),
])
def test_bad_config_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_model(load_config("tiny", [override]).model)


# ------------------------------------------------------------------------------------------- yolo9000 info
def test_info_command_ends_with_params_and_flops(capsys):
    from yolo9000.cli import main
    assert main(["info", "--config", "tiny", "--size", "64", "--set", "model.num_classes=4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    model = build_model(load_config("tiny", ["model.num_classes=4"]).model)
    summary = summarize(model, 64)
    assert lines[-2] == f"params: {sum(p.numel() for p in model.parameters())}"
    assert lines[-1] == f"flops: {summary.flops}"
    assert lines[-3] == "output: 1x3x9x2x2"
    assert sum(" conv " in f" {line} " for line in lines) == 10  # one table row per convolution


def test_info_from_darknet_cfg(capsys):
    from yolo9000.cli import main
    from yolo9000.reference import darknet_file
    assert main(["info", "--cfg", str(darknet_file("yolov2.cfg")), "--size", "416"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-3:] == ["output: 1x5x85x13x13", "params: 50962889", "flops: 29464168448"]


def test_info_errors_name_the_problem(capsys, tmp_path):
    from yolo9000.cli import main
    assert main(["info", "--config", "tiny", "--set", "model.widht=1"]) == 2
    assert "model.widht" in capsys.readouterr().err
    assert main(["info", "--config", "tiny", "--size", "100"]) == 2
    assert "--size 100" in capsys.readouterr().err
    bad = tmp_path / "bad.cfg"
    bad.write_text("[net]\nwidth=64\nheight=64\n[upsample]\nstride=2\n")
    assert main(["info", "--cfg", str(bad)]) == 2
    assert "bad.cfg:4: [upsample] layers are not supported" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ prepare_for_inference
def test_prepare_for_inference_matches_eval_and_leaves_model_alone():
    from yolo9000.model.inference import prepare_for_inference
    torch.manual_seed(0)
    model = build_model(load_config("tiny").model)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, DarknetBatchNorm2d)):
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            # A dead channel as trained darknet nets have them: var 0, tiny scale. Darknet's eps on the std gives
            # it gain 1e-6 / 1e-6 = 1; PyTorch's sqrt(var + 1e-5) would give 3e-4, so folding must use darknet's.
            bn.running_var[0], bn.weight[0] = 0.0, 1e-6
            bn.bias.normal_(0, 0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = prepare_for_inference(model)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    assert not any(p.requires_grad for p in prepared.parameters())
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        expected = model.eval()(x)
        got = prepared(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(prepare_for_inference(model, fold_bn=False)(x), expected, rtol=1e-4, atol=1e-5)


def test_prepare_for_inference_bfloat16_keeps_anchors_float32():
    from yolo9000.model.inference import prepare_for_inference
    torch.manual_seed(0)
    model = build_model(load_config("tiny").model).eval()
    prepared = prepare_for_inference(model, dtype=torch.bfloat16)
    assert prepared.pred.weight.dtype == torch.bfloat16
    assert prepared.anchors.dtype == torch.float32 and torch.equal(prepared.anchors, model.anchors)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        got = prepared(x.bfloat16().contiguous(memory_format=torch.channels_last)).float()
    # bfloat16 keeps 8 significant bits: compare against the output's scale.
    assert (got - expected).abs().max() <= 0.02 * expected.abs().max()


def test_eval_fast_paths_give_the_reference_values():
    """Eager CPU inference takes two shortcuts (layers.py): max-pool as two maximums and darknet batch norm as one
    F.batch_norm with a cached variance. They must give max_pool2d's values and darknet's formula, and the cached
    variance must follow the running statistics as training and loading change them."""
    from yolo9000.model.layers import DARKNET_BN_EPS, DarknetBatchNorm2d, MaxPoolDarknet

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 12, 10, generator=g)
    pool = MaxPoolDarknet(2, 2)
    with torch.no_grad():
        fast = pool(x)
    assert fast.is_contiguous() and torch.equal(fast, torch.nn.functional.max_pool2d(x, 2, 2))
    y = x.clone().requires_grad_()
    pool(y).sum().backward()  # with gradients: max_pool2d itself (one input per window gets the gradient)
    assert y.grad.sum() == fast.numel() and set(y.grad.unique().tolist()) == {0.0, 1.0}

    bn = DarknetBatchNorm2d(8)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(8, generator=g))
        bn.running_var.copy_(torch.rand(8, generator=g))
        bn.running_var[0] = 0.0  # trained darknet weights hold zero variances: the 1e-6 then is the whole divisor
        bn.weight.copy_(torch.randn(8, generator=g))
        bn.bias.copy_(torch.randn(8, generator=g))

    def darknet(module: DarknetBatchNorm2d) -> torch.Tensor:
        scale = module.weight / (module.running_var.sqrt() + DARKNET_BN_EPS)
        return (x - module.running_mean.view(1, -1, 1, 1)) * scale.view(1, -1, 1, 1) + module.bias.view(1, -1, 1, 1)

    with torch.no_grad():
        torch.testing.assert_close(bn.eval()(x), darknet(bn), rtol=1e-5, atol=1e-5)
        bn.train()(x * 3 + 1)  # training moves the running statistics in place
        torch.testing.assert_close(bn.eval()(x), darknet(bn), rtol=1e-5, atol=1e-5)
        other = DarknetBatchNorm2d(8)
        bn.load_state_dict(other.state_dict())  # loading copies into the same buffers
        torch.testing.assert_close(bn(x), darknet(bn), rtol=1e-5, atol=1e-5)
