"""What a command may change: the files it wrote itself, never an input.

- :func:`check_apart`: a folder a command writes into must not be an input folder or lie
  inside one, and a folder it empties must not contain one either. Folders are compared by
  device and inode along their whole chain of parents, so the same share mounted twice (a
  bind mount) or reached through a symlink is still recognised.
- :class:`Manifest`: a command's own outputs, listed in ``.<command>-outputs.json`` in its
  output folder (relative path -> size in bytes; one list per command, so ``reconstruct``
  never takes ``segment``'s masks for its own). A file is replaced or deleted only when
  the manifest names it with that size; before a run writes anything it names the paths it
  is about to write as *pending* (size ``null``: any size is the run's own), so a run killed
  half-way still owns what it left, and :meth:`Manifest.settle` turns them into sizes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from .errors import OutputError
from .io import temporary_name

MANIFEST = ".{command}-outputs.json"  # not ".segcore-*": those are temporary files
MANIFEST_VERSION = 1


def _ident(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _chain(path: str | os.PathLike) -> list[tuple[int, int]]:
    """(device, inode) of ``path`` (when it exists) and of every existing parent."""
    p = Path(os.path.abspath(path)).resolve()
    ids = []
    for q in (p, *p.parents):
        ident = _ident(q)
        if ident is not None:
            ids.append(ident)
    return ids


def relation(folder: str | os.PathLike, other: str | os.PathLike) -> str | None:
    """How ``folder`` lies to ``other``: "is", "inside", "contains" or None (apart)."""
    a, b = _ident(Path(folder)), _ident(Path(other))
    if a is not None and a == b:
        return "is"
    if b is not None and b in _chain(folder):
        return "inside"
    if a is not None and a in _chain(other):
        return "contains"
    return None


def check_apart(
    folder: str | os.PathLike,
    inputs: Iterable[str | os.PathLike],
    what: str,
    emptied: bool = False,
    advice: str = "choose an output folder apart from the inputs",
) -> None:
    """Refuse (:class:`OutputError`) when ``folder`` is an input or inside one, or, when
    the command empties it (``emptied``), contains one. ``what`` names the folder's role."""
    for inp in inputs:
        rel = relation(folder, inp)
        if rel == "is" or rel == "inside" or (emptied and rel == "contains"):
            how = {"is": "is", "inside": "is inside", "contains": "contains"}[rel]
            raise OutputError(
                f"{folder}: {what} {how} the input {inp}; outputs are never written into "
                f"an input: {advice}"
            )


