"""The dos family: conventional memory, UMBs, XMS and EMS (PROTOCOL.md, "DOS memory").

Every sequence starts with ``InitializePhysicalMemory(0x100000, 0x400000)`` (the
model's own when the implementation declares no PageManager: an emulator has
none) and the DOS machine's world (proofs/machines/dos_memory.py): the chain from 0800h,
UMBs [C800h, E000h), XMS to 2 MB, 8 EMS pages. The rules are the DOS
machine's own (:class:`~proofs.machines.dos_memory.ConventionalRules`, ``XmsRules``,
``EmsRules``, all three in one machine), so the oracle's coverage grows with
the model's machine; they read the state through :class:`DosFront`: the model
world's manager in strict mode, the judge's last observations in spec mode.

Spec mode (:class:`DosJudge`) builds the very view tuple ``dos_view`` makes
from McbChain, XmsHandles and EmsMappings and judges each call with the DOS
harness's own checks (:class:`~proofs.machines.dos_memory.DosChecks`): DOS-1..5, the
spec's step with the implementation's choices, nothing changed by a failure
(the observations before and after), contents through ReadPhysical (an
unmapped EMS page's storage is not observed: checked once mapped again).
A one-byte WriteMemory that changes an MCB's type byte damages the chain:
the chain calls that follow must fail with 7 and change nothing
(``mcb-destroyed``) until a write puts the byte back.

An implementation that declares the manager in register form (PROTOCOL.md,
"Register form") gets each call as the registers a DOS program loads
(:mod:`.dos_registers`): strict mode sends them through the family's
``send`` (:func:`send_registers`) and compares every register with the
model's; spec mode's :meth:`ObservedDos.invoke` sends them, reads the
registers back into the result and error its checks judge, and checks the
register rules no state decides (``register_problems``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hypothesis.stateful import RuleBasedStateMachine

from model.dos_physical import read_physical
from model.xms import XmsBlock
from proofs.machines.checks import (
    CONTENTS,
    TRANSITION,
    UNCHANGED,
    CheckError,
    check_invariants,
    raise_problems,
)
from proofs.machines.dos_memory import (
    EMS_PAGES,
    FIRST,
    MEMORY_END,
    UMB_END,
    UMB_START,
    XMS_END,
    ConventionalRules,
    DosChecks,
    EmsRules,
    View,
    XmsRules,
    dos_view,
)
from proofs.machines.runner import CheckedMachine
from proofs.oracle.families.dos_boundaries import DosBoundaryRules
from proofs.oracle.families.dos_registers import (
    MOVE_SCRATCH,
    from_registers,
    move_write,
    register_problems,
    seed_call,
    to_registers,
)
from proofs.oracle.families.rules import SessionRules, one_machine
from proofs.oracle.managers import Call, Family, Message
from proofs.oracle.register_form import REGISTER_OPS
from proofs.oracle.session import Session, last_observed
from proofs.oracle.world import OPERATIONS, ModelWorld
from proofs.oracle.worlds.dos import BYTES_LIMIT, FIRST_MB, NAME, DosPart
from spec import dos_memory as dm
from spec.abi import PARAGRAPH
from spec.dos_memory import DosState, McbView

#: The set-up's world: the DOS machine's (PROTOCOL.md).
INITIALIZE = {"first_segment": FIRST, "umb_start": UMB_START, "umb_end": UMB_END,
              "xms_end": XMS_END, "ems_pages": EMS_PAGES}
OBSERVED = ("McbChain", "XmsHandles", "EmsMappings")


def dos_setup(declared: tuple[str, ...], config: Mapping[str, Any] | None = None
              ) -> list[Call]:
    """The set-up calls; the values from the configuration (None: today's)."""
    c = config or {}
    return [("PageManager", "InitializePhysicalMemory",
             {"mem_start": c.get("mem_start", 0x100000), "mem_end": c.get("mem_end", MEMORY_END)}),
            (NAME, "Initialize", {k: c.get(k, v) for k, v in INITIALIZE.items()})]


def _wire(value: Any) -> Any:
    """A rule's argument as JSON can carry it: the machine's hostile values the
    protocol cannot (None, strings, floats) become -1, also not a u16."""
    if type(value) is bool or (type(value) is int and -(1 << 31) <= value <= 1 << 33):
        return value
    return -1


# -- spec mode ------------------------------------------------------------------------

@dataclass
class DosCache:
    """What z3 decided, kept across the sessions of a run."""

    machine: type[CheckedMachine] = field(default_factory=lambda: type(
        "ObservedDos", (CheckedMachine,), {"cache": {}, "outcomes": Counter(), "examples": 0}))
    states: dict[View, DosState] = field(default_factory=dict)
    #: The observations of parts not served: the state the set-up leaves.
    unserved: dict[str, Message] = field(default_factory=dict)


class ObservedDos(DosChecks):
    """The DOS checks over an implementation's observations."""

    def __init__(self, session: Any, cache: DosCache) -> None:
        self._begin(cache.machine, cache.states)
        self.session = session
        self.cache_of_unserved = cache.unserved
        self._seen: tuple[Message, Message, Message, View] | None = None

    def view(self) -> View:
        s = self.session
        chain, xms, ems = (s.observe(name) if name not in s.hello.unserved
                           else self.unserved(name) for name in OBSERVED)
        if self._seen is not None and all(a is b for a, b in zip(self._seen, (chain, xms, ems),
                                                                 strict=False)):
            return self._seen[3]
        view = (tuple(McbView(*b) for b in chain["low"]),
                tuple(McbView(*b) for b in chain["high"]), chain["first_segment"],
                chain["umb_start"], chain["umb_end"], chain["linked"], chain["strategy"],
                tuple(sorted((h, XmsBlock(a, kb, n)) for h, a, kb, n in xms["handles"])),
                xms["pool_end"], tuple(sorted((h, tuple(ids)) for h, ids in ems["handles"])),
                tuple(None if slot is None else tuple(slot) for slot in ems["slots"]),
                ems["total_pages"])
        self._seen = (chain, xms, ems, view)
        return view

    def unserved(self, name: str) -> Message:
        """An observation of a part the implementation does not serve (PROTOCOL.md,
        "Partial managers"): none of that part's calls is ever sent, so its state
        is the one the set-up leaves, as the model reports it."""
        cache: dict[str, Message] = self.cache_of_unserved
        if name not in cache:
            world = ModelWorld()
            for manager, op, args in dos_setup(()):
                world.call(manager, op, args)
            cache[name] = world.observe(name, {})
        return cache[name]

    def snapshot(self) -> object:
        return self.view()

    def invoke(self, name: str, args: tuple[Any, ...]) -> tuple[Any, int]:
        """The call in the form the implementation declared: in register form the
        registers it stands for (dos_registers.py), read back into the seed's
        result and error; the reply's ``error`` must be the one they say."""
        message = dict(zip(OPERATIONS[NAME][name], args, strict=True))
        form = to_registers(name, message) if NAME in self.session.register_form else None
        if form is None:
            result, error = self.session.invoke(NAME, name, message)
            return result, int(error)
        if name == "XmsMove":
            stored = self.session.invoke(NAME, "WriteMemory", move_write(message))
            if stored != (True, 0):
                raise CheckError(f"WriteMemory of XmsMove's structure at {MOVE_SCRATCH} "
                                 f"returned {stored}", [TRANSITION])
        regs, error = self.session.invoke(NAME, *form)
        result, said = from_registers(name, regs)
        where = f"{form[0]} AX={form[1]['eax']:04X}h ({name})"
        if error != said:
            raise CheckError(f"{where}: the registers say error {said:#x}, the reply's error "
                             f"is {error:#x}", ["register"])
        problems = register_problems(name, form[1], regs)
        if problems:
            raise CheckError(f"{where}: " + "; ".join(problems), ["register"])
        return result, said

    def read(self, address: int, length: int) -> bytes | None:
        return self.session.read("ReadPhysical", "address", address, length)  # type: ignore[no-any-return]


class DosJudge:
    """Spec mode for the dos family."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.cache: DosCache = session.judges.caches.setdefault("dos", DosCache())
        self.harness: ObservedDos | None = None
        #: (address, the type byte it held) while a write has damaged an MCB.
        self.damaged: tuple[int, int] | None = None

    def execute(self, manager: str, op: str, args: Message) -> Any:
        if manager != NAME or op == "Initialize":
            result, error = self.session.invoke(manager, op, args)
            if result is not True or error != 0:
                raise CheckError(f"the set-up call {op}{tuple(args.values())} failed: "
                                 f"{result}, error {error}", ["setup"])
            if op == "Initialize":
                self.harness = harness = ObservedDos(self.session, self.cache)
                view = harness.view()
                raise_problems("the state after Initialize", check_invariants(
                    harness.machine, dm.INVARIANTS, view, lambda: harness.state(view)))
            return result
        if self.harness is None:
            raise CheckError(f"{op} before Initialize", ["setup"])
        if op == "WriteMemory":
            return self._write(self.harness, args["address"], args["data"])
        if op in REGISTER_OPS:  # a register-form trace's step
            op, args = self._seed_call(op, args)
        values = tuple(args[p] for p in OPERATIONS[NAME][op])
        if self.damaged is not None:
            return self.harness.damaged_call(
                f"{op}{values!r} with the MCB at {self.damaged[0]:#x} damaged", op, values)
        return self.harness.call(op, *values)

    def _seed_call(self, op: str, regs: Message) -> tuple[str, Message]:
        """The seed-level call a register step stands for (XMS 0Bh: its structure
        read at DS:SI); a register call the family never makes is refused."""
        structure = None
        if op == "XmsCall" and type(regs.get("ds")) is int and type(regs.get("esi")) is int:
            structure = self.session.read("ReadPhysical", "address",
                                          regs["ds"] * PARAGRAPH + (regs["esi"] & 0xFFFF), 16)
        seed = seed_call(op, regs, structure)
        if seed is None:
            raise CheckError(f"{op} with {regs} is not a call the dos family makes", ["setup"])
        return seed

    def _write(self, harness: ObservedDos, address: int, data: str) -> Any:
        """A program's store: it must succeed in the first MB and read back; a
        changed MCB type byte damages the chain, the original one repairs it."""
        payload = bytes.fromhex(data)
        before = harness.view()
        valid = len(payload) <= BYTES_LIMIT and 0 <= address <= FIRST_MB - len(payload)
        mcb = {b.segment * PARAGRAPH: b.type for b in before[0] + before[1]}
        result, error = harness.session.invoke(NAME, "WriteMemory",
                                               {"address": address, "data": data})
        where = f"WriteMemory({address:#x}, {len(payload)} bytes) returned {result} ({error})"
        if (result is True and error == 0) != valid:
            raise CheckError(f"{where}: a store {'in' if valid else 'outside'} the first MB",
                             [TRANSITION])
        if not valid:
            if harness.view() != before:
                raise CheckError(f"{where}, and changed the state", [UNCHANGED])
            return result
        if harness.read(address, len(payload)) != payload:
            raise CheckError(f"{where}: the bytes do not read back", [CONTENTS])
        if len(payload) == 1 and self.damaged is None and mcb.get(address, payload[0]) \
                != payload[0]:
            self.damaged = (address, mcb[address])
        elif self.damaged is not None and (address, *payload) == self.damaged:
            self.damaged = None
        return result

    def finish(self) -> None:
        """Every call was judged as it came."""


# -- the rules' front ---------------------------------------------------------------------

class DosFront:
    """What the DOS machine's rules see (``self.h``): every call goes through
    the session (judged, traced); the state is the model world's in strict
    mode, the judge's last observation in spec mode."""

    def __init__(self, session: Session) -> None:
        self.session = session
        judge = getattr(session, "judge", None)
        self.harness: ObservedDos | None = judge.harness if isinstance(judge, DosJudge) else None
        world = getattr(session, "world", None)
        self.part = None if world is None else next(
            p for p in world.parts if isinstance(p, DosPart))
        self._conv: dict[int, bytes] = {}
        self._ems: dict[tuple[int, int], tuple[int, bytes]] = {}

    def view(self) -> View:
        if self.harness is not None:
            return self.harness.view()
        assert self.part is not None and self.part.dos is not None
        return dos_view(self.part.dos)

    @property
    def conv(self) -> dict[int, bytes]:
        return self.harness.conv if self.harness is not None else self._conv

    @property
    def ems(self) -> dict[tuple[int, int], tuple[int, bytes]]:
        return self.harness.ems if self.harness is not None else self._ems

    def call(self, name: str, *args: Any) -> Any:
        params = OPERATIONS[NAME][name]
        return self.session.execute(NAME, name, dict(zip(params, map(_wire, args),
                                                         strict=True)))

    def poke(self, address: int, data: bytes) -> None:
        self.session.execute(NAME, "WriteMemory", {"address": address, "data": data.hex()})

    def corrupt(self, segment: int, garbage: int, name: str, *args: Any) -> None:
        """Damage the MCB's type byte, make the call, put the byte back."""
        address = segment * PARAGRAPH
        if self.harness is not None:
            original = self.harness.read(address, 1) or bytes(1)
        else:
            assert self.part is not None
            original = read_physical(self.part.pm, address, 1)
        self.poke(address, bytes((garbage,)))
        self.call(name, *args)
        self.poke(address, original)


class OracleDosMachine(SessionRules, ConventionalRules, XmsRules, EmsRules, DosBoundaryRules,
                       RuleBasedStateMachine):
    """An implementation of the DOS memory manager: the DOS machine's rules, and
    composites aimed at XMS's and EMS's boundaries (:mod:`.dos_boundaries`)."""

    h: Any

    def started(self) -> None:
        self.h = DosFront(self.s)
        self.prepare()



def send_registers(execute: Callable[[str, str, Message], Any], manager: str, op: str,
                   args: Message) -> Any:
    """Strict mode's call to a DOS manager in register form: the registers it
    stands for (XmsMove's structure stored first), the model's registers read
    back into the seed-level result; a call without a register form as it is."""
    form = to_registers(op, args) if manager == NAME else None
    if form is None:
        return execute(manager, op, args)
    if op == "XmsMove":
        execute(NAME, "WriteMemory", move_write(args))
    return from_registers(op, execute(NAME, *form))[0]


# -- the report ---------------------------------------------------------------------

def dos_map(exchanges: list[Any]) -> list[str]:
    """The MCB chains, XMS handles and EMS mappings as last reported."""
    out = []
    chain = last_observed(exchanges, "McbChain")
    if chain is not None:
        out.append(f"strategy {chain['strategy']:#x}, UMB link "
                   f"{'on' if chain['linked'] else 'off'}")
        for area in ("low", "high"):
            out += [f"  MCB {seg:04x}h {chr(typ) if 32 <= typ < 127 else hex(typ)} owner "
                    f"{owner:04x}h size {size:#x}" for seg, typ, owner, size in chain[area]]
    xms = last_observed(exchanges, "XmsHandles")
    if xms is not None:
        out.append("XMS: " + (", ".join(f"{h}@{a:#x} {kb} KB lock {n}"
                                        for h, a, kb, n in xms["handles"]) or "no handles"))
    ems = last_observed(exchanges, "EmsMappings")
    if ems is not None:
        out.append("EMS: " + ", ".join(f"{h}:{ids}" for h, ids in ems["handles"])
                   + f"; slots {ems['slots']}")
    return out


DOS = Family(
    name="dos", managers=(NAME,), setup=dos_setup,
    state_observations=(*OBSERVED, "FrameCounts"),
    spec_observations=(*OBSERVED, "ReadPhysical"), machine=one_machine(OracleDosMachine),
    judge=DosJudge, memory_map=dos_map, send=send_registers)
