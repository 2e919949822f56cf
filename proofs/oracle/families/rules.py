"""The sequences the oracle sends: hypothesis rule machines over a session.

Every family's machine starts from :class:`SessionRules`: each example is one
:class:`~proofs.oracle.session.Session` (a fresh process, the family's set-up
calls), then the rules' calls; ``teardown`` judges what is still owed. The
families' rules are the model machines' own (proofs/machines/), so the
oracle's coverage grows with theirs.
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from collections.abc import Callable
from typing import Any, ClassVar

from hypothesis.errors import StopTest
from hypothesis.stateful import RULE_MARKER, initialize

from proofs.oracle.session import Session


class SessionRules:
    """The session's life, one per example: a fresh implementation process
    and the family's set-up calls; at the end, what is still owed is read and
    judged. Every family's machine starts from this."""

    new_session: ClassVar[Callable[[], Session]]
    examples: ClassVar[int] = 0
    s: Session

    @initialize()
    def create(self) -> None:
        type(self).examples += 1
        self.s = type(self).new_session()
        self.s.setup()
        self.started()

    def started(self) -> None:
        """After the set-up calls: the machine's own records."""

    def wind_down(self) -> None:
        """The calls every sequence ends with (destroy what is left), judged like
        the others; run only while nothing has diverged."""

    def teardown(self) -> None:
        session = getattr(self, "s", None)
        if session is not None:
            # after a divergence hypothesis is already handling that failure; when
            # it abandons the sequence (StopTest: out of choices), nothing may be
            # raised in place of that
            abandoned = isinstance(sys.exc_info()[1], StopTest)
            try:
                if not session.failed and not abandoned:
                    self.wind_down()
                if not session.failed and not abandoned:
                    session.finish()
            finally:
                session.close()


def machine_class(base: type[SessionRules], session_factory: Callable[[], Session]
                  ) -> type[SessionRules]:
    """A fresh machine class (its own counters) whose examples use session_factory."""
    return type(base.__name__, (base,), {"new_session": staticmethod(session_factory),
                                         "examples": 0})


def calls_named(function: Callable[..., Any]) -> frozenset[str]:
    """The string constants of a rule's body (the operations it calls by name,
    ``h.call("XmsAllocate", ...)``); empty when its source cannot be read."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return frozenset()
    return frozenset(node.value for node in ast.walk(tree)
                     if isinstance(node, ast.Constant) and isinstance(node.value, str))


def without_unsupported(machine: type, unsupported: frozenset[tuple[str, str]]) -> type:
    """machine without the rules that call an operation the implementation
    declared unsupported (PROTOCOL.md, "Partial managers"): hypothesis never
    generates them. A rule that reaches one another way (an operation drawn from
    a list) has its sequence dropped before the call is sent
    (:meth:`Session.unsupported_call`)."""
    ops = {op for _, op in unsupported}
    if not ops:
        return machine
    hidden: dict[str, Any] = {}
    for name, member in inspect.getmembers(machine):
        if getattr(member, RULE_MARKER, None) is not None and calls_named(member) & ops:
            hidden[name] = None  # not a rule any more
    if not hidden:
        return machine
    return type(machine.__name__, (machine,), {**hidden, "examples": 0})


def one_machine(base: type[SessionRules]
                ) -> Callable[[Callable[[], Session], tuple[str, ...]], type[SessionRules]]:
    """A family's ``machine``: base whatever the declared managers."""
    def machine(session_factory: Callable[[], Session], managers: tuple[str, ...]
                ) -> type[SessionRules]:
        return machine_class(base, session_factory)
    return machine
