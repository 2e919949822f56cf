"""The sequences the oracle sends: hypothesis rule machines over a session.

Every family's machine starts from :class:`SessionRules`: each example is one
:class:`~proofs.oracle.session.Session` (a fresh process, the family's set-up
calls), then the rules' calls; ``teardown`` judges what is still owed. The
families' rules are the model machines' own (proofs/machines/), so the
oracle's coverage grows with theirs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import ClassVar

from hypothesis.errors import StopTest
from hypothesis.stateful import initialize

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


def one_machine(base: type[SessionRules]
                ) -> Callable[[Callable[[], Session], tuple[str, ...]], type[SessionRules]]:
    """A family's ``machine``: base whatever the declared managers."""
    def machine(session_factory: Callable[[], Session], managers: tuple[str, ...]
                ) -> type[SessionRules]:
        return machine_class(base, session_factory)
    return machine
