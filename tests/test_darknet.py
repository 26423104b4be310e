"""Darknet compatibility: cfg parsing and recognition of the reference cfgs, `.weights` round trips, headers,
wrong-size / truncated / empty files, and loading a classifier's trunk into a detector."""
from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest
import torch

from yolo9000.config import load_config
from yolo9000.darknet import (CfgError, WeightsError, cfg_text, config_from_cfg, darknet_convs, expected_floats,
                              load_darknet_trunk, load_darknet_weights, parse_cfg, save_darknet_weights, write_cfg)
from yolo9000.builder import build_model
from yolo9000.reference import darknet_file

REFERENCE = {"yolov2": "yolov2", "yolo9000": "yolo9000",
             "darknet19": "darknet19", "darknet19_448": "darknet19_448"}


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fill every parameter and BN buffer with distinct random values (fresh BN stats are all 0 / 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        stats = [t for m in norms for t in (m.running_mean, m.running_var)]
        for tensor in list(model.parameters()) + stats:
            tensor.copy_(torch.rand(tensor.shape, generator=g) + 0.5)
    return model


def tiny_model(seed: int = 0) -> torch.nn.Module:
    return randomize(build_model(load_config("tiny").model), seed)


def meta_model(cfg):
    with torch.device("meta"):
        return build_model(cfg)


def shapes(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(p.shape)) for name, p in model.named_parameters()]


# ------------------------------------------------------------------------------------------------------- cfg
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_cfgs_build_the_configs_networks(name):
    from_cfg = config_from_cfg(darknet_file(f"{name}.cfg"))
    from_yaml = load_config(REFERENCE[name]).model
    # The [net] size is the cfg's (yolov2.cfg says 608, darknet19.cfg 256); every architecture field matches.
    assert dataclasses.replace(from_cfg, input_size=from_yaml.input_size) == from_yaml
    assert shapes(meta_model(from_cfg)) == shapes(meta_model(from_yaml))


def test_reference_cfg_details():
    v2 = config_from_cfg(darknet_file("yolov2.cfg"))
    assert v2.input_size == 608 and v2.num_classes == 80 and len(v2.anchors) == 5 and v2.tree is None
    y9k = config_from_cfg(darknet_file("yolo9000.cfg"))
    assert y9k.tree == "9k" and y9k.anchors[2] == (9.22725, 9.61974) and y9k.input_size == 544
    classifier = config_from_cfg(darknet_file("darknet9000.cfg"))  # classifier over the 9k tree, [cost] masked
    assert classifier.kind == "darknet19" and classifier.tree == "9k" and classifier.input_size == 448
    assert meta_model(classifier).classifier.out_channels == 9418


def test_yolov2_weights_size_matches_darknets_file():
    # darknet's published yolov2.weights (version 0.1 header, int32 seen: 16 bytes) is 203,934,260 bytes.
    model = meta_model(config_from_cfg(darknet_file("yolov2.cfg")))
    assert 16 + 4 * expected_floats(model) == 203_934_260
    assert len(darknet_convs(model)) == 23  # the cfg's [convolutional] sections
    assert len(darknet_convs(meta_model(config_from_cfg(darknet_file("yolo9000.cfg"))))) == 19


@pytest.mark.parametrize("config", ["tiny", "yolov2", "yolo9000",
                                    "darknet19"])
def test_write_cfg_round_trip(config, tmp_path):
    cfg = load_config(config).model
    path = write_cfg(cfg, tmp_path / "net.cfg")
    assert config_from_cfg(path) == cfg
    convs = [s for s in parse_cfg(path) if s.type == "convolutional"]
    entries = darknet_convs(meta_model(cfg))
    assert [int(s.options["filters"]) for s in convs] == [e.conv.out_channels for e in entries]
    assert [int(s.options["size"]) for s in convs] == [e.conv.kernel_size[0] for e in entries]
    assert [s.options.get("batch_normalize") == "1" for s in convs] == [e.bn is not None for e in entries]


def test_tree_overrides_via_cfg_path(tiny_tree, tmp_path):
    from wordtree.io import write_darknet
    write_darknet(tiny_tree, tmp_path / "tiny")
    cfg = load_config("tiny", [f"model.tree={tmp_path / 'tiny.tree'}"]).model
    path = write_cfg(cfg, tmp_path / "net.cfg", tree_path="tiny.tree")  # relative: resolved beside the cfg
    got = config_from_cfg(path)
    assert got.tree == str(tmp_path / "tiny.tree") and got.num_classes == tiny_tree.num_nodes


def write(tmp_path, text: str, name: str = "x.cfg"):
    path = tmp_path / name
    path.write_text(text)
    return path


def reference_text(name: str) -> str:
    return darknet_file(name).read_text()


