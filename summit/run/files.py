"""Writing run files safely: atomic file replacement, staging directories swapped in whole, and
the temporary names (``.<name>.summit-tmp-<pid>@<host>``) that let later writers clean up after a
killed one."""
from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import SummitError

STAGING = ".summit-tmp-"  # marks temporary files and directories: .<name>.summit-tmp-<pid>@<host>[~...]


def _owner_tag() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def _is_stale(name: str) -> bool:
    """Whether a temporary file or directory (named with _owner_tag) belongs to a process of this
    host that no longer runs (killed in the middle of a write)."""
    m = re.search(re.escape(STAGING) + r"(\d+)@([^~]*)", name)
    if not m or m.group(2) != socket.gethostname():
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def remove_stale_of(path: Path) -> None:
    """Delete the temporary files and directories of killed earlier writes of ``path`` (a file or
    directory): its siblings named ``.<name>.summit-tmp-<pid>@<this host>`` whose process is gone."""
    prefix = f".{path.name}{STAGING}"
    try:
        entries = [e for e in os.scandir(path.parent) if e.name.startswith(prefix)]
    except OSError:
        return
    for e in entries:
        if _is_stale(e.name):
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(e.path)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[str]:
    """A temporary path next to ``path`` that replaces it (0644, fsynced) when the block ends,
    so readers see either the old or the complete new file; temporary files of killed earlier
    writes of the same file are removed first. A path that cannot be written is refused in one line."""
    path = Path(path)
    remove_stale_of(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{STAGING}{_owner_tag()}~")
    except OSError as e:
        raise SummitError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; run files are meant to be shared
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise SummitError(f"cannot replace {path}: {e.strerror or e}") from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def output_dir(path: str | os.PathLike) -> Path:
    """An output directory path (resolved): refused when it, or a folder above it, is a file, or when
    its parent folder cannot be written (the output is built in a sibling and swapped in)."""
    if not str(path).strip():
        raise SummitError("the output path is empty")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise SummitError(f"output {p} is a file, not a directory")
    for parent in p.absolute().parents:
        if parent.exists() and not parent.is_dir():
            raise SummitError(f"output {p}: {parent} is a file, not a directory")
    resolved = p.resolve()
    writable = next((a for a in resolved.parents if a.exists()), resolved)  # where the staging folder goes
    if not os.access(writable, os.W_OK | os.X_OK):
        raise SummitError(f"output {p}: cannot write in {writable} (output is built beside its final place)")
    return resolved


def _streams(p: Path) -> bool:
    """Whether output path ``p`` is written through rather than replaced: an existing character
    device, FIFO or socket (symlinks followed), or a name under /dev or /proc (/dev/stdout,
    /proc/self/fd/1), where replacing would swap the device or the caller's stream for a file."""
    q = p.absolute()
    for _ in range(40):  # the symlink chain, as far as the kernel would follow it
        if q.parts[1:2] in (("dev",), ("proc",)):
            return True
        if not q.is_symlink():
            break
        q = q.parent / os.readlink(q)
    return p.exists() and not p.is_file() and not p.is_dir()


def output_file(path: str | os.PathLike) -> Path:
    """Check a user-named output file before any work (see :func:`write_output`): refused in one
    line when empty, a directory, in a missing folder, or not writable."""
    if not str(path).strip():
        raise SummitError("the output path is empty")
    p = Path(path)
    if p.is_dir():
        raise SummitError(f"output {p} is a directory; give a file name")
    if _streams(p):
        if not p.exists() or not os.access(p, os.W_OK):
            raise SummitError(f"output {p}: {'cannot write to it' if p.exists() else 'no such device or stream'}")
        return p
    target = Path(os.path.realpath(p))  # through a symlink: its target is replaced, the link kept
    if not target.parent.is_dir():
        raise SummitError(f"output {p}: folder {target.parent} does not exist")
    try:  # the real test of writing there (permissions, read-only mounts, special file systems)
        fd, probe = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}{STAGING}{_owner_tag()}~")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise SummitError(f"output {p}: cannot write in {target.parent} ({e.strerror or e})") from None
    return p


