"""The one command-line vocabulary of `detect`, `query` and `eval`: flags generated from `DetectorOptions`.

Each `DetectorOptions` field names its flag (`--conf`, `--nms`, `--hier`, `--mode`, `--depth`, `--max-detections`,
`--batch`, `--size`, ...) and its check; the values are checked while parsed, so `--conf 2` is a usage error before
any model is built. `--json [FILE]` means the same everywhere: JSON on stdout instead of the text without FILE,
written to FILE (beside the text) with it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Callable

from yolo9000.api import DetectorOptions
from yolo9000.errors import ConfigError

STDOUT = "-"


def _parser(hint: Any, check: Callable[[Any, str], None] | None, flag: str) -> Callable[[str], Any]:
    base = next(a for a in (typing.get_args(hint) or (hint,)) if a is not type(None))

    def parse(text: str) -> Any:
        try:
            value = base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if base is int else 'a number'}, "
                                             f"got {text!r}") from None
        if check is not None:
            try:
                check(value, flag)
            except ConfigError as err:
                raise argparse.ArgumentTypeError(str(err).split(": ", 1)[-1]) from None
        return value
    parse.__name__ = base.__name__  # argparse names the type in its messages
    return parse


def add_option_arguments(parser: argparse.ArgumentParser, only: set[str] | None = None,
                         defaults: dict[str, Any] | None = None) -> None:
    """Add the flags of the DetectorOptions fields (all, or the names in `only`); dest is the field name."""
    group = parser.add_argument_group("options (yolo9000.api.DetectorOptions)")
    hints = typing.get_type_hints(DetectorOptions)
    for f in dataclasses.fields(DetectorOptions):
        flag = f.metadata.get("flag")
        if flag is None or (only is not None and f.name not in only):
            continue
        default = (defaults or {}).get(f.name, f.default)
        shown = f.metadata.get("unset") if default is None else default
        choices = f.metadata.get("choices")
        base = next(a for a in (typing.get_args(hints[f.name]) or (hints[f.name],)) if a is not type(None))
        if base is bool:
            group.add_argument(flag, dest=f.name, action="store_true", default=default, help=f.metadata["help"])
            continue
        kwargs: dict[str, Any] = {"choices": choices} if choices else {"metavar": "NODE"} if base is str else {
            "type": _parser(hints[f.name], f.metadata.get("check"), flag), "metavar": "N"}
        group.add_argument(flag, dest=f.name, default=default, help=f"{f.metadata['help']} (default {shown})",
                           **kwargs)


def option_values(args: argparse.Namespace) -> dict[str, Any]:
    """The DetectorOptions values parsed by `add_option_arguments`, by field name."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(DetectorOptions) if hasattr(args, f.name)}


def add_json_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", nargs="?", const=STDOUT, metavar="FILE",
                        help=f"{what} as JSON: on stdout instead of the text, or written to FILE")


def emit_json(spec: str | None, data: Any) -> bool:
    """Write `data` per `--json`: nothing (None), stdout ("-"), or a file. True when it went to stdout."""
    if spec is None:
        return False
    text = json.dumps(data, indent=1, default=float)
    if spec == STDOUT:
        print(text)
        return True
    path = Path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return False