def test_unsupported_layer_names_section_and_line(tmp_path):
    text = reference_text("yolov2.cfg").replace("[reorg]", "[upsample]")
    line = text.splitlines().index("[upsample]") + 1
    with pytest.raises(CfgError, match=rf"x\.cfg:{line}: \[upsample\] layers are not supported"):
        config_from_cfg(write(tmp_path, text))


def test_unsupported_option_names_key_and_line(tmp_path):
    text = "[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=8\nsize=3\ndilation=2\n"
    with pytest.raises(CfgError, match=r"x\.cfg:7: \[convolutional\] option 'dilation' is not supported"):
        parse_cfg(write(tmp_path, text))


def test_bad_value_names_key_and_line(tmp_path):
    text = reference_text("yolo9000.cfg").replace("filters=28269", "filters=many")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if s.startswith("filters=many"))
    with pytest.raises(CfgError, match=rf"x\.cfg:{line}: \[convolutional\] filters='many' is not an integer"):
        config_from_cfg(write(tmp_path, text))


def test_malformed_lines(tmp_path):
    with pytest.raises(CfgError, match=r"x\.cfg:1: option 'width=3' comes before any \[section\]"):
        parse_cfg(write(tmp_path, "width=3\n[net]\n"))
    with pytest.raises(CfgError, match=r"x\.cfg:2: expected key=value"):
        parse_cfg(write(tmp_path, "[net]\nwidth\n"))
    with pytest.raises(CfgError, match="first section must be"):
        parse_cfg(write(tmp_path, "# comment\n[maxpool]\nsize=2\n"))
    with pytest.raises(CfgError, match="no sections"):
        parse_cfg(write(tmp_path, "\n# nothing\n"))


def test_whitespace_comments_and_first_duplicate_win(tmp_path):
    text = "; darknet comment\n[net]\n width = 320 \nheight=320\nwidth=999\n[maxpool]\nsize = 2\nstride=2\n"
    net, pool = parse_cfg(write(tmp_path, text))
    assert net.options == {"width": "320", "height": "320"} and net.option_lines["width"] == 3
    assert pool.type == "maxpool" and pool.options == {"size": "2", "stride": "2"}


def test_inexpressible_network_names_first_different_layer(tmp_path):
    lines = reference_text("yolov2.cfg").splitlines()
    # The first 3x3x1024 head conv (darknet layer 23; three 1024-filter trunk convs come before it) made 512 wide.
    heads = [i for i, s in enumerate(lines) if s == "filters=1024"]
    lines[heads[3]] = "filters=512"
    conv_line = max(i for i in range(heads[3]) if lines[i] == "[convolutional]") + 1
    with pytest.raises(CfgError, match=rf"x\.cfg:{conv_line}: layer 23 \[convolutional\] filters=512 .*"
                                       r"our kind=yolov2 .* network has \[convolutional\] filters=1024"):
        config_from_cfg(write(tmp_path, "\n".join(lines)))


def test_route_to_another_layer_is_rejected(tmp_path):
    text = reference_text("yolov2.cfg").replace("layers=-9", "layers=-10")
    with pytest.raises(CfgError, match=r"layer 25 \[route\] layers=\(15,\).*has \[route\] layers=\(16,\)"):
        config_from_cfg(write(tmp_path, text))


def test_region_anchor_count_and_tree_size(tmp_path):
    text = reference_text("yolov2.cfg").replace("num=5", "num=4")
    with pytest.raises(CfgError, match=r"\[region\] anchors: 10 values for num=4 anchors"):
        config_from_cfg(write(tmp_path, text))
    text = reference_text("yolo9000.cfg").replace("classes=9418", "classes=9000")
    with pytest.raises(CfgError, match=r"classes=9000 but the tree has 9418 nodes"):
        config_from_cfg(write(tmp_path, text))


def test_wrong_trunk_is_rejected(tmp_path):
    text = "[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=8\nsize=3\n[maxpool]\nsize=2\nstride=2\n"
    with pytest.raises(CfgError, match="found 1 \\[maxpool\\] layers; a Darknet-19 trunk"):
        config_from_cfg(write(tmp_path, text))


# --------------------------------------------------------------------------------------------------- weights
@pytest.mark.parametrize("version,header", [((0, 2, 0), 20), ((0, 1, 0), 16), ((1, 0, 0), 20)])
def test_weights_round_trip_is_exact(tmp_path, version, header):
    model = tiny_model(0)
    path = save_darknet_weights(model, tmp_path / "tiny.weights", seen=123456, version=version)
    assert path.stat().st_size == header + 4 * expected_floats(model)
    fresh = tiny_model(1)
    assert load_darknet_weights(fresh, path) == 123456
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(model.eval()(x), fresh.eval()(x))


