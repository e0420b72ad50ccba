"""Find the files to ingest under the paths a user named.

The walk is deterministic (entries sorted by name), follows symbolic links without looping, and
turns every path it cannot use into a :class:`~rag.types.LoadFailure` with a one-line reason.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from indexer.loaders.common import os_reason
from indexer.loaders.registry import supported, unsupported
from rag.errors import FileError
from rag.types import LoadFailure


def iter_files(
    paths: list[Path],
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    on_skip: Callable[[LoadFailure], None] | None = None,
) -> Iterator[Path | LoadFailure]:
    """Yield the files to load under ``paths``, in a deterministic order.

    A file named directly is always yielded if its type is supported (the
    globs do not apply to it). A directory is walked recursively, entries
    sorted by name; from it only files with a supported suffix are picked,
    others are skipped (and handed to ``on_skip``). Symbolic links are followed; a link to a
    directory already walked (a loop or a second way in) and a dangling link
    are reported, never followed again. A file reached twice is yielded once.

    Args:
        paths: files and directories, as the user named them.
        include: fnmatch globs; when given, a file under a directory is kept
            only if one matches its path relative to that directory or its
            bare name (``"*.md"``, ``"guides/*"``).
        exclude: fnmatch globs, matched the same way, that drop a file; a
            directory that matches is not entered.
        on_skip: called with each regular file under a directory that the globs keep but whose
            type is not supported, and its reason (``"unsupported file type .xyz"``).

    Yields:
        A path to load, or a :class:`~rag.types.LoadFailure` for a path that
        cannot be loaded (missing, dangling link, symlink loop, unsupported
        type named directly, not a regular file, unreadable directory).
    """
    seen_files: set[tuple[int, int]] = set()
    for root in paths:
        root = Path(root)
        st, failure = stat_path(root)
        if failure is not None:
            yield failure
        elif stat.S_ISDIR(st.st_mode):
            yield from _walk(root, st, include or [], exclude or [], seen_files, on_skip)
        else:
            yield from _check_file(root, st, seen_files, direct=True)


def stat_regular(path: Path) -> os.stat_result:
    """Stat ``path`` through links and require a regular file.

    Args:
        path: the file.

    Returns:
        Its stat result.

    Raises:
        FileError: missing, a dangling link or a loop, unreadable, or not a regular file.
    """
    st, failure = stat_path(path)
    if failure is not None:
        raise FileError(str(path), failure.reason)
    if not stat.S_ISREG(st.st_mode):
        raise FileError(str(path), f"not a regular file ({_file_kind(st.st_mode)})")
    return st


def stat_path(path: Path) -> tuple[os.stat_result, LoadFailure | None]:
    """Stat through links, turning each way it can fail into a failure (with a dummy result)."""
    try:
        return os.stat(path), None
    except OSError as e:
        if os.path.islink(path):
            if e.errno == errno.ELOOP:
                return _NO_STAT, LoadFailure(str(path), "symlink loop")
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            if isinstance(e, FileNotFoundError):
                return _NO_STAT, LoadFailure(str(path), f"dangling symlink (target {target!r} does not exist)")
        if isinstance(e, FileNotFoundError):
            return _NO_STAT, LoadFailure(str(path), "no such file or directory")
        return _NO_STAT, LoadFailure(str(path), f"unreadable: {os_reason(e)}")


_NO_STAT = os.stat_result((0,) * 10)


def _walk(
    root: Path,
    root_st: os.stat_result,
    include: list[str],
    exclude: list[str],
    seen_files: set[tuple[int, int]],
    on_skip: Callable[[LoadFailure], None] | None = None,
) -> Iterator[Path | LoadFailure]:
    # An explicit stack, not recursion: depth is whatever the file system holds.
    visited_dirs = {(root_st.st_dev, root_st.st_ino)}
    stack: list[Iterator[os.DirEntry[str]]] = []
    entries, failure = _list_dir(root)
    if failure is not None:
        yield failure
        return
    stack.append(iter(entries))
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        path = Path(entry.path)
        rel = path.relative_to(root).as_posix()
        st, failure = stat_path(path)
        if failure is not None:
            if _wanted(rel, entry.name, include, exclude):
                yield failure
            continue
        if stat.S_ISDIR(st.st_mode):
            if _matches(rel, entry.name, exclude):
                continue
            key = (st.st_dev, st.st_ino)
            if key in visited_dirs:
                yield LoadFailure(str(path), "symlink to a directory already walked (loop or duplicate), skipped")
                continue
            visited_dirs.add(key)
            entries, failure = _list_dir(path)
            if failure is not None:
                yield failure
            else:
                stack.append(iter(entries))
        elif _wanted(rel, entry.name, include, exclude):
            yield from _check_file(path, st, seen_files, direct=False)
        elif on_skip is not None and stat.S_ISREG(st.st_mode) and _kept(rel, entry.name, include, exclude):
            on_skip(LoadFailure(_printable(path), unsupported(path, short=True)))


def _list_dir(path: Path) -> tuple[list[os.DirEntry[str]], LoadFailure | None]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name), None
    except OSError as e:
        return [], LoadFailure(str(path), f"unreadable directory: {os_reason(e)}")


def _wanted(rel: str, name: str, include: list[str], exclude: list[str]) -> bool:
    return supported(name) and _kept(rel, name, include, exclude)


def _kept(rel: str, name: str, include: list[str], exclude: list[str]) -> bool:
    if include and not _matches(rel, name, include):
        return False
    return not _matches(rel, name, exclude)


def _matches(rel: str, name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def _check_file(
    path: Path, st: os.stat_result, seen_files: set[tuple[int, int]], *, direct: bool
) -> Iterator[Path | LoadFailure]:
    if direct and not supported(path.name):
        yield LoadFailure(str(path), unsupported(path))
        return
    if not stat.S_ISREG(st.st_mode):
        yield LoadFailure(str(path), f"not a regular file ({_file_kind(st.st_mode)})")
        return
    if not _encodable(str(path)):
        # The database stores names as UTF-8; a name with undecodable bytes would fail the whole ingest there.
        yield LoadFailure(_printable(path), "file name is not valid UTF-8; rename the file")
        return
    key = (st.st_dev, st.st_ino)
    if key not in seen_files:
        seen_files.add(key)
        yield path


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(path: Path) -> str:
    """The path with bytes that are not UTF-8 shown as ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_ISFIFO: "named pipe",
        stat.S_ISSOCK: "socket",
        stat.S_ISCHR: "character device",
        stat.S_ISBLK: "block device",
        stat.S_ISDIR: "directory",
    }
    return next((name for test, name in kinds.items() if test(mode)), "special file")
