"""EmsManager: expanded memory with LIM EMS 4.0 semantics (seed section 6).

The page frame is four 16 KB physical pages at segments E000h, E400h, E800h,
EC00h (physical 0xE0000-0xEFFFF, reserved identity-mapped memory of the first
MB). A logical page is stored in four frames taken from the PageManager (owner
HELD) when it is allocated and returned when its handle is deallocated;
``frames()`` lists them. ``total_pages`` pages exist, with system-wide storage
ids 0..total_pages-1 (the lowest free id is used); ``handles`` maps a handle to
its pages' storage ids, ``slots`` each physical page to (handle, logical page)
or None.

Rules (LIM 4.0 = Lotus/Intel/Microsoft Expanded Memory Specification 4.0,
1987, functions 1-12 = INT 67h AH=40h-4Ch, and 18, 20, 21, 27 = 51h, 53h, 54h,
5Ah; status codes as RBIL table 03648):

- 40h status 00h; 41h the frame segment E000h; 42h (unallocated pages, total
  pages): unallocated is also bounded by the PageManager's free frames / 4;
  46h version 40h (4.0); 4Bh the number of open handles (the OS handle
  included); 4Ch a handle's page count (83h unknown handle).
- Handle 0 is the operating system's handle, open from the start with 0 pages
  (LIM 4.0); 43h never returns it and takes the lowest free handle of
  1..handle_count-1 (EMM386's default table is 64 handles).
- 43h allocate: 89h for 0 pages (LIM 4.0 function 4: zero pages is an error
  for 43h; only function 27, 5Ah, allows it); 87h more pages than exist in
  total; 88h more than are unallocated (or than the PageManager has frames
  for); 85h no free handle.
- 44h map (handle, logical, physical): 83h unknown handle, 8Bh physical page
  not 0..3, 8Ah logical page not below the handle's count; logical FFFFh
  unmaps the physical page (LIM 4.0: "unmapped pages are inaccessible").
- Contents, copy-on-switch: while mapped, a logical page's bytes live in its
  physical page (the frame's physical memory); unmapping or replacing saves
  the physical page into the logical page's storage, mapping loads it. An
  unmapped physical page reads as zeros. Aliasing: LIM 4.0 does not forbid one
  logical page in two physical pages, but two physical copies could not stay
  coherent under copy-on-switch, and DOS-5 (DESIGN.md) requires each logical
  page in at most one physical page: mapping a page that is already mapped
  elsewhere moves it (the old physical page is saved and unmapped).
- 45h deallocate: 83h unknown handle. LIM 4.0 lists no error for pages that
  are mapped (86h concerns a saved mapping context, below): the
  physical pages showing the handle's pages are unmapped (their contents
  dropped) and the frames returned. Deallocating handle 0 frees its pages and
  leaves the handle open (LIM 4.0: the OS handle is never released).
- The seed's MapEmsPageToPhysical(page_num, segment): page_num is a storage
  id (the seed's system-wide ems_pages index) of an allocated page (else 8Ah),
  segment one of the frame's segments (else 8Bh), as LIM 4.0 function 17
  (50h/01h) maps by segment.
- 5Ah (``EmsAllocate(pages, zero_ok=True)``) allows 0 pages (LIM 4.0
  function 27; DOSBox-staging src/ints/ems.cpp lines 264-268).
- 47h ``EmsSaveMap``: the slots are kept in the handle's save area
  (``saved``); 8Dh when one is kept. 48h ``EmsRestoreMap``: maps what was kept
  (each slot as 44h does; a kept page that no longer exists leaves its slot
  unmapped) and empties the area; 8Eh when none is kept (ems.cpp lines
  448-491). 45h on a handle with a kept mapping: 86h (LIM 4.0 function 6;
  DOSBox leaves the check out, ems.cpp line 431), so a saved context never
  outlives its handle (DOS-5).
- 51h ``EmsReallocate``: the handle keeps its first pages (0 allowed), the
  rest are unmapped (contents dropped) and returned, new pages take fresh
  storage; 87h/88h as 43h (ems.cpp lines 307-321).
- 53h ``names`` (8 bytes; a handle without an entry has the null name);
  ``EmsSetName`` refuses a non-null name another handle has (A1h, LIM 4.0
  function 20); 45h clears the name (ems.cpp line 443). 54h/01h
  ``EmsFindName``: A1h for the null name, A0h when no handle has it.
- 4Eh ``EmsGetPageMap`` / ``EmsSetPageMap``: the context is 16 bytes, (handle,
  logical page) words per physical page, FFFFh/FFFFh unmapped (DOSBox-staging's
  layout, ems.cpp lines 826-850; LIM 4.0 leaves it to the EMM); a context that
  names a page that does not exist or one page twice: A3h (LIM 4.0 function
  15, "the source array is corrupted"; DOSBox maps what it can).
- The register-level entry point is model/int67.py.
- Bad Python arguments take the nearest status (handles 83h, counts 87h,
  physical pages 8Bh, logical pages 8Ah). Failures change nothing.
"""

