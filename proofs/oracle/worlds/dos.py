"""The DOS memory manager's side of the model world (PROTOCOL.md, "DOS memory").

One manager, ``DosMemoryManager`` (three parts: conventional, xms, ems): the seed's DOS
calls, the model's other INT 21h calls and the XMS / EMS functions the DOS
machine drives (proofs/machines/dos_memory.py), plus two of the protocol's own:

- ``Initialize(first_segment, umb_start, umb_end, xms_end, ems_pages)`` builds
  the model.dos_memory.DosMemoryManager on the world's PageManager (its
  constructor's keywords); a second Initialize fails with 1247 (already
  initialized, as PageManager.InitializePhysicalMemory), a configuration the
  model refuses with its 21. Before it every other call fails (False / 0) with 21.
- ``WriteMemory(address, data)``: a real-mode program's store of hex ``data``
  at a physical ``address`` in the first MB (its blocks, the EMS page frame,
  an MCB when it damages the chain), at most 4096 bytes; else 87.
- ``Int21h``, ``XmsCall``, ``Int67h`` (the register form, PROTOCOL.md): the
  register object (proofs/oracle/register_form.py) in, the manager's
  ``Int21h`` / ``XmsCall`` / ``Int67h`` answer out, ``error`` its
  ``last_error``; before Initialize the registers as sent, error 21.

Each call's ``error`` is the code space of the call: the DOS error
(model.dos_memory.DosError, the Windows numbers) for the INT 21h calls,
Initialize and WriteMemory; the XMS BL code for ``Xms*``; the EMS AH status
for ``Ems*``; the seed's XMS / EMS calls (AllocateXmsMemory, FreeXmsMemory,
AllocateEmsPages, FreeEmsPages, MapEmsPageToPhysical) carry the XMS / EMS
code of the function behind them (the model's ``last_error``). Tuples are
packed as the registers hold them, 16 bits a field (XMS 3.0 08h and 0Eh,
LIM 4.0 42h): XmsQueryFree = AX << 16 | DX (largest, total free KB),
XmsGetHandleInfo = BH << 24 | BL << 16 | DX (lock count, free handles, KB; 0
on failure), EmsGetPageCounts = BX << 16 | DX (unallocated, total pages).
Arguments reach the model as they arrive; its documented failures cover bad
types. Observations never change the state.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from model.dos_memory import DosMemoryManager
from model.dos_physical import read_physical, write_physical
from model.page_manager import PageManager
from model.registers import Registers
from model.virtual_memory import VirtualMemoryManager
from proofs.oracle.managers import Calls, Manager, Message, PartFactory, Result, WorldPart
from proofs.oracle.register_form import REGISTER_FIELDS, REGISTER_OPS, from_message, to_message
from spec.abi import MCB_M, PAGE_SIZE, PARAGRAPH, DosError, ErrorCode

NAME = "DosMemoryManager"
#: A program's stores and the observations' reads: at most this many bytes.
BYTES_LIMIT = PAGE_SIZE
FIRST_MB = 0x100000
_MCB = struct.Struct("<BHH")

_OPERATIONS: dict[str, tuple[str, ...]] = {
    "Initialize": ("first_segment", "umb_start", "umb_end", "xms_end", "ems_pages"),
    "WriteMemory": ("address", "data"),
    "AllocateDosMemory": ("paragraphs",),
    "FreeDosMemory": ("segment",),
    "ResizeDosMemory": ("segment", "paragraphs"),
    "GetDosMemorySize": (),
    "GetDosLargestBlock": (),
    "GetAllocationStrategy": (),
    "SetAllocationStrategy": ("strategy",),
    "GetUmbLink": (),
    "SetUmbLink": ("linked",),
    "AllocateXmsMemory": ("bytes",),
    "FreeXmsMemory": ("handle",),
    "AllocateEmsPages": ("pages",),
    "FreeEmsPages": ("handle",),
    "MapEmsPageToPhysical": ("page_num", "segment"),
    "XmsQueryFree": (),
    "XmsAllocate": ("kb",),
    "XmsFree": ("handle",),
    "XmsMove": ("length", "src_handle", "src_offset", "dst_handle", "dst_offset"),
    "XmsLock": ("handle",),
    "XmsUnlock": ("handle",),
    "XmsGetHandleInfo": ("handle",),
    "XmsReallocate": ("handle", "kb"),
    "EmsGetStatus": (),
    "EmsGetPageFrame": (),
    "EmsGetPageCounts": (),
    "EmsAllocate": ("pages",),
    "EmsMap": ("handle", "logical", "physical"),
    "EmsDeallocate": ("handle",),
    "EmsGetVersion": (),
    "EmsGetHandleCount": (),
    "EmsGetHandlePages": ("handle",),
    **dict.fromkeys(REGISTER_OPS, REGISTER_FIELDS),
}
BOOL_OPS = frozenset({
    "Initialize", "WriteMemory", "FreeDosMemory", "ResizeDosMemory", "SetAllocationStrategy",
    "GetUmbLink", "SetUmbLink", "FreeXmsMemory", "FreeEmsPages", "MapEmsPageToPhysical",
    "XmsFree", "XmsMove", "XmsUnlock", "XmsReallocate", "EmsMap", "EmsDeallocate"})
OBSERVATIONS = ("McbChain", "XmsHandles", "EmsMappings", "ReadPhysical")

#: The manager's parts (PROTOCOL.md, "Partial managers"): conventional memory and
#: UMBs (INT 21h), XMS, EMS, each with its calls and observations; ReadPhysical
#: (the first MB's bytes) is conventional memory's.
CONVENTIONAL_OPS = frozenset({
    "Initialize", "WriteMemory", "AllocateDosMemory", "FreeDosMemory", "ResizeDosMemory",
    "GetDosMemorySize", "GetDosLargestBlock", "GetAllocationStrategy",
    "SetAllocationStrategy", "GetUmbLink", "SetUmbLink", "Int21h"})
XMS_OPS = frozenset({"AllocateXmsMemory", "FreeXmsMemory", "XmsCall",
                     *(op for op in _OPERATIONS if op.startswith("Xms") and op != "XmsCall")})
EMS_OPS = frozenset({"AllocateEmsPages", "FreeEmsPages", "MapEmsPageToPhysical", "Int67h",
                     *(op for op in _OPERATIONS if op.startswith("Ems"))})
MANAGER_PARTS = {"conventional": (CONVENTIONAL_OPS, ("McbChain", "ReadPhysical")),
                 "xms": (XMS_OPS, ("XmsHandles",)), "ems": (EMS_OPS, ("EmsMappings",))}

#: The DOS manager needs no other: an emulator has no PageManager to declare (the
#: model world sets its physical memory up itself, PROTOCOL.md "DOS memory").
MANAGERS: tuple[Manager, ...] = (
    Manager(NAME, (), _OPERATIONS, OBSERVATIONS, BOOL_OPS, MANAGER_PARTS),)


def raw_mcbs(pm: PageManager, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(segment, type, owner, size) of the MCBs from start as memory holds them:
    on while the type is 'M' and the next MCB lies before end (a block past end,
    a bad type byte: kept, last)."""
    blocks: list[tuple[int, int, int, int]] = []
    segment = start
    while segment < end and len(blocks) < 0x1000:
        typ, owner, size = _MCB.unpack(read_physical(pm, segment * PARAGRAPH, _MCB.size))
        blocks.append((segment, typ, owner, size))
        if typ != MCB_M:
            break
        segment += size + 1
    return blocks


