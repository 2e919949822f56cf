"""Int67h: the expanded memory manager's interrupt, registers in, registers out,
over EmsManager (model/ems.py). AH is the function, AL the subfunction; AH is
the status on return (00h success). Registers a function does not name come
back unchanged; a failure changes no state and sets no output register but AH.

Rules (LIM 4.0 = the Expanded Memory Specification 4.0; DOSBox-staging
src/ints/ems.cpp lines 779-940, the INT 67h handler):

- 40h status; 41h BX = E000h; 42h BX = unallocated pages, DX = total pages;
  43h (BX pages) DX = the handle; 44h (AL physical, BX logical, DX handle);
  45h (DX); 46h AL = 40h; 4Bh BX = open handles; 4Ch (DX) BX = its pages.
- 47h/48h (DX handle): save the frame's mapping in the handle's save area /
  restore it (8Dh a mapping is already saved, 8Eh none is; ems.cpp lines
  448-491). 45h on a handle with a saved mapping: 86h (LIM 4.0 function 6;
  DOSBox leaves the check commented out, ems.cpp line 431).
- 4Dh: ES:DI <- (handle, pages) word pairs of every open handle, lowest
  handle first; BX = their number (ems.cpp lines 493-504).
- 4Eh: 00h ES:DI <- the 16-byte mapping context (model/ems.py EmsGetPageMap);
  01h the context at DS:SI is mapped (A3h when it names no live page or one
  page twice; nothing changes); 02h both: the context at DS:SI is read and
  checked first, then the old one written to ES:DI and the new one mapped
  (DOSBox writes before it reads: buffers that overlap differ); 03h AL = 16
  (ems.cpp lines 826-850; LIM 4.0 function 15).
- 4Fh (LIM 4.0 function 16; ems.cpp lines 506-577 give the layout): the
  partial context is a count word, then per page a byte physical page, a byte
  handle (FFh unmapped) and a word logical page (FFFFh unmapped). 00h: DS:SI
  = a count word and that many segments, ES:DI <- the context; 01h: DS:SI =
  such a context, mapped over the other pages' mappings; 02h: BX pages -> AL =
  2 + 4 * BX. Statuses: 8Bh a segment that is not a frame page's (ems.cpp
  line 540) or a context page past the frame (line 561), or 02h's BX past the
  4 physical pages (a decision: RBIL lists 8Bh among 4Fh's statuses, and
  DOSBox does not check BX at all); A3h a
  count past the 4 mappable pages (RBIL INT 67h AH=4Fh) or a context naming
  no live page or one page twice (as 4Eh/01h); a failure writes and maps
  nothing (DOSBox writes and maps entry by entry, see docs/deviations.md).
  Only the frame's exact page segments are mappable (DOSBox also takes a
  segment inside a page, and conventional-memory segments when configured).
- 50h (AL 00h physical page numbers / 01h segments; DX handle, CX entries at
  DS:SI of (logical page, physical page or segment) words; logical FFFFh
  unmaps): every entry is checked before any is mapped, so a failing call
  maps nothing (DOSBox maps entry by entry and stops at the first error,
  ems.cpp lines 854-879; the model's failures change nothing).
- 51h (DX handle, BX pages, 0 allowed): BX = the new count; pages beyond it are
  unmapped and freed (87h more than exist, 88h more than unallocated).
- 52h: only volatile handles (ems.cpp lines 635-660): 00h AL = 0; 01h BL = 0
  accepted, BL = 1 (non-volatile) 91h, other BL 90h; 02h AL = 0; 83h for an
  unknown handle (00h, 01h).
- 53h: 00h ES:DI <- the handle's 8-byte name; 01h the name at DS:SI, A1h when
  another handle has it (LIM 4.0 function 20; DOSBox does not check, ems.cpp
  lines 616-632). 45h clears the name (ems.cpp line 443).
- 54h: 00h ES:DI <- (handle word, 8-byte name) of each open handle, AL =
  their number; 01h DX = the handle whose name is at DS:SI (A0h none, A1h the
  null name); 02h BX = the handle table's size (ems.cpp lines 579-614).
- 57h: move (AL 00h) / exchange (01h) a region, the structure at DS:SI:
  model/ems_move.py (its statuses 83h, 8Ah, 92h, 93h, 95h-98h, A2h); other AL
  8Fh (DOSBox answers 84h, ems.cpp lines 680-683).
- 58h: 00h ES:DI <- (segment, physical page) of the 4 frame pages; 00h and
  01h CX = 4 (ems.cpp lines 897-909).
- 59h: 00h ES:DI <- raw page paragraphs 0400h, 0 alternate register sets,
  the context save area's 16 bytes, 0 DMA channels, 0; 01h BX = unallocated,
  DX = total raw pages (raw pages are the 16 KB standard pages) (ems.cpp
  lines 910-932).
- 5Bh (alternate map register set, with none: the 4Eh context save area) and
  5Dh (the OS/E function set's access key; while disabled 59h and 5Bh answer
  A4h): model/ems_os.py (LIM 4.0 functions 28, 30; DOSBox answers 84h).
- 5Ah (AL 00h standard / 01h raw; BX pages, 0 allowed): DX = the handle
  (ems.cpp lines 933-940).
- 5Ch (LIM 4.0 function 29, prepare for warm boot): AH = 0, nothing changes
  (the model keeps no hardware state a warm boot could lose; DOSBox answers
  84h, it has no 5Ch).
- 55h/56h (LIM 4.0 functions 22, 23: alter the page map and jump to / call a
  far address) answer 84h: they transfer control to code, and a model with
  no CPU has none to transfer to; VCPI DEh is the protected-mode interface
  of DOS extenders (page tables, mode switches), outside an EMS memory
  model: 84h, as DOSBox with VCPI off (ems.cpp lines 941-945).
- An undefined subfunction of 4Eh, 4Fh, 50h, 52h-54h, 57h-5Ah: 8Fh; an
  undefined or unmodelled function (55h, 56h, VCPI DEh): 84h
  (ems.cpp lines 1116-1119). A register record no register can hold
  (``not regs.valid()``) is refused with AH = 84h before any state is read; a
  manager that is not ready answers 84h to everything.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from model.dos_physical import read_physical, write_physical
from model.ems import NULL_NAME, EmsManager
from model.ems_move import REGION, EmsMoveRegion
from model.ems_os import alternate_map_register_set, os_function_set
from model.registers import Registers
from spec.abi import (
    EMM_ACCESS_DENIED,
    EMM_CONTEXT_SIZE,
    EMM_CORRUPT_MAP,
    EMM_FEATURE_NOT_SUPPORTED,
    EMM_FUNCTION_NOT_SUPPORTED,
    EMM_INVALID_SUBFUNCTION,
    EMM_RAW_PAGE_PARAGRAPHS,
    EMM_UNDEFINED_ATTRIBUTE,
    EMS_FRAME_SEGMENT,
    EMS_INVALID_HANDLE,
    EMS_INVALID_LOGICAL,
    EMS_INVALID_PHYSICAL,
    EMS_PAGE_SIZE,
    EMS_SUCCESS,
    EMS_VERSION,
    PHYSICAL_PAGES,
    UNMAP,
)

#: Paragraphs between two physical pages' segments.
_STEP = EMS_PAGE_SIZE // 16
#: A 4Fh context entry: physical page byte, handle byte, logical page word.
_PARTIAL = struct.Struct("<BBH")
#: The handle byte of an unmapped page in a 4Fh context (NULL_HANDLE's low byte).
_NO_HANDLE = 0xFF


class _Call:
    """One INT 67h call: the manager and the caller's registers."""

    def __init__(self, ems: EmsManager, regs: Registers) -> None:
        self.ems, self.regs = ems, regs

    def done(self, ok: bool, **more: int) -> Registers:
        """AH = 00h and the outputs on success, AH = the manager's status on failure."""
        if ok:
            return self.regs.set(ah=EMS_SUCCESS, **more)
        return self.regs.set(ah=self.ems.last_status)

    def status(self, code: int) -> Registers:
        return self.regs.set(ah=code)

    def read(self, length: int, offset: int = 0) -> bytes:
        return read_physical(self.ems.pageman, self.regs.ds * 16 + self.regs.si + offset, length)

    def write(self, data: bytes) -> None:
        write_physical(self.ems.pageman, self.regs.es * 16 + self.regs.di, data)

    # -- LIM 3.2 functions ---------------------------------------------

    def get_status(self) -> Registers:
        return self.done(True)

    def page_frame(self) -> Registers:
        return self.done(True, bx=self.ems.EmsGetPageFrame())

    def page_counts(self) -> Registers:
        unallocated, total = self.ems.EmsGetPageCounts()
        return self.done(True, bx=unallocated, dx=total)

    def allocate(self, zero_ok: bool = False) -> Registers:
        handle = self.ems.EmsAllocate(self.regs.bx, zero_ok=zero_ok)
        return self.done(handle != 0, dx=handle)

    def map_page(self) -> Registers:
        return self.done(self.ems.EmsMap(self.regs.dx, self.regs.bx, self.regs.al))

    def deallocate(self) -> Registers:
        return self.done(self.ems.EmsDeallocate(self.regs.dx))

    def version(self) -> Registers:
        return self.done(True, al=EMS_VERSION)

    def save_map(self) -> Registers:
        return self.done(self.ems.EmsSaveMap(self.regs.dx))

    def restore_map(self) -> Registers:
        return self.done(self.ems.EmsRestoreMap(self.regs.dx))

    def handle_count(self) -> Registers:
        return self.done(True, bx=self.ems.EmsGetHandleCount())

    def handle_pages(self) -> Registers:
        pages = self.ems.EmsGetHandlePages(self.regs.dx)
        return self.done(self.ems.last_status == EMS_SUCCESS, bx=pages)

    def all_handle_pages(self) -> Registers:
        handles = sorted(self.ems.handles.items())
        self.write(b"".join(struct.pack("<HH", handle, len(pages)) for handle, pages in handles))
        return self.done(True, bx=len(handles))

    def page_map(self) -> Registers:
        if self.regs.al == 3:
            return self.done(True, al=EMM_CONTEXT_SIZE)
        if self.regs.al > 3:
            return self.status(EMM_INVALID_SUBFUNCTION)
        old, new = self.ems.EmsGetPageMap(), self.read(EMM_CONTEXT_SIZE)
        if self.regs.al == 0:
            self.write(old)
            return self.done(True)
        if not self.ems.page_map_valid(new):
            return self.status(EMM_CORRUPT_MAP)
        if self.regs.al == 2:
            self.write(old)
        return self.done(self.ems.EmsSetPageMap(new))

    # -- LIM 4.0 functions ---------------------------------------------

    def partial_page_map(self) -> Registers:
        if self.regs.al == 2:
            if self.regs.bx > PHYSICAL_PAGES:
                return self.status(EMS_INVALID_PHYSICAL)
            return self.done(True, al=2 + _PARTIAL.size * self.regs.bx)
        if self.regs.al > 2:
            return self.status(EMM_INVALID_SUBFUNCTION)
        count = struct.unpack("<H", self.read(2))[0]
        if count > PHYSICAL_PAGES:
            return self.status(EMM_CORRUPT_MAP)
        if self.regs.al == 0:
            return self.get_partial(count)
        return self.set_partial(count)

    def get_partial(self, count: int) -> Registers:
        pages = [_physical_of(struct.unpack("<H", self.read(2, 2 + 2 * index))[0])
                 for index in range(count)]
        if -1 in pages:
            return self.status(EMS_INVALID_PHYSICAL)
        context = self.ems.EmsGetPageMap()
        entries = b"".join(_PARTIAL.pack(page, *_entry_bytes(context, page)) for page in pages)
        self.write(struct.pack("<H", count) + entries)
        return self.done(True)

    def set_partial(self, count: int) -> Registers:
        entries = [_PARTIAL.unpack(self.read(_PARTIAL.size, 2 + _PARTIAL.size * index))
                   for index in range(count)]
        if any(page >= PHYSICAL_PAGES for page, _, _ in entries):
            return self.status(EMS_INVALID_PHYSICAL)
        context = bytearray(self.ems.EmsGetPageMap())
        for page, handle, logical in entries:
            handle = UNMAP if handle == _NO_HANDLE else handle
            struct.pack_into("<HH", context, 4 * page, handle, logical)
        if not self.ems.page_map_valid(bytes(context)):
            return self.status(EMM_CORRUPT_MAP)
        return self.done(self.ems.EmsSetPageMap(bytes(context)))

    def warm_boot(self) -> Registers:
        return self.done(True)

    def handle_attribute(self) -> Registers:
        if self.regs.al == 2:
            return self.done(True, al=0)
        if self.regs.al > 2:
            return self.status(EMM_INVALID_SUBFUNCTION)
        if self.regs.dx not in self.ems.handles:
            return self.status(EMS_INVALID_HANDLE)
        if self.regs.al == 0:
            return self.done(True, al=0)
        if self.regs.bl > 1:
            return self.status(EMM_UNDEFINED_ATTRIBUTE)
        return self.done(True) if self.regs.bl == 0 else self.status(EMM_FEATURE_NOT_SUPPORTED)

    def map_multiple(self) -> Registers:
        if self.regs.al > 1:
            return self.status(EMM_INVALID_SUBFUNCTION)
        pages = self.ems.handles.get(self.regs.dx)
        if pages is None:
            return self.status(EMS_INVALID_HANDLE)
        entries = [struct.unpack("<HH", self.read(4, 4 * index))
                   for index in range(self.regs.cx)]
        plan = []
        for logical, where in entries:
            physical = where if self.regs.al == 0 else _physical_of(where)
            if not 0 <= physical < PHYSICAL_PAGES:
                return self.status(EMS_INVALID_PHYSICAL)
            if logical != UNMAP and logical >= len(pages):
                return self.status(EMS_INVALID_LOGICAL)
            plan.append((logical, physical))
        for logical, physical in plan:
            self.ems.EmsMap(self.regs.dx, logical, physical)
        return self.done(True)

    def reallocate(self) -> Registers:
        return self.done(self.ems.EmsReallocate(self.regs.dx, self.regs.bx))

    def handle_name(self) -> Registers:
        if self.regs.al > 1:
            return self.status(EMM_INVALID_SUBFUNCTION)
        if self.regs.al == 1:
            return self.done(self.ems.EmsSetName(self.regs.dx, self.read(8)))
        if self.regs.dx not in self.ems.handles:
            return self.status(EMS_INVALID_HANDLE)
        self.write(self.ems.names.get(self.regs.dx, NULL_NAME))
        return self.done(True)

    def handle_directory(self) -> Registers:
        if self.regs.al == 0:
            handles = sorted(self.ems.handles)
            self.write(b"".join(struct.pack("<H", handle) + self.ems.names.get(handle, NULL_NAME)
                                for handle in handles))
            return self.done(True, al=len(handles))
        if self.regs.al == 1:
            handle = self.ems.EmsFindName(self.read(8))
            return self.done(self.ems.last_status == EMS_SUCCESS, dx=handle)
        if self.regs.al == 2:
            return self.done(True, bx=self.ems.handle_count)
        return self.status(EMM_INVALID_SUBFUNCTION)

    def move_region(self) -> Registers:
        if self.regs.al > 1:
            return self.status(EMM_INVALID_SUBFUNCTION)
        return self.status(EmsMoveRegion(self.ems, self.regs.al == 1, self.read(REGION.size)))

    def mappable_array(self) -> Registers:
        if self.regs.al > 1:
            return self.status(EMM_INVALID_SUBFUNCTION)
        if self.regs.al == 0:
            self.write(b"".join(struct.pack("<HH", EMS_FRAME_SEGMENT + _STEP * page, page)
                                for page in range(PHYSICAL_PAGES)))
        return self.done(True, cx=PHYSICAL_PAGES)

    def hardware_info(self) -> Registers:
        if not self.ems.os_enabled:
            return self.status(EMM_ACCESS_DENIED)
        if self.regs.al == 0:
            self.write(struct.pack("<5H", EMM_RAW_PAGE_PARAGRAPHS, 0, EMM_CONTEXT_SIZE, 0, 0))
            return self.done(True)
        if self.regs.al == 1:
            return self.page_counts()
        return self.status(EMM_INVALID_SUBFUNCTION)

    def allocate_any(self) -> Registers:
        if self.regs.al > 1:
            return self.status(EMM_INVALID_SUBFUNCTION)
        return self.allocate(zero_ok=True)


