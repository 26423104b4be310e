"""The generic darknet network: every listed cfg of Debian's darknet package builds, runs at its two smallest
input sizes and round-trips its `.weights` bit for bit; where a cfg is one of our ModelConfigs both networks
agree; and hand-built cases pin each darknet layer semantic (darknet_yolo9000.md section 10, darknet's C code)."""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from wordtree.io import write_darknet
from yolo9000.config import load_config
from yolo9000.darknet import (CfgError, darknet_convs, load_darknet_prefix, load_darknet_weights, parse_cfg_text,
                              read_weights_file, save_darknet_weights)
from yolo9000.builder import build_model
from yolo9000.model.darknet_net import (DarknetMaxPool, DarknetNet, DarknetReorg, darknet_net_from_cfg)
from yolo9000.reference import DARKNET_NETWORK_CFGS, darknet_file


def net_from_text(text: str, source: str = "t.cfg") -> DarknetNet:
    return DarknetNet(parse_cfg_text(text, source))


_POOL: list[torch.Tensor] = []


def random_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fill every parameter and BN statistic from one random pool, each tensor at its own offset (RNG runs once
    per session; the 650M values of the 22 package cfgs are copies, not fresh draws). Variances are positive."""
    if not _POOL:
        _POOL.append(torch.randn(1 << 25, generator=torch.Generator().manual_seed(1234)) * 0.05)
    pool = _POOL[0]
    offset = 7919 * seed
    with torch.no_grad():
        tensors = [(t, False) for t in model.parameters()] + [
            (t, name.endswith("running_var")) for name, t in model.named_buffers() if "running_" in name]
        for tensor, positive in tensors:
            n = tensor.numel()
            offset = (offset + 104729) % (len(pool) - n)
            values = pool[offset:offset + n].view(tensor.shape)
            tensor.copy_(values.abs() + 0.5 if positive else values)
    return model


def meta_built(factory) -> torch.nn.Module:
    """A network built on the meta device (no init cost), then given real, random storage."""
    with torch.device("meta"):
        model = factory()
    return random_(model.to_empty(device="cpu"))


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Distinct random BN parameters and statistics (fresh ones are 1 / 0); conv weights are random already."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for t in (m.weight, m.bias, m.running_mean, m.running_var):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
    return model


@pytest.fixture
def ram_path(tmp_path):
    """A scratch folder in RAM where there is one: the 22 cfgs write and read 2.6 GB of .weights."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="yolo9000-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------- the package's cfgs
@pytest.mark.parametrize("name", DARKNET_NETWORK_CFGS)
def test_package_cfg_builds_runs_at_two_sizes_and_round_trips_weights(name, ram_path, one_thread):
    net = meta_built(lambda: darknet_net_from_cfg(darknet_file(name))).eval()
    if net.head == "region":
        net.reset_anchors()  # to_empty left the buffer uninitialised
    sizes = net.input_sizes(2)
    assert len(sizes) == 2 and sizes[0] < sizes[1]
    outputs = []
    with torch.no_grad():
        for side in sizes:
            out = net(torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side)))
            assert torch.isfinite(out).all()
            if net.head == "region":
                cells = side // net.stride
                assert out.shape == (1, net.num_anchors, 5 + net.num_classes, cells, cells)
            elif net.head == "softmax":
                assert out.shape == (1, net.num_classes)
            outputs.append(out)
    path = save_darknet_weights(net, ram_path / "net.weights", seen=987654321)
    with torch.device("meta"):  # no init cost: every darknet tensor is overwritten by the load
        fresh = darknet_net_from_cfg(darknet_file(name))
    fresh = fresh.to_empty(device="cpu").eval()
    assert load_darknet_weights(fresh, path) == 987654321
    for a, b in zip(darknet_convs(net), darknet_convs(fresh)):
        for ta, tb in zip(a.tensors(), b.tensors()):
            assert torch.equal(ta, tb), a.name
    again = save_darknet_weights(fresh, ram_path / "again.weights", seen=987654321)
    assert again.read_bytes() == path.read_bytes()
    with torch.no_grad():
        x = torch.rand(1, 3, sizes[0], sizes[0], generator=torch.Generator().manual_seed(sizes[0]))
        assert torch.equal(fresh(x), outputs[0])