def is_stdout(path: str | os.PathLike) -> bool:
    """Whether ``path`` names the file or stream this process's standard output writes to."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):  # no such path, or stdout closed / not a file
        return False


def write_output(path: str | os.PathLike, data: bytes) -> Path:
    """Write a user-named output file: a regular file (or a new name) is replaced atomically, through
    a symlink its target; a device or stream (/dev/null, /dev/stdout, a FIFO) is written through."""
    p = output_file(path)
    if not _streams(p):
        atomic_write_bytes(os.path.realpath(p), data)
        return p
    try:
        if is_stdout(p):  # our own stdout (/dev/stdout, /proc/self/fd/1): continue where it stands
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return p
        with open(p, "wb") as f:
            f.write(data)
    except OSError as e:
        raise SummitError(f"cannot write {p}: {e.strerror or e}") from None
    return p


def is_temp(name: str) -> bool:
    """A temporary file or directory of an atomic write (see STAGING)."""
    return name.startswith(".") and STAGING in name


def check_replaceable(out: Path, allowed: Callable[[str], bool]) -> None:
    """Refuse to replace a non-empty directory holding anything a summit command did not write."""
    if not out.is_dir():
        return
    foreign = sorted(n for n in os.listdir(out) if not allowed(n))
    if foreign:
        raise SummitError(f"{out} is not empty and holds files summit did not write (e.g. {foreign[0]}); "
                          "choose another output directory")


def staging_dir(out: Path) -> Path:
    """A fresh temporary sibling directory to build `out` in (stale ones of killed runs removed)."""
    stage = out.parent / f".{out.name}{STAGING}{_owner_tag()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_of(out)
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir()
    except OSError as e:
        raise SummitError(f"cannot create {stage.name} next to {out} ({e.strerror or e}): output is built "
                          "beside its final place and swapped in") from None
    return stage


@contextlib.contextmanager
def replacing(out: Path) -> Iterator[Path]:
    """Build the new content of directory `out` in a staging sibling; when the block succeeds it
    is swapped into `out` atomically, when it fails it is removed and `out` is left as it was."""
    stage = staging_dir(out)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    replace_dir(stage, out)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(stage: Path, out: Path) -> None:
    """Make the finished `stage` directory the new `out` in one atomic step, then delete what
    `out` held before (a crash in between leaves a stale temporary directory, removed later)."""
    if not out.exists():
        os.rename(stage, out)
    elif _exchange(stage, out):
        shutil.rmtree(stage)
    else:  # no atomic exchange: a short window without `out`, never a mixed directory
        old = out.parent / f".{out.name}{STAGING}{_owner_tag()}~old"
        os.rename(out, old)
        os.rename(stage, out)
        shutil.rmtree(old)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that readers see either the old or the complete new content."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_table(table: pa.Table, path: str | os.PathLike, row_group_size: int | None = None) -> None:
    """Atomically write a deterministic (byte-reproducible) Parquet file."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group_size, compression="zstd",
                   write_statistics=True, store_schema=True)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def json_bytes(obj: Any, sort_keys: bool = True) -> bytes:
    """The JSON text summit writes (indent 1, newline-terminated), UTF-8."""
    return (json.dumps(obj, indent=1, sort_keys=sort_keys) + "\n").encode()


def write_json(obj: Any, path: str | os.PathLike, sort_keys: bool = True) -> None:
    atomic_write_bytes(path, json_bytes(obj, sort_keys))


def file_inside(path: Path, root: Path) -> Path | None:
    """``path`` resolved (symlinks followed) if it is a file inside ``root`` (resolved), else None."""
    p = path.resolve()
    return p if p.is_relative_to(root) and p.is_file() else None
