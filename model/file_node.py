"""File nodes: the seed's ``fs_node`` as MemoryMappedFiles sees it (issue 5, shm_common).

A node has a length, reads (short at the end of the file), writes, and says
whether it may be written (``writable``: a read-only node refuses writable
views with ERROR_ACCESS_DENIED, as CreateFileMapping(PAGE_READWRITE) fails on
a handle opened for reading only). Decisions:

- Writes never extend a file: write(offset, data) stores only the bytes below
  length() and returns how many it stored (a mapping cannot grow its file:
  mmap(2), "the effect of changing the size of the underlying file of a
  mapping on the pages that correspond to added or removed regions of the file
  is unspecified"; CreateFileMapping sets the size before any view exists).
  A node that is not writable stores nothing (0).
- A node is one file, as the VFS keeps one fs_node per file (the tutorial's
  fs_node_t, Linux's inode): the page cache is per node, so every view of a
  file must be made from the same node object (two DiskFileNode objects of one
  path are two files to MemoryMappedFiles, and their views are not coherent).
- MemoryFileNode keeps its bytes in ``data``; DiskFileNode reads and writes a
  real file with os.pread / os.pwrite, opening it for each call (no
  descriptor outlives a call). An OSError (the file vanished, a read-only
  filesystem) reads as length 0 / no bytes / 0 bytes written: a node never
  raises.
- A caller's node is untrusted input (any object with these four members):
  MemoryMappedFiles reaches it only through ``node_length``, ``node_read``,
  ``node_write`` and ``node_writable``, which turn an exception it raises, or
  an answer of the wrong type, into :class:`NodeError`; the manager then fails
  the call with its documented code and changes nothing of its own.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

from spec.abi import ADDRESS_LIMIT


@runtime_checkable
class FileNode(Protocol):
    """The seed's fs_node: length, read, write, and whether writes are allowed."""

    writable: bool

    def length(self) -> int:
        """The file's size in bytes."""
        ...

    def read(self, offset: int, size: int) -> bytes:
        """Up to size bytes at offset (short at the end of the file)."""
        ...

    def write(self, offset: int, data: bytes) -> int:
        """Store the bytes of data below length() at offset; how many were stored."""
        ...


class MemoryFileNode:
    """A file held in memory (``data``)."""

    def __init__(self, data: bytes = b"", writable: bool = True) -> None:
        self.data = bytearray(data)
        self.writable = writable

    def length(self) -> int:
        return len(self.data)

    def read(self, offset: int, size: int) -> bytes:
        return bytes(self.data[offset:offset + size]) if offset >= 0 and size > 0 else b""

    def write(self, offset: int, data: bytes) -> int:
        if not self.writable or offset < 0:
            return 0
        stored = max(0, min(len(data), len(self.data) - offset))
        self.data[offset:offset + stored] = data[:stored]
        return stored


class DiskFileNode:
    """A real file on disk at ``path``."""

    def __init__(self, path: str | os.PathLike[str], writable: bool = True) -> None:
        self.path = os.fspath(path)
        self.writable = writable

    def length(self) -> int:
        try:
            return os.stat(self.path).st_size
        except OSError:
            return 0

    def read(self, offset: int, size: int) -> bytes:
        if offset < 0 or size <= 0:
            return b""
        try:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                return os.pread(fd, size, offset)
            finally:
                os.close(fd)
        except OSError:
            return b""

    def write(self, offset: int, data: bytes) -> int:
        if not self.writable or offset < 0:
            return 0
        try:
            fd = os.open(self.path, os.O_WRONLY)
            try:
                stored = max(0, min(len(data), os.fstat(fd).st_size - offset))
                return os.pwrite(fd, data[:stored], offset) if stored else 0
            finally:
                os.close(fd)
        except OSError:
            return 0


class NodeError(Exception):
    """A caller's node raised, or answered with a value of the wrong type."""


def node_writable(node: FileNode) -> bool:
    """The node's ``writable``; NodeError unless it is a bool."""
    try:
        writable = node.writable
    except Exception as exc:  # noqa: BLE001 - the node is untrusted
        raise NodeError(f"writable: {exc!r}") from None
    if type(writable) is not bool:
        raise NodeError(f"writable is {writable!r}, not a bool")
    return writable


def node_length(node: FileNode) -> int:
    """The node's length(); NodeError unless it is an int in [0, 2**32)."""
    try:
        length = node.length()
    except Exception as exc:  # noqa: BLE001 - the node is untrusted
        raise NodeError(f"length(): {exc!r}") from None
    if type(length) is not int or not 0 <= length < ADDRESS_LIMIT:
        raise NodeError(f"length() returned {length!r}")
    return length


def node_read(node: FileNode, offset: int, size: int) -> bytes:
    """The node's read(offset, size); NodeError unless it gives at most size bytes."""
    try:
        data = node.read(offset, size)
    except Exception as exc:  # noqa: BLE001 - the node is untrusted
        raise NodeError(f"read({offset}, {size}): {exc!r}") from None
    if not isinstance(data, bytes | bytearray) or len(data) > size:
        raise NodeError(f"read({offset}, {size}) returned {type(data).__name__} "
                        f"of {len(data) if isinstance(data, bytes | bytearray) else '?'}")
    return bytes(data)


def node_write(node: FileNode, offset: int, data: bytes) -> int:
    """The node's write(offset, data); NodeError unless it answers an int."""
    try:
        stored = node.write(offset, data)
    except Exception as exc:  # noqa: BLE001 - the node is untrusted
        raise NodeError(f"write({offset}, {len(data)} bytes): {exc!r}") from None
    if type(stored) is not int:
        raise NodeError(f"write({offset}, ...) returned {stored!r}")
    return stored


__all__ = ["DiskFileNode", "FileNode", "MemoryFileNode", "NodeError", "node_length",
           "node_read", "node_writable", "node_write"]