def _entry_bytes(context: bytes, page: int) -> tuple[int, int]:
    """(handle byte, logical page) of a physical page in a 4Eh context."""
    handle, logical = struct.unpack_from("<HH", context, 4 * page)
    return (_NO_HANDLE if handle == UNMAP else handle), logical


def _physical_of(segment: int) -> int:
    """The physical page at a frame segment; -1 for any other segment."""
    offset = segment - EMS_FRAME_SEGMENT
    if offset < 0 or offset % _STEP or offset // _STEP >= PHYSICAL_PAGES:
        return -1
    return offset // _STEP


_FUNCTIONS: dict[int, Callable[[_Call], Registers]] = {
    0x40: _Call.get_status, 0x41: _Call.page_frame, 0x42: _Call.page_counts,
    0x43: lambda call: call.allocate(), 0x44: _Call.map_page, 0x45: _Call.deallocate,
    0x46: _Call.version, 0x47: _Call.save_map, 0x48: _Call.restore_map,
    0x4B: _Call.handle_count, 0x4C: _Call.handle_pages, 0x4D: _Call.all_handle_pages,
    0x4E: _Call.page_map, 0x4F: _Call.partial_page_map, 0x50: _Call.map_multiple,
    0x51: _Call.reallocate, 0x52: _Call.handle_attribute, 0x53: _Call.handle_name,
    0x54: _Call.handle_directory,
    0x57: _Call.move_region, 0x58: _Call.mappable_array, 0x59: _Call.hardware_info,
    0x5A: _Call.allocate_any, 0x5C: _Call.warm_boot,
    0x5B: lambda call: alternate_map_register_set(call.ems, call.regs),
    0x5D: lambda call: os_function_set(call.ems, call.regs),
}


def int67h(ems: EmsManager, regs: Registers, *, installed: bool = True) -> Registers:
    """INT 67h: AH the function; the registers the caller finds after it."""
    if not (isinstance(regs, Registers) and regs.valid()):
        return Registers(eax=EMM_FUNCTION_NOT_SUPPORTED << 8)
    function = _FUNCTIONS.get(regs.ah)
    if function is None or not (installed and ems.ready):
        return regs.set(ah=EMM_FUNCTION_NOT_SUPPORTED)
    return function(_Call(ems, regs))
