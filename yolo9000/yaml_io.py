"""Safe YAML for every file and `--set` value a user hands us: one line naming the file, line and problem.

`yaml.safe_load` alone fails with multi-line ScannerError/ParserError tracebacks, a ConstructorError for a
`!!python/...` tag (refused, never run), and UnicodeDecodeError on a binary file; these turn each of them into the
caller's error class with a message such as `model.yaml line 3: not valid YAML (mapping values are not allowed
here)`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def _describe(err: yaml.YAMLError) -> str:
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if isinstance(err, yaml.constructor.ConstructorError) and "for the tag" in problem:
        tag = problem.split("for the tag")[-1].strip().strip("'").replace("tag:yaml.org,2002:", "!!")
        return f"the tag {tag} is not allowed (plain YAML only; nothing in it was run)"
    return f"not valid YAML ({problem})"


def parse_yaml(text: str, source: str, error: type[Exception], show_line: bool = True) -> Any:
    """`text` parsed as safe YAML; `error` naming `source` (and the line, for files) on any failure."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None and show_line else ""
        raise error(f"{source}{where}: {_describe(err)}") from None


def read_yaml(path: str | Path, error: type[Exception], what: str = "YAML") -> Any:
    """The parsed file (UTF-8, an optional BOM stripped); `error` naming the file when it cannot be read, is not
    UTF-8 text, or is not safe YAML. `what` names the expected content in messages ("a config", ...)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path} does not exist") from None
    except OSError as err:
        raise error(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text (byte {err.start}), expected {what}") from None
    if "\x00" in text:
        raise error(f"{path}: a binary file (NUL bytes), expected {what}")
    return parse_yaml(text, str(path), error)
