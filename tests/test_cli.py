"""The command line's error contract: user errors are one line and exit 2; anything else is a bug with a traceback."""
from __future__ import annotations

import pytest

import wordtree.cli
from wordtree.errors import WordTreeError
from yolo9000.cli import main
from yolo9000.errors import USER_ERRORS, Yolo9000Error


def test_every_user_error_class_has_one_base_per_package():
    import wordtree.errors as wt
    import yolo9000.errors as y9k
    for module, base in ((y9k, Yolo9000Error), (wt, WordTreeError)):
        classes = [getattr(module, n) for n in module.__all__ if isinstance(getattr(module, n), type)]
        assert all(issubclass(c, USER_ERRORS) for c in classes)
        assert any(c.__module__ == module.__name__ and c is not base for c in classes)
    # The old import locations are the same classes.
    from yolo9000.darknet import WeightsError as darknet_weights_error
    from yolo9000.model.load import WeightsError as checkpoint_weights_error
    assert darknet_weights_error is checkpoint_weights_error is y9k.WeightsError


def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["info", "--config", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("yolo9000 info: error: ") and "nope.yaml" in err and err.count("\n") == 1
    assert main(["tree", "stats", str(tmp_path / "nope.tree")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("yolo9000 tree stats: error: ") and "nope.tree" in err and err.count("\n") == 1


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    # A ValueError or OSError from a bug is not a user error: it propagates (Python prints the traceback).
    def broken(args):
        raise ValueError("a bug")

    monkeypatch.setattr(wordtree.cli, "cmd_stats", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(["tree", "stats", "9k"])

    def broken_os(args):
        raise OSError("disk on fire")

    monkeypatch.setattr("yolo9000.commands.info.run", broken_os)
    with pytest.raises(OSError, match="disk on fire"):
        main(["info", "--config", "tiny"])


@pytest.mark.parametrize("argv, prog, unknown", [
    (["data", "check", "--data", "shapes"], "yolo9000 data check", "--data"),
    (["info", "--config", "tiny", "--nope"], "yolo9000 info", "--nope"),
])
def test_unknown_arguments_name_the_subcommand(argv, prog, unknown, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"{prog}: error: unrecognized arguments: {unknown}"
    assert err.startswith(f"usage: {prog} ")