from __future__ import annotations

import struct
from typing import TypeVar

from model.dos_physical import read_physical, zero_physical
from model.page_manager import PageManager
from spec.abi import (
    EMM_CONTEXT_SIZE,
    EMM_CORRUPT_MAP,
    EMM_INVALID_SUBFUNCTION,
    EMM_MAP_ALREADY_SAVED,
    EMM_NAME_EXISTS,
    EMM_NAME_NOT_FOUND,
    EMM_NO_SAVED_MAP,
    EMM_NULL_NAME,
    EMM_SAVED_CONTEXT,
    EMS_FRAME_SEGMENT,
    EMS_INVALID_HANDLE,
    EMS_INVALID_LOGICAL,
    EMS_INVALID_PHYSICAL,
    EMS_NO_HANDLES,
    EMS_NOT_ENOUGH_PAGES,
    EMS_PAGE_SIZE,
    EMS_SUCCESS,
    EMS_TOO_MANY_PAGES,
    EMS_VERSION,
    EMS_ZERO_PAGES,
    FRAMES_PER_PAGE,
    OS_HANDLE,
    PAGE_SHIFT,
    PHYSICAL_PAGES,
    UNMAP,
    FrameOwner,
)

_T = TypeVar("_T")

#: A handle's name before 53h sets one (LIM 4.0 function 20: eight zero bytes).
NULL_NAME = bytes(8)


def slot_address(physical: int) -> int:
    """Physical byte address of physical page 0..3."""
    return EMS_FRAME_SEGMENT * 16 + physical * EMS_PAGE_SIZE