def _u16(value: int) -> int:
    return value & 0xFFFF


def _pack(name: str, reply: Any) -> Result:
    """A reply as the protocol encodes it (tuples as their registers)."""
    if name == "XmsQueryFree":
        return _u16(reply[0]) << 16 | _u16(reply[1])
    if name == "XmsGetHandleInfo":
        return 0 if reply is None else (
            (reply[0] & 0xFF) << 24 | (reply[1] & 0xFF) << 16 | _u16(reply[2]))
    if name == "EmsGetPageCounts":
        return _u16(reply[0]) << 16 | _u16(reply[1])
    if name in BOOL_OPS:
        return reply is True
    return int(reply)


class DosPart:
    """The model behind DosMemoryManager: made by Initialize on the world's PageManager."""

    def __init__(self, pm: PageManager, vmm: VirtualMemoryManager,
                 parts: Sequence[WorldPart] = ()) -> None:
        self.pm = pm
        self.dos: DosMemoryManager | None = None
        self.error = int(DosError.SUCCESS)

    def _error(self) -> int:
        return self.error

    def calls(self) -> Calls:
        special: dict[str, Callable[..., Result]] = {
            "Initialize": self._initialize, "WriteMemory": self._write_memory,
            **{op: self._register_call(op) for op in REGISTER_OPS}}
        return {(NAME, op): (special.get(op) or self._call(op), self._error)
                for op in _OPERATIONS}

    def _call(self, op: str) -> Callable[..., Result]:
        def call(*args: Any) -> Result:
            dos = self.dos
            if dos is None:
                self.error = int(DosError.NOT_READY)
                return False if op in BOOL_OPS else 0
            owner: Any = (dos.xms if op.startswith("Xms") else
                          dos.ems if op.startswith("Ems") else dos)
            reply = getattr(owner, op)(*args)
            self.error = int(dos.xms.last_error if op.startswith("Xms") else
                             dos.ems.last_status if op.startswith("Ems") else dos.last_error)
            return _pack(op, reply)
        return call

    def _register_call(self, op: str) -> Callable[..., Result]:
        """Int21h, XmsCall, Int67h: the register object in, the manager's answer out
        (before Initialize: the registers as they came, error 21)."""
        def call(*values: Any) -> Result:
            regs = from_message(dict(zip(REGISTER_FIELDS, values, strict=True)))
            if self.dos is None:
                self.error = int(DosError.NOT_READY)
                return to_message(regs) if regs.valid() else to_message(
                    Registers(eax=int(DosError.NOT_READY), carry=True))
            out = getattr(self.dos, op)(regs)
            self.error = int(self.dos.last_error)
            return to_message(out)
        return call

    def _initialize(self, first_segment: int, umb_start: int, umb_end: int, xms_end: int,
                    ems_pages: int) -> bool:
        if self.dos is not None:
            self.error = int(ErrorCode.ERROR_ALREADY_INITIALIZED)
            return False
        dos = DosMemoryManager(self.pm, first_segment=first_segment, umb_start=umb_start,
                               umb_end=umb_end, xms_end=xms_end, ems_pages=ems_pages)
        self.error = int(dos.last_error)
        if dos.ready:
            self.dos = dos
        return dos.ready

    def _write_memory(self, address: int, data: str) -> bool:
        try:
            payload = bytes.fromhex(data) if type(data) is str else None
        except ValueError:
            payload = None
        if self.dos is None:
            self.error = int(DosError.NOT_READY)
            return False
        if (payload is None or type(address) is not int or len(payload) > BYTES_LIMIT
                or not 0 <= address <= FIRST_MB - len(payload)):
            self.error = int(DosError.INVALID_PARAMETER)
            return False
        write_physical(self.pm, address, payload)
        self.error = int(DosError.SUCCESS)
        return True

    # -- observations ------------------------------------------------------------

    def observers(self) -> Mapping[str, Callable[..., Message]]:
        return {"McbChain": self._mcb_chain, "XmsHandles": self._xms_handles,
                "EmsMappings": self._ems_mappings, "ReadPhysical": self._read_physical}

    def _mcb_chain(self) -> Message:
        dos = self.dos
        if dos is None:
            return {"first_segment": 0, "umb_start": 0, "umb_end": 0, "linked": False,
                    "strategy": 0, "low": [], "high": []}
        high = raw_mcbs(self.pm, dos.umb_start, dos.umb_end) if dos.has_umbs else []
        return {"first_segment": dos.first_segment, "umb_start": dos.umb_start,
                "umb_end": dos.umb_end, "linked": dos.umb_linked, "strategy": dos.strategy,
                "low": [list(b) for b in raw_mcbs(self.pm, dos.first_segment, dos.conv_end)],
                "high": [list(b) for b in high]}

    def _xms_handles(self) -> Message:
        dos = self.dos
        if dos is None:
            return {"handles": [], "pool_end": 0}
        return {"handles": [[h, b.address, b.size_kb, b.lock_count]
                            for h, b in sorted(dos.xms.handles.items())],
                "pool_end": dos.xms.pool_end}

    def _ems_mappings(self) -> Message:
        dos = self.dos
        if dos is None:
            return {"handles": [], "slots": [None] * 4, "total_pages": 0}
        return {"handles": [[h, list(ids)] for h, ids in sorted(dos.ems.handles.items())],
                "slots": [None if s is None else list(s) for s in dos.ems.slots],
                "total_pages": dos.ems.total_pages}

    def _read_physical(self, address: int, length: int) -> Message:
        top = self.pm.nframes * PAGE_SIZE if self.pm.initialized else 0
        if not (type(address) is int and type(length) is int and 0 <= length <= BYTES_LIMIT
                and 0 <= address <= top - length):
            return {"data": None}
        return {"data": read_physical(self.pm, address, length).hex()}


PARTS: tuple[PartFactory, ...] = (DosPart,)
