"""The implementation under test, as an untrusted child process.

Everything the child does wrong is an :class:`ImplementationError` (a
divergence with a kind: crash, hang, malformed, protocol), never an exception
of the oracle: the child may exit, hang, write garbage or close its pipes.
Replies are read with ``os.read`` and a per-request deadline (``select``);
requests may be written ahead of their replies (strict mode pipelines).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Sequence

from proofs.oracle.protocol import Hello, Message, ProtocolError, check_hello, parse

#: Seconds to wait for a reply (each request).
REQUEST_TIMEOUT = 5.0
#: Seconds an implementation has to start and say hello.
HELLO_TIMEOUT = 30.0
#: One encoder for every request (json.dumps with options builds one per call).
_encode = json.JSONEncoder(separators=(",", ":")).encode
#: The longest line the oracle accepts from an implementation.
LINE_LIMIT = 1 << 22


def _signal(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


class ImplementationError(Exception):
    """The implementation crashed, hung or broke the protocol."""

    def __init__(self, kind: str, detail: str, stderr: str = "") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail, self.stderr = kind, detail, stderr


class Child:
    """One run of the implementation: started, greeted, fed, stopped."""

    def __init__(self, command: str, timeout: float = REQUEST_TIMEOUT) -> None:
        self.command, self.timeout = command, timeout
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            command, shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, bufsize=0, start_new_session=True)
        assert self.process.stdin is not None and self.process.stdout is not None
        self._in, self._out = self.process.stdin.fileno(), self.process.stdout.fileno()
        self._buffer = bytearray()
        self._lines: deque[bytes] = deque()
        self.hello = self._greet()

    def _greet(self) -> Hello:
        try:
            return check_hello(parse(self._line(max(HELLO_TIMEOUT, self.timeout))))
        except ProtocolError as exc:
            raise self.fault("protocol", f"hello: {exc}") from None

    # -- faults --------------------------------------------------------------------

    def stderr_tail(self, lines: int = 12) -> str:
        self._stderr.seek(0)
        text = self._stderr.read()[-8192:].decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def fault(self, kind: str, detail: str) -> ImplementationError:
        status = self.process.poll()
        if status is not None and kind in ("crash", "hang"):
            detail += (f" (killed by signal {_signal(-status)})" if status < 0
                       else f" (exit status {status}: signal {_signal(status - 128)} "
                            "as a shell reports it)" if 128 < status < 128 + 65
                       else f" (exit status {status})")
        return ImplementationError(kind, detail, self.stderr_tail())

    # -- lines ---------------------------------------------------------------------

    def send(self, messages: Sequence[Message]) -> None:
        data = "".join(_encode(m) + "\n" for m in messages).encode()
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._in, view)
                view = view[written:]
        except (BrokenPipeError, ConnectionResetError):
            self.process.wait(timeout=self.timeout)
            raise self.fault("crash", "the implementation closed its input") from None

    def _line(self, timeout: float | None = None) -> bytes:
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            if self._lines:
                return self._lines.popleft()
            if len(self._buffer) > LINE_LIMIT:
                raise self.fault("protocol", f"a line longer than {LINE_LIMIT} bytes")
            left = deadline - time.monotonic()
            ready = select.select([self._out], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                raise self.fault("hang", f"no reply within {wait:g} s")
            chunk = os.read(self._out, 1 << 16)
            if not chunk:
                try:
                    self.process.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    pass
                raise self.fault("crash", "the implementation closed its output")
            self._buffer += chunk
            if b"\n" in chunk:  # every complete line at once: one split per read
                *lines, rest = self._buffer.split(b"\n")
                self._lines.extend(map(bytes, lines))
                self._buffer = bytearray(rest)

    def receive(self) -> Message:
        try:
            return parse(self._line())
        except ProtocolError as exc:
            raise self.fault("protocol", str(exc)) from None

    def close(self) -> None:
        """Close stdin, give the child a moment, then kill its process group."""
        try:
            self.process.stdin.close()  # type: ignore[union-attr]
            self.process.wait(timeout=0.5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()
        self.process.stdout.close()  # type: ignore[union-attr]
        self._stderr.close()
