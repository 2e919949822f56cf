"""HmaMemory: the High Memory Area's 65,520 bytes (linear 100000h-10FFEFh) as
memory an XMS move (function 0Bh, handle 0) reads and writes.

Real-mode code reaches the HMA through FFFF:0010-FFFF:FFFF with A20 on. In
this 32-bit model the physical frames right above 1 MB are the kernel's
(model/memory_subsystem.py: "the kernel's image and placement arena sit right
above 1 MB"), so the HMA's bytes are kept as EMS keeps a logical page's
(model/ems.py): in frames taken from the PageManager (owner HELD) when the
XMS driver claims its pool, ``frames`` in HMA order; byte k of the HMA is
byte k % 4096 of ``frames[k // 4096]``. ``spans`` maps a linear range to
(frame, start, end) pieces: [HMA_START, HMA_END) to these frames, the rest
(conventional memory below, the XMS pool above) to the identity frames
(model/dos_physical.py).
"""

from __future__ import annotations

from model.dos_physical import spans as physical_spans
from model.page_manager import PageManager
from spec.abi import HMA_END, HMA_START, PAGE_SIZE, FrameOwner

#: Frames holding the HMA (the last one's final 16 bytes are not the HMA's).
HMA_FRAMES = -(-(HMA_END - HMA_START) // PAGE_SIZE)


class HmaMemory:
    """The HMA's bytes in HELD frames of the PageManager."""

    def __init__(self, pageman: PageManager) -> None:
        self.pageman = pageman
        self.frames: list[int] = []

    def claim(self) -> bool:
        """Take HMA_FRAMES free frames (zeroed); False, nothing taken, when there are
        not enough."""
        if self.pageman.free_count() < HMA_FRAMES:
            return False
        self.frames = [self.pageman.take_frame(FrameOwner.HELD) for _ in range(HMA_FRAMES)]
        for frame in self.frames:
            self.pageman.memory.pop(frame, None)
        return True

    def spans(self, address: int, length: int) -> list[tuple[int, int, int]]:
        """(frame, start, end) pieces of the linear range [address, address + length)
        (pre: 0 <= address, the frames claimed)."""
        end = address + length
        low, high = min(end, HMA_START), max(address, HMA_END)
        pieces = physical_spans(address, low - address) if address < low else []
        offset, stop = max(address, HMA_START) - HMA_START, min(end, HMA_END) - HMA_START
        while offset < stop:
            index, start = divmod(offset, PAGE_SIZE)
            take = min(stop - offset, PAGE_SIZE - start)
            pieces.append((self.frames[index], start, start + take))
            offset += take
        return pieces + (physical_spans(high, end - high) if high < end else [])

    def read(self, address: int, length: int) -> bytes:
        return self.pageman.read_span(self.spans(address, length))

    def write(self, address: int, data: bytes) -> None:
        self.pageman.write_span(self.spans(address, len(data)), data)