class Manifest:
    """The outputs ``command`` wrote in ``root`` (see the module docstring). Thread-safe."""

    def __init__(self, root: str | os.PathLike, command: str):
        self.root, self.command = Path(root), command
        self.path = self.root / MANIFEST.format(command=command)
        self.files: dict[str, int | None] = {}
        self._lock = threading.Lock()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            files = data.get("files", {}) if isinstance(data, dict) else {}
            self.files = {
                str(k): (v if isinstance(v, int) else None)
                for k, v in files.items()
                if isinstance(k, str)
            }
        except (OSError, ValueError):
            pass  # no manifest (or an unreadable one): nothing is proven to be ours

    def _rel(self, path: str | os.PathLike) -> str:
        """``path`` (absolute, or relative to the working folder as the root may be) as an
        entry relative to the root."""
        p = Path(path)
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:  # one absolute, the other not
            return p.absolute().relative_to(self.root.absolute()).as_posix()

    def owns(self, path: str | os.PathLike) -> bool:
        """Whether the command wrote ``path`` (a file, or a pending folder's file)."""
        rel = self._rel(path)
        parts = rel.split("/")
        with self._lock:
            folders = ("/".join(parts[:k]) + "/" for k in range(1, len(parts)))
            if any(f in self.files for f in folders):  # folders are only ever pending
                return True
            if rel not in self.files:
                return False
            size = self.files[rel]
        if size is None:
            return True
        try:
            return os.lstat(path).st_size == size
        except OSError:
            return False

    def lists(self, path: str | os.PathLike) -> bool:
        """Whether the manifest names the file ``path`` (whatever its size is now)."""
        with self._lock:
            return self._rel(path) in self.files

    def foreign(self, entries: Iterable[str]) -> list[Path]:
        """Files under ``entries`` (paths relative to the root; folders end in "/") that the
        command did not write, in name order."""
        found = []
        for entry in entries:
            p = self.root / entry
            if p.is_dir() and not p.is_symlink():
                files = sorted(q for q in p.rglob("*") if q.is_symlink() or not q.is_dir())
            elif os.path.lexists(p):
                files = [p]
            else:
                files = []
            found += [q for q in files if not self.owns(q)]
        return found

    def refuse_foreign(self, entries: Iterable[str]) -> None:
        """:class:`OutputError` naming the first file under ``entries`` that the command did
        not write: called before any change."""
        found = self.foreign(entries)
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise OutputError(
                f"{found[0]}{more}: `segcore {self.command}` did not write it and will not "
                "replace or delete it; move it away or choose another output folder"
            )

    def pending(self, entries: Iterable[str | os.PathLike]) -> None:
        """Name ``entries`` (strings relative to the root, folders ending in "/"; or paths
        under the root, ``Path`` objects or absolute) as about to be written, and save."""
        with self._lock:
            for e in entries:
                path = isinstance(e, Path) or Path(e).is_absolute()
                rel = self._rel(e) if path else str(e)
                self.files[rel] = None
        self.save()

    def settle(self, entries: Iterable[str] | None = None) -> None:
        """Pending entries (of ``entries``, default all) become the files found there now,
        with their sizes; save."""
        with self._lock:
            pending = [k for k, v in self.files.items() if v is None]
            pending = [k for k in pending if entries is None or k in entries]
            if not pending:
                return
            for rel in pending:
                del self.files[rel]
                p = self.root / rel
                if rel.endswith("/"):
                    if p.is_dir():
                        for q in p.rglob("*"):
                            if q.is_symlink() or not q.is_dir():
                                self.files[q.relative_to(self.root).as_posix()] = q.lstat().st_size
                elif os.path.lexists(p):
                    self.files[rel] = os.lstat(p).st_size
        self.save()

    def remove(self, path: str | os.PathLike) -> None:
        """Delete a file the command wrote (a no-op for any other file, or none)."""
        p = Path(path)
        if self.owns(p):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            with self._lock:
                self.files.pop(self._rel(p), None)

    def remove_tree(self, folder: str | os.PathLike) -> None:
        """Delete the files of ``folder`` the command wrote, then its empty folders."""
        d = Path(folder)
        if not d.is_dir() or d.is_symlink():
            self.remove(d)
            return
        for q in sorted(d.rglob("*"), key=lambda q: len(q.parts), reverse=True):
            if q.is_dir() and not q.is_symlink():
                with contextlib.suppress(OSError):  # not empty: holds a file not written here
                    q.rmdir()
            else:
                self.remove(q)
        with contextlib.suppress(OSError):
            d.rmdir()

    def save(self) -> None:
        from .io import atomic_write_bytes

        with self._lock:
            data = {"version": MANIFEST_VERSION, "files": dict(sorted(self.files.items()))}
        atomic_write_bytes(self.path, (json.dumps(data, indent=0) + "\n").encode("utf-8"))


def check_output_folder(input_path: Path, out: Path, folders: list[str]) -> None:
    """Refuse an output folder that is the input folder or inside it, or whose output
    sub-folders ``folders`` would hold the input; create it and check it is writable."""
    in_dir = input_path if input_path.is_dir() else input_path.parent
    if relation(out, in_dir) in ("is", "inside"):  # device + inode: bind mounts too
        raise OutputError(
            f"{out}: the output folder is the input folder or inside it; "
            "choose an output folder outside the frames' folder"
        )
    for f in folders:  # e.g. INPUT = OUT/rgba: its photos would be replaced by cut-outs
        check_apart(out / f, [in_dir], f"the output folder {f}/", advice="choose another OUT")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / temporary_name("-probe")  # a dead run's is removed like any temporary
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise unwritable(out, exc) from exc


def unwritable(out: Path, exc: OSError) -> OutputError:
    return OutputError(
        f"{out}: cannot write to the output folder ({exc.strerror}); choose a writable folder"
    )


def name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` takes."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # AttributeError: Windows has no pathconf
        return 255


# write errors every later frame would meet too: full, read-only, no permission (an
# immutable or re-permissioned folder), so the run stops at the first, saying what to do
STOP_ADVICE = {
    errno.ENOSPC: "free space on that disk",
    errno.EDQUOT: "free space or raise the disk quota",
    errno.EROFS: "the file system turned read-only: remount it writable (or choose another OUT)",
    errno.EPERM: "the folder refuses new files (immutable?): make it writable (chattr -i)",
    errno.EACCES: "no permission to write there: give it back (chmod u+w)",
}
STOPPING_ERRNOS = tuple(STOP_ADVICE)