@pytest.mark.parametrize("name,config", [("yolov2.cfg", "yolov2"),
                                         ("yolo9000.cfg", "yolo9000"),
                                         ("darknet19.cfg", "darknet19")])
def test_cfg_network_equals_our_model_config_on_the_same_weights(name, config, ram_path, one_thread):
    torch.manual_seed(1)
    ours = randomize_(build_model(load_config(config).model), 1).eval()  # real init: its anchors are the config's
    path = save_darknet_weights(ours, ram_path / "ours.weights")
    with torch.device("meta"):
        net = darknet_net_from_cfg(darknet_file(name))
    net = net.to_empty(device="cpu").eval()
    load_darknet_weights(net, path)
    assert net.stride == 32
    if net.head == "region":
        net.reset_anchors()
        assert torch.equal(net.anchors, ours.anchors)
    with torch.no_grad():
        for side in (32, 64):
            x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(side))
            torch.testing.assert_close(net(x), ours(x), rtol=1e-5, atol=1e-5)


def test_other_layers_are_one_line_errors_naming_section_and_line(tmp_path):
    for kind in ("connected", "crop", "local", "detection", "yolo", "upsample"):
        text = f"[net]\nwidth=32\nheight=32\n\n[convolutional]\nfilters=4\nsize=1\n\n[{kind}]\n"
        with pytest.raises(CfgError, match=rf"^t\.cfg:9: \[{kind}\] layers are not supported") as err:
            net_from_text(text)
        assert "\n" not in str(err.value)
    # yolov3.cfg from the package: its first layer we do not build is an [upsample] or a [yolo].
    with pytest.raises(CfgError, match=r"yolov3\.cfg:\d+: \[(upsample|yolo)\] layers are not supported"):
        darknet_net_from_cfg(darknet_file("yolov3.cfg"))


def test_bad_values_name_the_line(tmp_path):
    with pytest.raises(CfgError, match=r"t\.cfg:6: \[convolutional\] activation=tanh: supported values"):
        net_from_text("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=4\nactivation=tanh\n")
    with pytest.raises(CfgError, match=r"t\.cfg:5: \[route\] layers: layer 3 is not an earlier layer"):
        net_from_text("[net]\nwidth=32\nheight=32\n[route]\nlayers=3\n")
    with pytest.raises(CfgError, match=r"t\.cfg:8: \[region\]: its input has 4 channels; num=1 .* needs 8"):
        net_from_text("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=4\nsize=1\n\n[region]\nclasses=3\n")