def test_header_versions_written_by_hand(tmp_path):
    model = tiny_model(0)
    floats = np.concatenate([t.detach().numpy().ravel() for e in darknet_convs(model) for t in e.tensors()])
    for version, seen_fmt in (((0, 1, 0), "<i"), ((0, 2, 5), "<Q"), ((1000, 1, 0), "<i")):  # major>=1000: int32
        path = tmp_path / f"v{version[0]}.{version[1]}.weights"
        path.write_bytes(struct.pack("<3i", *version) + struct.pack(seen_fmt, 64000) + floats.astype("<f4").tobytes())
        fresh = tiny_model(2)
        assert load_darknet_weights(fresh, path) == 64000
        assert torch.equal(fresh.pred.weight, model.pred.weight)
    seen = 2**40  # only a uint64 field holds this
    path = save_darknet_weights(model, tmp_path / "big_seen.weights", seen=seen)
    assert load_darknet_weights(tiny_model(3), path) == seen
    with pytest.raises(WeightsError, match="does not fit the int32 field"):
        save_darknet_weights(model, tmp_path / "old.weights", seen=seen, version=(0, 1, 0))


def test_wrong_size_file_states_expected_actual_and_layer(tmp_path):
    small = tiny_model(0)
    path = save_darknet_weights(small, tmp_path / "tiny.weights")
    wide = build_model(load_config("tiny", ["model.width=0.5"]).model)
    need, have = expected_floats(wide), expected_floats(small)
    # Counted in floats, the wide model's first six convolutions still fit in the small model's file.
    with pytest.raises(WeightsError, match=rf"needs {need} floats after the header, the file has {have}; the first "
                                           r"layer that does not fit is convolution 6 head\.0 \(conv 512->512 3x3 bn"):
        load_darknet_weights(wide, path)
    bigger = save_darknet_weights(wide, tmp_path / "wide.weights")
    with pytest.raises(WeightsError, match=rf"needs {have} floats .* has {need}; all 10 convolutions fit and "
                                           rf"{need - have} floats are left over"):
        load_darknet_weights(tiny_model(0), bigger)


def test_truncated_and_empty_files_never_load(tmp_path):
    model = tiny_model(0)
    path = save_darknet_weights(model, tmp_path / "tiny.weights")
    data = path.read_bytes()
    before = {k: v.clone() for k, v in tiny_model(5).state_dict().items()}
    for cut, message in ((len(data) - 4, "the first layer that does not fit is convolution 9 pred"),
                         (len(data) - 2, "not a whole number of float32 values"),
                         (18, "shorter than the 20-byte header"),
                         (7, "shorter than the 12-byte version header"),
                         (0, "empty file")):
        broken = tmp_path / f"cut{cut}.weights"
        broken.write_bytes(data[:cut])
        target = tiny_model(5)
        with pytest.raises(WeightsError, match=message):
            load_darknet_weights(target, broken)
        assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # untouched
    with pytest.raises(WeightsError, match="does not exist"):
        load_darknet_weights(model, tmp_path / "missing.weights")


def test_trunk_loading_from_classifier_and_partial(tmp_path):
    cfg = load_config("tiny").model
    classifier = randomize(build_model(dataclasses.replace(cfg, kind="darknet19", num_classes=7)), 4)
    full = save_darknet_weights(classifier, tmp_path / "classifier.weights", seen=999)
    detector = tiny_model(6)
    head_before = detector.pred.weight.clone()
    assert load_darknet_trunk(detector, full) == 999
    for (name, a), b in zip(classifier.trunk.state_dict().items(), detector.trunk.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(detector.pred.weight, head_before)  # only the trunk changes
    # darknet `partial` cut: the trunk alone.
    partial = tmp_path / "classifier.conv.weights"
    trunk_bytes = 20 + 4 * expected_floats(classifier.trunk)
    partial.write_bytes(full.read_bytes()[:trunk_bytes])
    assert load_darknet_trunk(tiny_model(7), partial) == 999
    # Truncated inside the classifier head: neither a whole classifier nor a partial file.
    cut = tmp_path / "cut.weights"
    cut.write_bytes(full.read_bytes()[:trunk_bytes + 4 * 10])
    with pytest.raises(WeightsError, match=r"10 floats follow the trunk's \d+; a classifier head .* multiple of 257"):
        load_darknet_trunk(tiny_model(7), cut)
    cut.write_bytes(full.read_bytes()[:trunk_bytes - 4 * 10])
    with pytest.raises(WeightsError, match="Darknet-19 trunk needs .* the first layer that does not fit"):
        load_darknet_trunk(tiny_model(7), cut)


def test_cfg_text_and_weights_load_into_model_from_cfg(tmp_path):
    from yolo9000.darknet import model_from_cfg
    model = tiny_model(0)
    cfg_path = tmp_path / "tiny.cfg"
    cfg_path.write_text(cfg_text(load_config("tiny").model))
    weights = save_darknet_weights(model, tmp_path / "tiny.weights")
    loaded, _ = model_from_cfg(cfg_path, weights)
    x = torch.rand(2, 3, 96, 64)
    assert not loaded.training
    assert torch.equal(loaded(x), model.eval()(x))
