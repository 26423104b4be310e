"""The package as a user installs it: build the wheel, install it into a folder, and run the CLI from elsewhere.

The shipped configs and dataset descriptors must come from the installed package (importlib.resources), not from
the checkout, so every command runs in a folder outside it with only the install folder on PYTHONPATH.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("package")
    # Build from a copy, so setuptools' build/ and egg-info do not land in the checkout.
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "build", "*.egg-info",
                                                                  "__pycache__", ".pytest_cache"))
    wheels = root / "wheels"
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                  str(source)], root, dict(os.environ))
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("yolo9000-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("yolo9000/configs/yolo9000.yaml", "yolo9000/configs/stages/3_yolo9000_joint.yaml",
                    "yolo9000/datasets/shapes.yaml", "wordtree/tree.py"):
        assert shipped in names, shipped
    target = root / "site"
    done = _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                root, dict(os.environ))
    assert done.returncode == 0, done.stderr
    return target


@pytest.fixture()
def outside(installed, tmp_path) -> tuple[Path, dict[str, str]]:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(installed)
    return cwd, env


def test_the_installed_package_is_the_one_imported(outside, installed):
    cwd, env = outside
    result = _run([sys.executable, "-c", "import yolo9000, yolo9000.resources as r; print(yolo9000.__file__); "
                   "print(r.config_file('yolo9000')); print(r.dataset_file('shapes'))"], cwd, env)
    assert result.returncode == 0, result.stderr
    assert all(line.startswith(str(installed)) for line in result.stdout.split()), result.stdout


def test_info_tree_detect_and_demo_help_from_outside_the_checkout(outside, installed, tmp_path):
    cwd, env = outside
    cli = [sys.executable, "-m", "yolo9000"]
    info = _run(cli + ["info", "--config", "yolo9000"], cwd, env)
    assert info.returncode == 0, info.stderr
    assert info.stdout.splitlines()[-2].startswith("params: ")
    stats = _run(cli + ["tree", "stats", "9k"], cwd, env)
    assert stats.returncode == 0, stats.stderr
    assert "9418" in stats.stdout
    image = cwd / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(image)
    detect = _run(cli + ["detect", "--config", "tiny", "--device", "cpu", str(image), "--out", "out"], cwd, env)
    assert detect.returncode == 0, detect.stderr
    assert (cwd / "out" / "detections.json").is_file() and (cwd / "out" / "image.png").is_file()
    demo = _run(cli + ["demo", "--help"], cwd, env)
    assert demo.returncode == 0 and "--config" in demo.stdout, demo.stderr
    missing = _run(cli + ["info", "--config", "nope"], cwd, env)
    assert missing.returncode == 2 and "nope" in missing.stderr and "yolo9000" in missing.stderr