# -------------------------------------------------------------------------------- hand-built layer semantics
def maxpool_loop(x: torch.Tensor, size: int, stride: int, padding: int) -> torch.Tensor:
    """darknet's forward_maxpool_layer, transcribed."""
    B, C, H, W = x.shape
    oh, ow = (H + padding - size) // stride + 1, (W + padding - size) // stride + 1
    off = -(padding // 2)
    out = torch.empty(B, C, oh, ow)
    for b in range(B):
        for k in range(C):
            for i in range(oh):
                for j in range(ow):
                    best = -math.inf
                    for n in range(size):
                        for m in range(size):
                            h, w = off + i * stride + n, off + j * stride + m
                            if 0 <= h < H and 0 <= w < W:
                                best = max(best, float(x[b, k, h, w]))
                    out[b, k, i, j] = best
    return out


def test_maxpool_odd_sizes_by_hand():
    x = torch.arange(9.0).view(1, 1, 3, 3)
    # size 2 stride 2 on 3x3: padding 1, windows at rows/cols {0,1} and {2}: 3 -> 2 (PyTorch's floor gives 1).
    assert DarknetMaxPool(2, 2, 1)(x).tolist() == [[[[4.0, 5.0], [7.0, 8.0]]]]
    # size 2 stride 1 keeps the size: the last row/column's window hangs over the edge.
    assert DarknetMaxPool(2, 1, 1)(x).tolist() == [[[[4.0, 5.0, 5.0], [7.0, 8.0, 8.0], [7.0, 8.0, 8.0]]]]
    # size 3 stride 2 with its default padding 2 starts one cell before the edge: 3 -> 2.
    assert DarknetMaxPool(3, 2, 2)(x).tolist() == [[[[4.0, 5.0], [7.0, 8.0]]]]
    # padding=0 given explicitly: no window hangs over, 3 -> 1.
    assert DarknetMaxPool(2, 2, 0)(x).tolist() == [[[[4.0]]]]
    # Padded cells never win, even over negative values.
    assert DarknetMaxPool(2, 2, 1)(-x - 1).tolist() == [[[[-1.0, -3.0], [-7.0, -9.0]]]]


@pytest.mark.parametrize("size,stride,padding", [(2, 2, 1), (2, 1, 1), (3, 2, 2), (3, 1, 2), (3, 3, 0), (2, 2, 0),
                                                 (4, 2, 3), (1, 1, 0)])
@pytest.mark.parametrize("side", [5, 6, 7])
def test_maxpool_matches_darknets_loop(size, stride, padding, side, generator):
    x = torch.randn(1, 2, side, side + 1, generator=generator)
    torch.testing.assert_close(DarknetMaxPool(size, stride, padding)(x), maxpool_loop(x, size, stride, padding),
                               rtol=0, atol=0)


def reorg_loop(x: torch.Tensor, stride: int, forward: bool) -> torch.Tensor:
    """darknet's reorg_cpu(x, w, h, c, batch, stride, forward, out) on a layer input of shape (c, h, w)."""
    B, c, h, w = x.shape
    flat_in, out = x.flatten(), torch.empty(x.numel())
    out_c = c // (stride * stride)
    for b in range(B):
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2, offset = k % out_c, k // out_c
                    w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                    out_index = w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))
                    if forward:
                        out[out_index] = flat_in[in_index]
                    else:
                        out[in_index] = flat_in[out_index]
    return out


def test_reorg_forward_and_reverse_by_hand():
    x = torch.arange(16.0).view(1, 4, 2, 2)
    # Forward (darknet calls reorg_cpu with forward=0): output channel k = (dy*2 + dx) + c2 reads the input memory
    # viewed as (1, 4, 4). That view's rows are [0..3], [4..7], [8..11], [12..15]; cell (j, i) of channel k takes
    # element (2j + k // 2, 2i + k % 2).
    assert DarknetReorg(2)(x).flatten().tolist() == [0, 2, 8, 10, 1, 3, 9, 11, 4, 6, 12, 14, 5, 7, 13, 15]
    assert DarknetReorg(2)(x).shape == (1, 16, 1, 1)
    # Reverse: output (1, 4, 4) viewed flat; element (2j + dy, 2i + dx) comes from channel dy*2 + dx at (j, i).
    assert DarknetReorg(2, reverse=True)(x).view(4, 4).tolist() == [[0, 4, 1, 5], [8, 12, 9, 13],
                                                                     [2, 6, 3, 7], [10, 14, 11, 15]]


@pytest.mark.parametrize("shape,stride", [((2, 8, 4, 6), 2), ((1, 18, 3, 6), 3), ((1, 4, 2, 2), 2)])
def test_reorg_matches_darknets_loop_both_directions(shape, stride, generator):
    x = torch.randn(shape, generator=generator)
    assert torch.equal(DarknetReorg(stride)(x).flatten(), reorg_loop(x, stride, forward=False))
    assert torch.equal(DarknetReorg(stride, reverse=True)(x).flatten(), reorg_loop(x, stride, forward=True))
    assert DarknetReorg(stride, reverse=True)(x).shape == (shape[0], shape[1] // stride ** 2, shape[2] * stride,
                                                           shape[3] * stride)


NET = "[net]\nwidth=8\nheight=8\nchannels=2\n"


def test_route_concatenates_in_the_listed_order_and_resolves_relative_and_absolute(generator):
    text = NET + ("[convolutional]\nfilters=3\nsize=1\nactivation=linear\n"      # 0
                  "[convolutional]\nfilters=5\nsize=1\nactivation=linear\n"      # 1
                  "[route]\nlayers=-1,0\n"                                       # 2: layer 1 first, then layer 0
                  "[route]\nlayers=0,-2,-1\n")                                   # 3: 0, 1, 2
    net = net_from_text(text)
    x = torch.randn(1, 2, 8, 8, generator=generator)
    out = net.forward_layers(x)
    assert torch.equal(out[2], torch.cat((out[1], out[0]), 1))
    assert torch.equal(out[3], torch.cat((out[0], out[1], out[2]), 1))
    assert net.shapes[3].c == 3 + 5 + 8


