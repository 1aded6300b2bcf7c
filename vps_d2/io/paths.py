"""Output-path safety: an output never overwrites, contains or lies inside an input.

:func:`source_locations` and :func:`check_not_overwriting_input` let a tool refuse an
output that is, contains or lies inside its input before anything is read;
:func:`check_output_path` makes sure an output location can be written.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

from vps_d2.utils.file_io import OutputPathError, describe_os_error

__all__ = ["GLOB_CHARS", "check_not_overwriting_input", "check_output_path", "source_locations"]

#: Characters that make a path a glob pattern.
GLOB_CHARS = ("*", "?", "[")


def _both_forms(path: str) -> set[str]:
    """The absolute path and the path with every symlink resolved (normalised case)."""
    path = os.path.expanduser(path)
    return {os.path.normcase(os.path.abspath(path)), os.path.normcase(os.path.realpath(path))}


def _glob_folder(pattern: str) -> str:
    """The folder part of a glob pattern before its first wildcard (``"."`` if none)."""
    parts = []
    for part in os.path.normpath(pattern).split(os.sep):
        if any(c in part for c in GLOB_CHARS):
            break
        parts.append(part)
    return os.sep.join(parts) or (os.sep if pattern.startswith(os.sep) else ".")


def source_locations(items: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(files, folders)`` a reader of ``items`` (video files, frame folders, glob patterns,
    image files, GT folders) reads from, without opening any file.

    A glob pattern gives the files it matches and its folder (the part before the first
    wildcard). Paths that do not exist are left out (the reader reports them).
    """
    files: list[str] = []
    folders: list[str] = []
    for item in items:
        item = os.path.expanduser(str(item))
        if os.path.isdir(item):
            folders.append(item)
        elif os.path.isfile(item):
            files.append(item)
        elif any(c in item for c in GLOB_CHARS):
            files.extend(p for p in glob.glob(item) if os.path.isfile(p))
            folders.append(_glob_folder(item))
    return files, folders


def _inside(path: str, folder: str) -> bool:
    return path != folder and path.startswith(folder.rstrip(os.sep) + os.sep)


def check_not_overwriting_input(
    output: str, *, is_dir: bool, files: Sequence[str], folders: Sequence[str], what: str = "output"
) -> None:
    """Raise ``ValueError`` when ``output`` is an input, lies inside an input folder, or (a
    folder) contains an input file or folder. Symlinks and relative paths are resolved.

    ``files`` / ``folders``: the inputs, e.g. from :func:`source_locations`.
    """
    outs = _both_forms(output)
    for d in folders:
        for o in outs:
            for i in _both_forms(d):
                if o == i:
                    rel = "is"
                elif _inside(o, i):
                    rel = "is inside"
                elif is_dir and _inside(i, o):
                    rel = "contains"
                else:
                    continue
                raise ValueError(
                    f"Refusing to write the {what} {output!r}: it {rel} the input folder {d!r}. "
                    "Choose an output outside the input."
                )
    for f in files:
        for o in outs:
            for i in _both_forms(f):
                if o == i:
                    rel = "is the input file {!r}, which would be overwritten"
                elif is_dir and _inside(i, o):
                    rel = "contains the input file {!r}"
                else:
                    continue
                raise ValueError(
                    f"Refusing to write the {what} {output!r}: it {rel.format(f)}. Choose an "
                    "output outside the input."
                )


def check_output_path(path: str, *, is_dir: bool = False) -> str:
    """Make sure ``path`` (a file, or a folder when ``is_dir``) can be written; return it.

    Missing parent folders are created. Raises ``OSError`` subclasses with a message naming
    the path when a parent is a file, the location is not writable, or a file is expected
    where a folder exists (or the reverse).
    """
    path = os.path.abspath(os.path.expanduser(path))
    folder = path if is_dir else os.path.dirname(path)
    if not is_dir and os.path.isdir(path):
        raise IsADirectoryError(f"Output {path!r} is a folder; give a file name")
    if is_dir and os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"Output folder {path!r} exists and is a file")
    try:
        os.makedirs(folder, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise NotADirectoryError(
            f"Cannot create the output folder {folder!r}: a parent is a file ({e})"
        ) from e
    except PermissionError as e:
        raise PermissionError(f"Cannot create the output folder {folder!r}: {e}") from e
    except OSError as e:  # read-only file system, quota, name too long, ...: one line
        raise OutputPathError(
            f"Cannot create the output folder {folder!r}: {describe_os_error(e)}", e
        ) from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"Output folder {folder!r} is not writable")
    return path
