"""The training engine on tiny real-format data: run directory, NaN guard, accumulation, stages, budgets, errors."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from engine_data import REPO, tiny_config, write_dataset

from yolo9000 import engine
from yolo9000.checkpoint import load_checkpoint
from yolo9000.config import ConfigError, load_config
from yolo9000.device import resolve_amp
from yolo9000.logging import read_scalars


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    write_dataset(root)
    return root


def _quiet(message: str) -> None:
    pass


def test_run_directory_scalars_checkpoint_and_curves(data, tmp_path):
    cfg = tiny_config(data, ["train.max_steps=3", "train.checkpoint_every=2", "train.tensorboard=true"])
    result = engine.train(cfg, tmp_path / "run", log=_quiet)
    assert result.stop_reason == "max_steps" and result.steps == 3 and result.seen == 12
    run = tmp_path / "run"
    assert load_config(run / "config.yaml") == cfg
    assert (run / "curves.png").stat().st_size > 0
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 1
    series = read_scalars(run / "scalars.csv")
    for name in ("loss", "loss/coord", "loss/obj", "loss/noobj", "loss/prior", "loss/cls", "diag/iou", "lr",
                 "images_per_s", "seen", "time/data_wait"):
        assert [s for s, _ in series[name]] == [1, 2, 3], name
    assert all(math.isfinite(v) for _, v in series["loss"])
    # The total is the LossConfig-weighted sum of the logged unweighted terms (weights applied once, here).
    step1 = {name: dict(values)[1] for name, values in series.items()}
    weights = {"coord": cfg.loss.coord, "obj": cfg.loss.obj, "noobj": cfg.loss.noobj, "prior": cfg.loss.prior,
               "cls": cfg.loss.cls}
    assert step1["loss"] == pytest.approx(sum(w * step1[f"loss/{k}"] for k, w in weights.items()), rel=1e-4)
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 3 and state["seen"] == 12 and state["config"]["train"]["max_steps"] == 3
    assert {"model", "optimizer", "scheduler", "sampler", "rng", "epoch"} <= set(state)
    assert result.checkpoint == run / "last.pt"


class _PoisonAt:
    """Wrap a criterion so the `at`-th call (0-based) returns a NaN class term."""

    def __init__(self, criterion, at: int) -> None:
        self.criterion, self.at, self.calls = criterion, at, 0

    def __call__(self, output, batch, seen=0):
        terms = self.criterion(output, batch, seen=seen)
        if self.calls == self.at:
            terms = {**terms, "cls": terms["cls"] * torch.nan}
        self.calls += 1
        return terms

    def total(self, terms):
        return self.criterion.total(terms)

    def to(self, device):
        self.criterion.to(device)
        return self


def test_nan_guard_stops_names_step_and_term_and_saves_last_good_state(data, tmp_path, monkeypatch):
    clean = engine.train(tiny_config(data, ["train.max_steps=2"]), tmp_path / "clean", log=_quiet)
    build = engine.build

    def poisoned(cfg):
        model, criterion, postprocess = build(cfg)
        return model, _PoisonAt(criterion, at=2), postprocess
    monkeypatch.setattr(engine, "build", poisoned)
    # The flag is only read every 4 steps: steps 3 and 4 run poisoned before the guard notices.
    cfg = tiny_config(data, ["train.max_steps=6", "train.log_every=4"])
    result = engine.train(cfg, tmp_path / "nan", log=_quiet)
    assert result.stop_reason == "non_finite"
    assert "step 3" in result.message and "cls=nan" in result.message and "loss/" not in result.message
    assert result.steps == 2 and result.seen == clean.seen
    good, saved = load_checkpoint(clean.checkpoint), load_checkpoint(tmp_path / "nan" / "last.pt")
    assert saved["step"] == 2 and saved["seen"] == good["seen"] and saved["sampler"] == good["sampler"]
    for key, value in good["model"].items():     # parameters AND batch-norm statistics of step 2, exactly
        torch.testing.assert_close(saved["model"][key], value, rtol=0, atol=0, msg=key)
    assert saved["scheduler"]["last_epoch"] == 2
    momentum = [s["momentum_buffer"] for s in saved["optimizer"]["state"].values()]
    expected = [s["momentum_buffer"] for s in good["optimizer"]["state"].values()]
    for a, b in zip(momentum, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_accumulation_equals_one_big_batch(data, tmp_path):
    # No augmentation and frozen batch norm: 2 micro-batches of (1 det + 1 cls) hold the same images as one batch
    # of (2 det + 2 cls), so the averaged gradient, hence the weights after 2 updates, must agree.
    still = ["data.jitter=0", "data.hue=0", "data.saturation=0", "data.exposure=0", "data.flip=false",
             "train.freeze_bn=true", "train.lr=0.01", "train.max_steps=2"]
    big = engine.train(tiny_config(data, still), tmp_path / "big", log=_quiet)
    small = engine.train(tiny_config(data, still + ["data.det_per_batch=1", "data.cls_per_batch=1",
                                                    "train.subdivisions=2"]), tmp_path / "small", log=_quiet)
    start = engine.train(tiny_config(data, still + ["train.max_steps=0"]), tmp_path / "start", log=_quiet)
    assert big.seen == small.seen == 8
    a, b = load_checkpoint(big.checkpoint)["model"], load_checkpoint(small.checkpoint)["model"]
    initial = load_checkpoint(start.checkpoint)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)
    assert not torch.allclose(a["pred.weight"], initial["pred.weight"])  # the updates did move the weights
    assert big.scalars["loss"] == pytest.approx(small.scalars["loss"], rel=1e-4)


def test_classifier_stage_then_detector_from_its_trunk(data, tmp_path):
    # Stage 1: Darknet-19 (tiny) with the hierarchical softmax on the classification images only.
    cls_cfg = tiny_config(data, ["model.kind=darknet19", "train.max_steps=2"])
    stage1 = engine.train(cls_cfg, tmp_path / "cls", log=_quiet)
    assert stage1.steps == 2 and {k for k in stage1.scalars if k.startswith("loss/")} == {"loss/cls"}
    assert 0 < stage1.scalars["diag/cls_prob"] < 1
    # Stage 2: the detector starts from the classifier's trunk (auto: the whole model does not fit).
    messages = []
    det_cfg = tiny_config(data, [f"train.init={stage1.checkpoint}", "train.max_steps=0"])
    engine.train(det_cfg, tmp_path / "det", log=messages.append)
    assert any("trunk only" in m for m in messages)
    trunk = {k: v for k, v in load_checkpoint(stage1.checkpoint)["model"].items() if k.startswith("trunk.")}
    detector = load_checkpoint(tmp_path / "det" / "last.pt")["model"]
    for key, value in trunk.items():
        torch.testing.assert_close(detector[key], value, rtol=0, atol=0)
    from yolo9000.model.load import WeightsError
    with pytest.raises(WeightsError, match="missing from the checkpoint.*trained for kind=darknet19"):
        engine.train(tiny_config(data, [f"train.init={stage1.checkpoint}", "train.init_mode=full",
                                        "train.max_steps=0"]), tmp_path / "full", log=_quiet)


def test_auto_init_from_a_darknet_classifier_weights_loads_the_trunk(data, tmp_path):
    # The default init_mode (auto) tries the whole model first; a classifier's .weights does not fit a detector, and
    # that misfit (a darknet WeightsError) must fall back to the trunk, not end the run.
    from yolo9000.darknet import save_darknet_weights
    from yolo9000.builder import build_model

    classifier = build_model(tiny_config(data, ["model.kind=darknet19"]).model)
    weights = save_darknet_weights(classifier, tmp_path / "darknet19.weights")
    messages = []
    cfg = tiny_config(data, [f"train.init={weights}", "train.max_steps=2"])
    assert cfg.train.init_mode == "auto"
    result = engine.train(cfg, tmp_path / "det", log=messages.append)
    assert result.stop_reason == "max_steps" and result.steps == 2
    assert any("does not fit the whole model" in m and "trunk only" in m for m in messages)
    # Step 0 (no update yet) holds exactly the classifier's trunk.
    start = engine.train(tiny_config(data, [f"train.init={weights}", "train.max_steps=0"]), tmp_path / "d0",
                         log=_quiet)
    detector = load_checkpoint(start.checkpoint)["model"]
    for key, value in classifier.trunk.state_dict().items():
        torch.testing.assert_close(detector[f"trunk.{key}"], value, rtol=0, atol=0, msg=key)


def test_time_budget_stops_cleanly_with_a_checkpoint(data, tmp_path):
    result = engine.train(tiny_config(data, ["train.max_seconds=0", "train.max_steps=50"]), tmp_path / "t",
                          log=_quiet)
    assert result.stop_reason == "max_seconds" and result.steps == 1
    assert load_checkpoint(result.checkpoint)["step"] == 1


def test_epochs_when_no_max_steps(data, tmp_path):
    # 10 classification images at 2 per batch: 5 batches per epoch; 2 epochs with subdivisions 2 -> 5 updates.
    result = engine.train(tiny_config(data, ["train.epochs=2", "train.subdivisions=2"]), tmp_path / "e",
                          log=_quiet)
    assert result.stop_reason == "epochs" and result.steps == 5 and result.seen == 40


def test_bad_settings_are_named(data, tmp_path):
    with pytest.raises(ConfigError, match="train.amp=fp16 needs CUDA"):
        engine.train(tiny_config(data, ["train.amp=fp16"]), tmp_path / "a", log=_quiet)
    # A flat model: with no model.tree the descriptor's tree would be taken (issue 12), so drop that too.
    with pytest.raises(ConfigError, match="model.num_classes=3"):
        engine.train(tiny_config(data, ["model.tree=null", "model.num_classes=3"]), tmp_path / "b",
                     dataset_overrides=["tree=null"], log=_quiet)
    with pytest.raises(ConfigError, match="data.dataset"):
        engine.train(tiny_config(data, ["data.dataset=null"]), tmp_path / "c", log=_quiet)
    engine.train(tiny_config(data, ["train.max_steps=1"]), tmp_path / "d", log=_quiet)
    with pytest.raises(ConfigError, match="model.width: checkpoint 0.25, config 0.5"):
        engine.train(tiny_config(data, ["model.width=0.5"]), tmp_path / "d", resume=True, log=_quiet)


def test_stage_configs_load_build_and_chain():
    from yolo9000.data.descriptor import load_descriptor
    from yolo9000.builder import build_model
    from wordtree.io import load_tree

    stages = sorted((REPO / "yolo9000" / "configs" / "stages").glob("*.yaml"))
    assert len(stages) == 5
    outs = {}
    for path in stages:
        cfg = load_config(path)                      # `base:` pulls in the model config
        # Load (and cache) the tree outside the meta context: a tree first loaded under it would be cached with
        # meta tensors for every later user in this process.
        load_tree(cfg.model.tree)
        with torch.device("meta"):
            model = build_model(cfg.model)
        assert load_descriptor(cfg.data.dataset).splits, path.name
        assert cfg.train.momentum == 0.9 and cfg.train.weight_decay == 0.0005
        if cfg.train.init:                            # each stage starts from an earlier stage's run
            assert cfg.train.init in outs.values(), path.name
        outs[path.name] = f"{cfg.train.out}/last.pt"
        if cfg.model.kind == "yolo9000":
            assert model.num_classes == 9418 and cfg.data.cls_per_batch == 4 * cfg.data.det_per_batch
    assert load_config(REPO / "yolo9000" / "configs" / "stages" / "1_darknet19_224.yaml").model.input_size == 224


def test_config_base_merges_and_names_bad_bases(tmp_path):
    (tmp_path / "m.yaml").write_text("model:\n  kind: yolo9000\n  num_classes: 7\ntrain:\n  lr: 0.5\n")
    (tmp_path / "s.yaml").write_text("base: m.yaml\ntrain:\n  max_steps: 3\n")
    cfg = load_config(tmp_path / "s.yaml", ["train.lr=0.25"])
    assert (cfg.model.kind, cfg.model.num_classes, cfg.train.max_steps, cfg.train.lr) == ("yolo9000", 7, 3, 0.25)
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "lost.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="lost.yaml: base file .*nowhere.yaml does not exist"):
        load_config(tmp_path / "lost.yaml")


def test_bf16_autocast_and_channels_last_on_cpu(data, tmp_path):
    messages = []
    result = engine.train(tiny_config(data, ["train.amp=bf16", "train.channels_last=true", "train.max_steps=2"]),
                          tmp_path / "bf16", log=messages.append)
    assert result.steps == 2 and math.isfinite(result.scalars["loss"]) and result.scalars["loss/cls"] > 0
    assert "amp bf16" in messages[0]
    # Weights stay float32 (autocast computes in bf16, the optimizer updates float32 masters).
    assert all(v.dtype in (torch.float32, torch.int64) for v in load_checkpoint(result.checkpoint)["model"].values())
    expected = "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "off"
    assert resolve_amp(torch.device("cpu"), "auto") == expected


def test_bf16_on_a_cpu_without_bf16_warns_with_the_reason(monkeypatch):
    from yolo9000 import device
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: False)
    with pytest.warns(UserWarning, match=r"train.amp=bf16: this CPU has no bf16 instructions .* slower than float32"):
        assert resolve_amp(torch.device("cpu"), "bf16") == "bf16"
    assert resolve_amp(torch.device("cpu"), "auto") == "off"       # auto: float32, without a word
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_amp(torch.device("cpu"), "bf16") == "bf16"