def shortcut_loop(out_in: torch.Tensor, add: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """darknet's shortcut_cpu(batch, w1, h1, c1, add, w2, h2, c2, s1, s2, out), out initialised with the input."""
    out = out_in.clone().flatten()
    B, c1, h1, w1 = add.shape
    _, c2, h2, w2 = out_in.shape
    stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
    flat_add = add.flatten()
    for b in range(B):
        for k in range(min(c1, c2)):
            for j in range(min(h1, h2)):
                for i in range(min(w1, w2)):
                    o = i * sample + w2 * (j * sample + h2 * (k + c2 * b))
                    a = i * stride + w1 * (j * stride + h1 * (k + c1 * b))
                    out[o] = alpha * out[o] + beta * flat_add[a]
    return out.view_as(out_in)


def test_shortcut_adds_with_activation_and_darknets_strided_rule(generator):
    text = NET + ("[convolutional]\nfilters=4\nsize=1\nactivation=linear\n"
                  "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=linear\n"
                  "[shortcut]\nfrom=-2\nactivation=leaky\n")
    net = net_from_text(text)
    out = net.forward_layers(torch.randn(1, 2, 8, 8, generator=generator))
    assert torch.equal(out[2], F.leaky_relu(out[1] + out[0], 0.1))
    # Shapes that differ: a bigger source read every 2nd cell, fewer channels; a smaller source written sparsely.
    text = NET + ("[convolutional]\nfilters=3\nsize=1\nactivation=linear\n"                # 0: 3x8x8
                  "[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\nactivation=linear\n"  # 1: 4x4x4
                  "[shortcut]\nfrom=0\nalpha=0.5\nbeta=2\n"                                 # 2: 4x4x4
                  "[maxpool]\nsize=2\nstride=2\n"                                           # 3: 4x2x2
                  "[convolutional]\nfilters=4\nsize=1\nactivation=linear\n"                 # 4: 4x2x2
                  "[route]\nlayers=2\n"                                                     # 5: 4x4x4
                  "[shortcut]\nfrom=4\n")                                                   # 6: 4x4x4
    net = net_from_text(text)
    out = net.forward_layers(torch.randn(1, 2, 8, 8, generator=generator))
    torch.testing.assert_close(out[2], shortcut_loop(out[1], out[0], 0.5, 2.0))
    torch.testing.assert_close(out[6], shortcut_loop(out[5], out[4], 1.0, 1.0))


def test_grouped_conv_is_independent_convs_and_keeps_darknets_weight_order(tmp_path, generator):
    text = NET.replace("channels=2", "channels=4") + "[convolutional]\nfilters=6\nsize=3\npad=1\ngroups=2\n" \
        "activation=linear\n"
    net = net_from_text(text)
    conv = net.layers[0].conv
    x = torch.randn(1, 4, 8, 8, generator=generator)
    halves = [F.conv2d(x[:, 2 * g:2 * g + 2], conv.weight[3 * g:3 * g + 3], conv.bias[3 * g:3 * g + 3], padding=1)
              for g in range(2)]
    torch.testing.assert_close(net(x), torch.cat(halves, 1))
    # .weights: 6 biases then 6 x (4/2) x 3 x 3 weights.
    _, _, values = read_weights_file(save_darknet_weights(net, tmp_path / "g.weights"))
    assert len(values) == 6 + 6 * 2 * 9
    assert values[6:].tolist() == conv.weight.detach().flatten().tolist()


def test_batchnorm_epsilon_is_on_the_standard_deviation():
    net = net_from_text(NET.replace("channels=2", "channels=1") +
                        "[convolutional]\nfilters=2\nsize=1\nbatch_normalize=1\nactivation=linear\n").eval()
    block = net.layers[0]
    with torch.no_grad():
        block.conv.weight.fill_(1.0)
        block.bn.running_mean.copy_(torch.tensor([0.5, 0.5]))
        block.bn.running_var.copy_(torch.tensor([0.0, 4.0]))  # a dead channel (variance 0) and a live one
        block.bn.weight.copy_(torch.tensor([2.0, 2.0]))
        block.bn.bias.copy_(torch.tensor([1.0, 1.0]))
    y = net(torch.full((1, 1, 8, 8), 0.5 + 1e-6))
    # darknet: (x - mean) / (sqrt(var) + 1e-6) * scale + bias; x - mean = 1e-6 (to float32 rounding).
    delta = float(torch.tensor(0.5 + 1e-6) - 0.5)
    assert y[0, 0, 0, 0].item() == pytest.approx(delta / 1e-6 * 2 + 1, rel=1e-4)   # 3.0, not PyTorch's ~1.002
    assert y[0, 1, 0, 0].item() == pytest.approx(delta / (2 + 1e-6) * 2 + 1, rel=1e-6)


REGION = NET + "[convolutional]\nfilters={filters}\nsize=1\nactivation=linear\n\n[region]\nanchors=1,2,3,4\n" \
    "num=2\nclasses={classes}\n{extra}\n"


def test_region_activations_flat_softmax(generator):
    net = net_from_text(REGION.format(filters=2 * 8, classes=3, extra="softmax=1"))
    x = torch.randn(1, 2, 8, 8, generator=generator)
    raw = net(x)                       # [1, A=2, 5+3, 8, 8], nothing applied
    act = net.forward_layers(x)[-1].view_as(raw)
    torch.testing.assert_close(act[:, :, 0:2], raw[:, :, 0:2].sigmoid())
    assert torch.equal(act[:, :, 2:4], raw[:, :, 2:4])     # w, h stay raw: decode does exp(t) * anchor
    torch.testing.assert_close(act[:, :, 4], raw[:, :, 4].sigmoid())
    cell = raw[0, 1, 5:, 3, 4]
    torch.testing.assert_close(act[0, 1, 5:, 3, 4], cell.exp() / cell.exp().sum())   # one softmax per cell
    assert net.anchors.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    # Without softmax=1 the classes go through the logistic.
    net = net_from_text(REGION.format(filters=2 * 8, classes=3, extra=""))
    torch.testing.assert_close(net.forward_layers(x)[-1].view_as(raw)[:, :, 5:], net(x)[:, :, 5:].sigmoid())


def test_region_and_softmax_tree_softmax_per_sibling_group(tiny_tree, tmp_path, generator):
    tree_path = write_darknet(tiny_tree, tmp_path / "tiny")[0]
    n = tiny_tree.num_nodes   # 11 nodes in groups [a b] [a1 a2 a3] [b1] [a3x a3y] [b1x] [b1x_p b1x_q]
    net = net_from_text(REGION.format(filters=2 * (5 + n), classes=n, extra=f"softmax=1\ntree={tree_path}"))
    x = torch.randn(1, 2, 8, 8, generator=generator)
    raw, act = net(x), net.forward_layers(x)[-1].view(1, 2, 5 + n, 8, 8)
    cell, probs = raw[0, 0, 5:, 2, 6], act[0, 0, 5:, 2, 6]
    for offset, size in zip(tiny_tree.group_offset.tolist(), tiny_tree.group_size.tolist()):
        group = cell[offset:offset + size]
        torch.testing.assert_close(probs[offset:offset + size], group.exp() / group.exp().sum())
    assert probs[5].item() == pytest.approx(1.0)   # b1 is an only child
    # [softmax] tree= over a classifier's output, and groups=2 without a tree.
    classifier = NET + f"[convolutional]\nfilters={n}\nsize=1\nactivation=linear\n[avgpool]\n[softmax]\ngroups=1\n" \
        f"tree={tree_path}\n[cost]\ntype=masked\n"
    net = net_from_text(classifier)
    logits, layers = net(x), net.forward_layers(x)
    assert logits.shape == (1, n) and not layers[-1].any()    # darknet never writes [cost]'s output at inference
    torch.testing.assert_close(layers[-2][0, 0:2], logits[0, 0:2].softmax(0))   # the roots' group
    torch.testing.assert_close(layers[-2][0, 9:11], logits[0, 9:11].softmax(0))
    net = net_from_text(NET + "[avgpool]\n[softmax]\ngroups=2\ntemperature=2\n")
    y = torch.randn(1, 2, 8, 8, generator=generator)
    probs = net.forward_layers(y)[-1]
    assert torch.allclose(probs, torch.ones(1, 2))    # two groups of one value each
    net = net_from_text(NET.replace("channels=2", "channels=4") + "[avgpool]\n[softmax]\ngroups=2\ntemperature=2\n")
    z = torch.randn(1, 4, 8, 8, generator=generator)
    pooled = z.mean((2, 3))[0]
    torch.testing.assert_close(net.forward_layers(z)[-1][0], torch.cat(((pooled[:2] / 2).softmax(0),
                                                                         (pooled[2:] / 2).softmax(0))))


def test_dropout_is_identity_in_eval_and_inverted_in_training(generator):
    net = net_from_text(NET + "[dropout]\nprobability=0.5\n")
    x = torch.rand(1, 2, 8, 8, generator=generator) + 0.1
    assert torch.equal(net.eval()(x), x)
    y = net.train()(x)
    kept = y != 0
    torch.testing.assert_close(y[kept], 2 * x[kept])


def test_partial_trunk_file_and_seen(tmp_path):
    full = randomize_(darknet_net_from_cfg(darknet_file("darknet19_448.cfg")))
    # darknet's `partial cfg weights darknet19_448.conv.23 23`: the first 23 layers hold 18 convolutions.
    path = save_darknet_weights(full, tmp_path / "darknet19_448.conv.23", seen=12345, max_convs=18)
    detector = darknet_net_from_cfg(darknet_file("yolov2.cfg"))
    assert load_darknet_prefix(detector, path) == (12345, 18)
    for a, b in zip(darknet_convs(full)[:18], darknet_convs(detector)):
        for ta, tb in zip(a.tensors(), b.tensors()):
            assert torch.equal(ta, tb), b.name
    # A file that ends inside a convolution is refused with the layer and the offsets.
    data = path.read_bytes()
    (tmp_path / "cut.weights").write_bytes(data[:-8])
    with pytest.raises(Exception, match=r"inside convolution 17 .*layers\.22"):
        load_darknet_prefix(detector, tmp_path / "cut.weights")


def test_stride_and_input_sizes_follow_the_layers():
    tiny = net_from_text("[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\n"
                         "[maxpool]\nsize=2\nstride=2\n[reorg]\nstride=2\n")
    assert tiny.stride == 8 and tiny.input_sizes(2) == [8, 16]
    assert tiny.layer_shapes(16, 16)[-1].c == 16
    with pytest.raises(ValueError, match="reorg of a 1x1 map"):
        tiny.layer_shapes(4, 4)


def test_cfg_trunk_of_a_classifier_equals_our_darknet19_trunk(ram_path, one_thread):
    from yolo9000.darknet import parse_cfg
    from yolo9000.model.darknet_net import CfgTrunk

    ours = randomize_(build_model(load_config("darknet19").model), 3).eval()
    path = save_darknet_weights(ours, ram_path / "darknet19.weights", seen=77)   # a whole classifier file
    trunk = CfgTrunk(parse_cfg(darknet_file("darknet19.cfg"))).eval()
    assert (trunk.end, trunk.channels16, trunk.channels32) == (22, 512, 1024)   # layer 16 feeds the passthrough
    assert load_darknet_prefix(trunk, path, longer_file=True) == (77, 18)
    with pytest.raises(Exception, match="left over"):
        load_darknet_prefix(trunk, path)      # without longer_file the classifier's last conv is an error
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for got, want in zip(trunk(x), ours.trunk(x)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    resnet = CfgTrunk(parse_cfg(darknet_file("resnet50.cfg")))
    assert resnet.net.sections[-1].type == "shortcut" and resnet.channels32 == 2048
    with pytest.raises(CfgError, match=r"a trunk ends before \[avgpool\]"):
        CfgTrunk(parse_cfg(darknet_file("darknet19.cfg")), end=24)