class EmsManager:
    """LIM EMS 4.0 functions 40h-4Ch over storage frames from the PageManager."""

    def __init__(self, pageman: PageManager, total_pages: int, *,
                 handle_count: int = 64) -> None:
        self.pageman = pageman
        self.total_pages = total_pages
        self.handle_count = handle_count
        self.handles: dict[int, list[int]] = {OS_HANDLE: []}
        self.slots: list[tuple[int, int] | None] = [None] * PHYSICAL_PAGES
        self.storage: dict[int, list[int]] = {}  # storage id -> its 4 frames
        self.saved: dict[int, list[tuple[int, int] | None]] = {}  # 47h save areas
        self.names: dict[int, bytes] = {}  # 53h names (8 bytes; absent = null)
        # LIM 4.0 functions 28 and 30 (model/ems_os.py): 5Bh/01h's context save
        # area (segment, offset); 5Dh's access key (None: none issued), how many
        # keys were issued, and whether 59h/5Bh are enabled.
        self.alternate_area: tuple[int, int] | None = None
        self.access_key: int | None = None
        self.keys_issued = 0
        self.os_enabled = True
        self.last_status = EMS_SUCCESS
        self.ready = (type(total_pages) is int and 0 <= total_pages <= 0x7FFF
                      and type(handle_count) is int and 2 <= handle_count <= 255)

    def frames(self) -> set[int]:
        return {frame for frames in self.storage.values() for frame in frames}

    # -- LIM functions ---------------------------------------------------

    def EmsGetStatus(self) -> int:
        """40h."""
        return self._set(EMS_SUCCESS)

    def EmsGetPageFrame(self) -> int:
        """41h: the page frame segment."""
        return self._set(EMS_FRAME_SEGMENT)

    def EmsGetPageCounts(self) -> tuple[int, int]:
        """42h: (unallocated pages, total pages)."""
        return self._set((self._available(), self.total_pages))

    def EmsAllocate(self, pages: int, zero_ok: bool = False) -> int:
        """43h (5Ah with zero_ok): a new handle owning pages logical pages; 0 on failure."""
        if type(pages) is not int or pages < 0 or pages > self.total_pages:
            return self._set(0, EMS_TOO_MANY_PAGES)
        if pages == 0 and not zero_ok:
            return self._set(0, EMS_ZERO_PAGES)
        if pages > self._available():
            return self._set(0, EMS_NOT_ENOUGH_PAGES)
        handle = next((h for h in range(1, self.handle_count) if h not in self.handles), 0)
        if handle == 0:
            return self._set(0, EMS_NO_HANDLES)
        self.handles[handle] = self._take(pages)
        return self._set(handle)

    def EmsMap(self, handle: int, logical: int, physical: int) -> bool:
        """44h: show handle's logical page in physical page 0..3; logical FFFFh unmaps."""
        pages = self._pages(handle)
        if pages is None:
            return False
        if type(physical) is not int or not 0 <= physical < PHYSICAL_PAGES:
            return self._set(False, EMS_INVALID_PHYSICAL)
        if logical == UNMAP and type(logical) is int:
            self._unmap(physical)
            return self._set(True)
        if type(logical) is not int or not 0 <= logical < len(pages):
            return self._set(False, EMS_INVALID_LOGICAL)
        target = (handle, logical)
        if self.slots[physical] != target:
            for other in range(PHYSICAL_PAGES):
                if self.slots[other] == target:
                    self._unmap(other)
            self._unmap(physical)
            self._load(physical, pages[logical])
            self.slots[physical] = target
        return self._set(True)

    def EmsDeallocate(self, handle: int) -> bool:
        """45h: free the handle's pages (and the handle, unless it is the OS handle)."""
        pages = self._pages(handle)
        if pages is None:
            return False
        if handle in self.saved:
            return self._set(False, EMM_SAVED_CONTEXT)
        self._drop(handle, 0)
        self.names.pop(handle, None)
        if handle == OS_HANDLE:
            self.handles[OS_HANDLE] = []
        else:
            del self.handles[handle]
        return self._set(True)

    def EmsReallocate(self, handle: int, pages: int) -> bool:
        """51h: the handle keeps its first pages pages (0 allowed); new ones are added
        after them, dropped ones unmapped and returned."""
        current = self._pages(handle)
        if current is None:
            return False
        if type(pages) is not int or not 0 <= pages <= self.total_pages:
            return self._set(False, EMS_TOO_MANY_PAGES)
        if pages - len(current) > self._available():
            return self._set(False, EMS_NOT_ENOUGH_PAGES)
        if pages < len(current):
            self._drop(handle, pages)
        else:
            current.extend(self._take(pages - len(current)))
        return self._set(True)

    def EmsSaveMap(self, handle: int) -> bool:
        """47h: keep the frame's mapping in the handle's save area (8Dh: one is kept)."""
        if self._pages(handle) is None:
            return False
        if handle in self.saved:
            return self._set(False, EMM_MAP_ALREADY_SAVED)
        self.saved[handle] = list(self.slots)
        return self._set(True)

    def EmsRestoreMap(self, handle: int) -> bool:
        """48h: map what 47h kept and empty the save area (8Eh: nothing kept). A kept
        page that no longer exists leaves its physical page unmapped."""
        if self._pages(handle) is None:
            return False
        if handle not in self.saved:
            return self._set(False, EMM_NO_SAVED_MAP)
        for physical, target in enumerate(self.saved.pop(handle)):
            pages = self.handles.get(target[0]) if target is not None else None
            if target is not None and pages is not None and target[1] < len(pages):
                self.EmsMap(target[0], target[1], physical)
            else:
                self._unmap(physical)
        return self._set(True)

    def EmsGetPageMap(self) -> bytes:
        """4Eh/00h: the mapping context, (handle, logical page) words per physical
        page, FFFFh/FFFFh for an unmapped one (DOSBox-staging ems.cpp's
        emm_mappings layout, lines 826-831: 16 bytes)."""
        return self._set(b"".join(struct.pack("<HH", *(mapped or (UNMAP, UNMAP)))
                                  for mapped in self.slots))

    def page_map_valid(self, data: bytes) -> bool:
        """A context EmsSetPageMap accepts: 16 bytes naming live pages, each once (a
        query of the state, no EMS function: it sets no status)."""
        if type(data) is not bytes or len(data) != EMM_CONTEXT_SIZE:
            return False
        entries = [struct.unpack_from("<HH", data, 4 * p) for p in range(PHYSICAL_PAGES)]
        shown = [e for e in entries if e != (UNMAP, UNMAP)]
        return len(set(shown)) == len(shown) and all(
            h in self.handles and logical < len(self.handles[h]) for h, logical in shown)

    def EmsSetPageMap(self, data: bytes) -> bool:
        """4Eh/01h: map what an EmsGetPageMap context says; A3h (nothing changes) when an
        entry names no live page or one page twice (LIM 4.0 function 15)."""
        if not self.page_map_valid(data):
            return self._set(False, EMM_CORRUPT_MAP)
        entries = [struct.unpack_from("<HH", data, 4 * p) for p in range(PHYSICAL_PAGES)]
        for physical in range(PHYSICAL_PAGES):
            self._unmap(physical)
        for physical, (handle, logical) in enumerate(entries):
            if (handle, logical) != (UNMAP, UNMAP):
                self.EmsMap(handle, logical, physical)
        return self._set(True)

    def EmsSetName(self, handle: int, name: bytes) -> bool:
        """53h/01h: A1h when another handle has this (non-null) name; a name that is
        not 8 bytes cannot be passed in registers: 8Fh."""
        if self._pages(handle) is None:
            return False
        if type(name) is not bytes or len(name) != len(NULL_NAME):
            return self._set(False, EMM_INVALID_SUBFUNCTION)
        if name != NULL_NAME and any(other != handle and value == name
                                     for other, value in self.names.items()):
            return self._set(False, EMM_NAME_EXISTS)
        self.names[handle] = name
        return self._set(True)

    def EmsFindName(self, name: bytes) -> int:
        """54h/01h: the handle named name; A1h for the null name, A0h for none."""
        if name == NULL_NAME:
            return self._set(0, EMM_NULL_NAME)
        found = [handle for handle, value in self.names.items() if value == name]
        return self._set(found[0]) if found else self._set(0, EMM_NAME_NOT_FOUND)

    def EmsGetVersion(self) -> int:
        """46h: 40h (LIM 4.0)."""
        return self._set(EMS_VERSION)

    def EmsGetHandleCount(self) -> int:
        """4Bh: open handles, the OS handle included."""
        return self._set(len(self.handles))

    def EmsGetHandlePages(self, handle: int) -> int:
        """4Ch: the handle's page count; 0 with 83h for an unknown handle."""
        pages = self._pages(handle)
        if pages is None:
            return 0
        return self._set(len(pages))

    def MapPageToSegment(self, page_num: int, segment: int) -> bool:
        """The seed's MapEmsPageToPhysical: storage id page_num at a frame segment."""
        if type(page_num) is not int or page_num not in self.storage:
            return self._set(False, EMS_INVALID_LOGICAL)
        offset = segment - EMS_FRAME_SEGMENT if type(segment) is int else -1
        if offset < 0 or offset % (EMS_PAGE_SIZE // 16) or offset >= 0x1000:
            return self._set(False, EMS_INVALID_PHYSICAL)
        handle = next(h for h, ids in self.handles.items() if page_num in ids)
        return self.EmsMap(handle, self.handles[handle].index(page_num),
                           offset // (EMS_PAGE_SIZE // 16))

    def read_logical(self, handle: int, logical: int) -> bytes:
        """The current bytes of a logical page (its physical page's while mapped)."""
        for physical, mapped in enumerate(self.slots):
            if mapped == (handle, logical):
                return read_physical(self.pageman, slot_address(physical), EMS_PAGE_SIZE)
        frames = self.storage[self.handles[handle][logical]]
        return b"".join(read_physical(self.pageman, frame << PAGE_SHIFT, 1 << PAGE_SHIFT)
                        for frame in frames)

    # -- private -----------------------------------------------------------

    def _available(self) -> int:
        return min(self.total_pages - len(self.storage),
                   self.pageman.free_count() // FRAMES_PER_PAGE)

    def _pages(self, handle: object) -> list[int] | None:
        pages = self.handles.get(handle) if type(handle) is int else None
        if pages is None:
            self.last_status = EMS_INVALID_HANDLE
        return pages

    def _take(self, count: int) -> list[int]:
        """count free storage ids (lowest first), each given four HELD frames."""
        ids = [i for i in range(self.total_pages) if i not in self.storage][:count]
        for page in ids:
            self.storage[page] = [self.pageman.take_frame(FrameOwner.HELD)
                                  for _ in range(FRAMES_PER_PAGE)]
            for frame in self.storage[page]:
                self.pageman.memory.pop(frame, None)
        return ids

    def _drop(self, handle: int, keep: int) -> None:
        """Drop the handle's pages from logical page keep on: unmapped (contents
        dropped) and their frames returned."""
        for physical, mapped in enumerate(self.slots):
            if mapped is not None and mapped[0] == handle and mapped[1] >= keep:
                zero_physical(self.pageman, slot_address(physical), EMS_PAGE_SIZE)
                self.slots[physical] = None
        pages = self.handles[handle]
        for page in pages[keep:]:
            for frame in self.storage.pop(page):
                self.pageman.release_frame(frame)
        del pages[keep:]

    def _unmap(self, physical: int) -> None:
        """Save the physical page into its logical page, then show zeros."""
        mapped = self.slots[physical]
        if mapped is None:
            return
        page = self.handles[mapped[0]][mapped[1]]
        for index, frame in enumerate(self.storage[page]):
            self.pageman.copy_frame(
                (slot_address(physical) >> PAGE_SHIFT) + index, frame)
        zero_physical(self.pageman, slot_address(physical), EMS_PAGE_SIZE)
        self.slots[physical] = None

    def _load(self, physical: int, page: int) -> None:
        base = slot_address(physical) >> PAGE_SHIFT
        for index, frame in enumerate(self.storage[page]):
            self.pageman.copy_frame(frame, base + index)

    def _set(self, value: _T, code: int = EMS_SUCCESS) -> _T:
        self.last_status = code
        return value
