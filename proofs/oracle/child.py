"""The implementation under test, as an untrusted child process.

Everything the child does wrong is an :class:`ImplementationError` (a
divergence with a kind: crash, hang, malformed, protocol), never an exception
of the oracle: the child may exit, hang, write garbage or endless lines, fill
its stderr, close its pipes, ignore signals or leave processes behind. One
``select`` loop serves its three pipes with a deadline for each request
(requests may be written ahead of their replies: strict mode pipelines);
stdout lines are bounded (:data:`LINE_LIMIT`) before they are parsed, stderr
keeps only its last :data:`STDERR_KEPT` bytes, and the lines that came since the
last look (:meth:`Child.step_stderr`, at most :data:`STEP_LINES` of them), which
the sessions hand to the step that produced them: stderr is polled once more
after a reply read fresh from the pipe, so a panic message written before the
reply is the reply's.
:meth:`Child.close` ends the child and everything it started
(:mod:`proofs.oracle.processes`), whatever state it is in, and a child the oracle
did not get to close (an exception, the oracle's exit or SIGTERM) is ended by
:func:`end_all`.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import time
from collections import deque
from collections.abc import Sequence

from proofs.oracle import processes
from proofs.oracle.protocol import (
    Hello,
    Message,
    ProtocolError,
    check_hello,
    check_reply,
    parse,
    printable,
    reset_request,
)

#: Seconds to wait for a reply (each request).
REQUEST_TIMEOUT = 5.0
#: Seconds an implementation has to start and say hello.
HELLO_TIMEOUT = 30.0
#: One encoder for every request (json.dumps with options builds one per call).
_encode = json.JSONEncoder(separators=(",", ":")).encode
#: The longest line the oracle accepts from an implementation (bytes).
LINE_LIMIT = 1 << 22
#: Lines read ahead of their requests, at most (a strict window owes a few hundred).
LINES_WAITING = 4096
#: The bytes of the child's stderr kept for the report (the last ones).
STDERR_KEPT = 8192
#: Seconds the child has to exit once its stdin is closed, or once its stdout was.
EXIT_GRACE = 0.5
#: Seconds to wait for the rest of a dead child's stderr.
STDERR_GRACE = 0.2
#: stderr lines kept for one step of the report (the first ones), and their length.
STEP_LINES = 8
STEP_LINE_CHARS = 240

#: Children started and not yet closed: ended when the oracle exits.
_LIVE: set[Child] = set()


def _signal(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _status_text(status: int) -> str:
    if status < 0:
        return f"killed by signal {_signal(-status)}"
    if 128 < status < 128 + 65:
        return f"exit status {status}: signal {_signal(status - 128)} as a shell reports it"
    return f"exit status {status}"


class ImplementationError(Exception):
    """The implementation crashed, hung or broke the protocol."""

    def __init__(self, kind: str, detail: str, stderr: str = "") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail, self.stderr = kind, detail, stderr


class Child:
    """One run of the implementation: started, greeted, fed, stopped."""

    def __init__(self, command: str, timeout: float = REQUEST_TIMEOUT,
                 greet: bool = True) -> None:
        """Start command; read its hello now, or (``greet`` False: a spare,
        :mod:`proofs.oracle.spare`) when :meth:`greet` is called."""
        self.command, self.timeout = command, timeout
        self.marker = processes.new_marker()
        self.since = processes.now()
        self.process = subprocess.Popen(
            command, shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, bufsize=0, start_new_session=True,
            env=processes.environment(self.marker))
        _LIVE.add(self)
        assert self.process.stdin and self.process.stdout and self.process.stderr
        self._in, self._out = self.process.stdin.fileno(), self.process.stdout.fileno()
        self._err: int | None = self.process.stderr.fileno()
        os.set_blocking(self._in, False)
        self._buffer = bytearray()
        self._lines: deque[bytes] = deque()
        self._tail = bytearray()
        #: stderr since the last step_stderr: complete lines, the unfinished rest, and
        #: how many lines were dropped past STEP_LINES.
        self._step_lines: list[str] = []
        self._step_rest = bytearray()
        self._step_dropped = 0
        self._eof = self._closed = self._faulted = False
        #: When stdin was closed (:meth:`retire`).
        self._retired: float | None = None
        self.hello: Hello
        #: What it wrote to stderr before its hello (not a step's).
        self.hello_stderr: list[str] = []
        if greet:
            self.greet()

    def greet(self) -> None:
        """Read the hello (its timeout counts from this call); a fault closes the
        child."""
        try:
            self.hello = self._greet()
            self.hello_stderr = self.step_stderr()
        except BaseException:
            self.close()
            raise

    def _greet(self) -> Hello:
        try:
            return check_hello(parse(self._line(max(HELLO_TIMEOUT, self.timeout))))
        except ProtocolError as exc:
            raise self.fault("protocol", f"hello: {exc}") from None
        except ImplementationError as exc:
            exc.detail = f"hello: {exc.detail}"
            raise

    # -- the child's state -----------------------------------------------------------

    def status(self) -> int | None:
        """The exit status as Popen reports it (negative: the signal), None while
        it runs. The child is not reaped (waitid WNOWAIT): its pid, its group's
        and session's id, stays its own until :meth:`close`."""
        if self.process.returncode is not None or not hasattr(os, "waitid"):
            return self.process.poll()  # without waitid: reaped (macOS)
        try:
            info = os.waitid(os.P_PID, self.process.pid,
                             os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return None
        if info is None or info.si_pid == 0:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def stderr_tail(self, lines: int = 12) -> str:
        """The last lines the child wrote to stderr, control characters escaped."""
        text = printable(self._tail.decode("utf-8", "replace"), keep="\n\t")
        return "\n".join(text.splitlines()[-lines:])

    def fault(self, kind: str, detail: str) -> ImplementationError:
        self._faulted = True
        status = self.status()
        if status is not None:
            self._drain_stderr(STDERR_GRACE)
            if kind in ("crash", "hang"):
                detail += f" ({_status_text(status)})"
        elif kind == "crash":
            detail += " (still running)"
        return ImplementationError(kind, detail, self.stderr_tail())

    # -- pipes ---------------------------------------------------------------------

    def _readable(self) -> list[int]:
        """The pipes to read: stdout until its end, or until a line too long or
        too many lines are waiting (a flood is then the child's to hold)."""
        full = len(self._buffer) > LINE_LIMIT or len(self._lines) > LINES_WAITING
        fds = [] if self._eof or full else [self._out]
        return fds if self._err is None else [*fds, self._err]

    def _take(self, fd: int) -> None:
        """Read what fd has (select said it would not block)."""
        chunk = os.read(fd, 1 << 16)
        if fd == self._err:
            if not chunk:
                self._err = None
            self._tail += chunk
            del self._tail[:-STDERR_KEPT]
            self._step_stderr(chunk)
            return
        if not chunk:
            self._eof = True
            return
        self._buffer += chunk
        if b"\n" in chunk:  # every complete line at once: one split per read
            *lines, rest = self._buffer.split(b"\n")
            self._lines.extend(map(bytes, lines))
            self._buffer = bytearray(rest)

    def _pump(self, seconds: float, write: bool = False) -> bool:
        """Wait up to seconds for the pipes; read what is readable. Whether stdin
        can be written (when asked)."""
        readable, writable, _ = select.select(self._readable(), [self._in] if write else [],
                                              [], max(seconds, 0))
        for fd in readable:
            self._take(fd)
        return bool(writable)

    def _step_stderr(self, chunk: bytes) -> None:
        """Split what stderr gave into the step's lines, bounded (a flood keeps its
        first lines and counts the rest)."""
        self._step_rest += chunk
        if b"\n" not in chunk:
            del self._step_rest[STEP_LINE_CHARS * 4:]
            return
        *lines, rest = self._step_rest.split(b"\n")
        self._step_rest = bytearray(rest[:STEP_LINE_CHARS * 4])
        for line in lines:
            if len(self._step_lines) < STEP_LINES:
                text = printable(line.decode("utf-8", "replace"), keep="\t")
                self._step_lines.append(text[:STEP_LINE_CHARS])
            else:
                self._step_dropped += 1

    def step_stderr(self) -> list[str]:
        """The stderr lines written since the last call (a last line without its
        end included), control characters escaped; then forgotten."""
        if self._step_rest:
            self._step_stderr(b"\n")
        lines, self._step_lines = self._step_lines, []
        if self._step_dropped:
            lines.append(f"(and {self._step_dropped} more lines)")
            self._step_dropped = 0
        return lines

    def _poll_stderr(self) -> None:
        """Read what stderr already holds, without waiting."""
        if self._err is not None and select.select([self._err], [], [], 0)[0]:
            self._take(self._err)

    def _drain_stderr(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._err is not None and (left := deadline - time.monotonic()) > 0:
            if self._err not in select.select([self._err], [], [], left)[0]:
                return
            self._take(self._err)

    # -- lines ---------------------------------------------------------------------

    def send(self, messages: Sequence[Message]) -> None:
        """Write requests, reading the child's pipes meanwhile (a child that
        writes before it reads must not block the oracle); a child that reads
        none of it within the timeout hangs."""
        view = memoryview("".join(_encode(m) + "\n" for m in messages).encode())
        deadline = time.monotonic() + self.timeout
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self.fault("hang", f"the implementation did not read its input within "
                                         f"{self.timeout:g} s")
            if not self._pump(left, write=True):
                continue
            try:
                view = view[os.write(self._in, view):]
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                wait_exit(self, EXIT_GRACE)
                raise self.fault("crash", "the implementation closed its input") from None

    def _line(self, timeout: float | None = None) -> bytes:
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            if self._lines:
                line = self._lines.popleft()
                if len(line) > LINE_LIMIT:
                    raise self.fault("protocol", f"a line of {len(line)} bytes (the limit is "
                                                 f"{LINE_LIMIT})")
                return line
            if len(self._buffer) > LINE_LIMIT:
                raise self.fault("protocol", f"a line longer than {LINE_LIMIT} bytes")
            if self._eof:
                wait_exit(self, EXIT_GRACE)
                raise self.fault("crash", "the implementation closed its output")
            left = deadline - time.monotonic()
            if left <= 0:
                unfinished = (f" ({len(self._buffer)} bytes of a line without its end)"
                              if self._buffer else "")
                raise self.fault("hang", f"no reply within {wait:g} s{unfinished}")
            self._pump(left)

    def receive(self, timeout: float | None = None) -> Message:
        """The next reply; a hang fault after timeout seconds (None: the request
        timeout)."""
        try:
            line = self._line(timeout)
            if not self._lines:  # a fresh read: what stderr holds came before this reply
                self._poll_stderr()
            return parse(line)
        except ProtocolError as exc:
            raise self.fault("protocol", str(exc)) from None

    def reset(self) -> bool:
        """Send a reset request (PROTOCOL.md, "Reset") and read its reply: True
        when the child answered it as it must, and is then in the state of its
        hello; False on anything else (the caller ends it). What it wrote to
        stderr meanwhile belongs to no step and is dropped."""
        request = reset_request(1)
        try:
            self.send([request])
            check_reply(request, self.receive())
        except (ImplementationError, ProtocolError):
            return False
        self.step_stderr()
        return True

    def close(self) -> None:
        """Close stdin and give the child a moment to exit (none after a fault);
        then end its process group and everything it started
        (:func:`processes.end_processes`), whatever state it is in, and only then
        reap it."""
        self.retire()
        self.finish()

    def retire(self) -> None:
        """Close stdin (the child should then exit), once; the rest of
        :meth:`close` is :meth:`finish`'s."""
        if self._retired is not None:
            return
        self._retired = time.monotonic()
        try:
            self.process.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass

    def finish(self, wait: bool = True) -> bool:
        """End the retired child and everything it started, once it has exited
        or its moment to exit (EXIT_GRACE from :meth:`retire`; none after a
        fault) is over, waiting for that; ``wait`` False: only if that is so
        already. Whether it is ended."""
        if self._closed:
            return True
        self.retire()
        if not self._faulted:
            assert self._retired is not None
            left = EXIT_GRACE - (time.monotonic() - self._retired)
            if wait:
                wait_exit(self, left)
            elif left > 0 and self.status() is None:
                return False
        self._closed = True
        processes.end_processes(self.process.pid, self.marker, self.since)
        self._end()
        return True

    def _end(self) -> None:
        try:
            os.kill(self.process.pid, signal.SIGKILL)  # not reaped yet: still ours
        except ProcessLookupError:
            pass
        self.process.wait()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        _LIVE.discard(self)


def end_all(reap: bool = True) -> None:
    """End every child not closed yet, and what it started (at the oracle's exit),
    then any process left with this oracle's marker (one started as the oracle
    was told to stop, before it was registered); reap the children unless told
    not to (in a signal handler, which may have interrupted a wait)."""
    for child in list(_LIVE):
        child._closed = True
        processes.end_processes(child.process.pid, child.marker, child.since)
        if reap:
            child._end()
    processes.end_marked(processes.own_prefix())


def _terminated(number: int, frame: object) -> None:
    """SIGTERM to the oracle: end the children, then die of the signal as before."""
    end_all(reap=False)
    signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)


def end_children_on_sigterm() -> None:
    """For a program that is the oracle (the CLI, the fuzzer): a SIGTERM ends
    the children too (atexit does not run on a signal)."""
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _terminated)


atexit.register(end_all)


def wait_exit(child: Child, seconds: float) -> int | None:
    """The child's exit status, waiting up to seconds for it (None: still running).
    On Linux a pidfd (pidfd_open(2), which does not reap) wakes the wait when
    the child exits; elsewhere, and where it cannot be opened, the status is
    polled (the model shim takes about 20 ms to exit once its stdin is
    closed, which a poll doubling its pause saw up to 10 ms late, at every
    sequence's close)."""
    deadline, pause = time.monotonic() + seconds, 0.001
    status = child.status()
    if status is not None or seconds <= 0:
        return status
    try:
        pidfd = os.pidfd_open(child.process.pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        try:
            select.select([pidfd], [], [], seconds)
        finally:
            os.close(pidfd)
    while (status := child.status()) is None and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    return status

# -- faults --------------------------------------------------------------------
