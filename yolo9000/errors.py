"""yolo9000's user errors: one base, `Yolo9000Error`; each message is one line naming the input.

`yolo9000.cli.main` turns exactly these (and wordtree's `WordTreeError`) into `error: ...` with exit status 2; any
other exception is a bug and shows its traceback. Each class also derives from the builtin it used to be (ValueError,
RuntimeError), so callers that caught the builtin keep working.
"""
from __future__ import annotations

from typing import Literal

from wordtree.errors import AmbiguousNodeError, NodeError, TreeError, WordNetError, WordTreeError

__all__ = ["USER_ERRORS", "AmbiguousNodeError", "CfgError", "CheckpointError", "ClassMapError", "ConfigError",
           "DarknetError", "DatasetError", "DescriptorError", "ImageLoadError", "ModelLoadError", "NodeError",
           "NonFiniteStateError", "PackError", "ReferenceDataError", "RunLockedError", "TreeError", "WeightsError",
           "WordNetError", "WordTreeError", "Yolo9000Error"]

ImageLoadReason = Literal["missing", "unreadable", "truncated", "too_large"]


class Yolo9000Error(Exception):
    """Base of every user error raised by yolo9000."""


class ConfigError(Yolo9000Error, ValueError):
    """A config file is unreadable, or a key is unknown or its value invalid; the message names the file or key."""


class DescriptorError(Yolo9000Error, ValueError):
    """A dataset descriptor is malformed; the message names the file and key."""


class EmptySourceError(DescriptorError):
    """A source of a split holds no images (an empty folder, or every entry left out); the message says why."""


class DatasetError(Yolo9000Error, ValueError):
    """A dataset file (annotations, image list, folder) is missing or malformed, or a split has nothing to use;
    the message names the file and line."""


class ClassMapError(Yolo9000Error, ValueError):
    """A class map cannot be applied; the message names the file and entry."""


class PackError(Yolo9000Error, ValueError):
    """A pack cannot be written or read as asked; the message names the file and what to do."""


class DarknetError(Yolo9000Error, ValueError):
    """A darknet file is malformed or does not fit the network; the message names file, line or layer."""


class CfgError(DarknetError):
    """A darknet `.cfg` problem; the message names the file, the line and the key."""


class CheckpointError(Yolo9000Error, RuntimeError):
    """A checkpoint is missing, unreadable or lacks a required key; the message names the file."""


class NonFiniteStateError(CheckpointError):
    """A state about to be saved holds NaN or infinite weights, so it was not saved; the message names the tensor
    and the checkpoint kept."""


class RunLockedError(Yolo9000Error, RuntimeError):
    """Another process holds the run folder; the message names the folder and the holder's pid."""


class WeightsError(CheckpointError, DarknetError):
    """Weights (our checkpoint or darknet `.weights`) do not fit the model, or the file is malformed; the message
    names the file, the first parameter or layer that does not fit and both shapes.

    One class for both formats, so a caller (`initialise_from`'s `auto` mode) catches every misfit with one except.
    """


class ModelLoadError(Yolo9000Error, RuntimeError):
    """The model could not be built or its weights not loaded (bad config, cfg, run dir or weights)."""


class ReferenceDataError(Yolo9000Error, RuntimeError):
    """Reference data is missing and could not be fetched; the message says what to do instead."""


class ImageLoadError(Yolo9000Error, RuntimeError):
    """An image is missing, unreadable, truncated or declares more pixels than the decoded-pixel limit; the message
    names the file, `reason` says which."""

    def __init__(self, message: str, reason: ImageLoadReason = "unreadable") -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):
        # Keep `reason` when the error crosses a loader-worker boundary.
        return type(self), (self.args[0], self.reason)


# What a command line reports as one line and exit 2.
USER_ERRORS: tuple[type[Exception], ...] = (Yolo9000Error, WordTreeError)
