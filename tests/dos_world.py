"""Shared world for the DOS tests: 4 MB of physical memory, the first MB reserved."""

from __future__ import annotations

from typing import Any

from model.dos_memory import DosMemoryManager, Mcb
from model.page_manager import PageManager
from spec.abi import CONVENTIONAL_TOP, MCB_M, MCB_Z, OWNER_FREE


def make_dos(**config: Any) -> DosMemoryManager:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 0x400000)
    dos = DosMemoryManager(pm, **config)
    assert dos.ready
    return dos


def snapshot(dos: DosMemoryManager) -> tuple[object, ...]:
    pm = dos.pageman
    return (bytes(pm.owner), pm.frames.used,
            {frame: bytes(page) for frame, page in pm.memory.items()},
            dos.strategy, dos.umb_linked, dos.largest_available,
            dict(dos.xms.handles), {h: list(p) for h, p in dos.ems.handles.items()},
            list(dos.ems.slots), {k: list(v) for k, v in dos.ems.storage.items()},
            vars(dos.xms.hma).copy(), {h: list(v) for h, v in dos.ems.saved.items()},
            dict(dos.ems.names))


def check_area(blocks: list[Mcb], start: int, end: int) -> None:
    """Blocks tile [start, end), 'M' ... 'Z'-or-linked, no two adjacent free blocks."""
    assert blocks[0].segment == start
    for block, after in zip(blocks, blocks[1:], strict=False):
        assert block.type == MCB_M
        assert after.segment == block.segment + block.size + 1
        assert not (block.owner == OWNER_FREE and after.owner == OWNER_FREE)
    assert blocks[-1].segment + blocks[-1].size + 1 == end


def check_chains(dos: DosMemoryManager) -> tuple[list[Mcb], list[Mcb]]:
    """DOS-1..3 on the model's memory; returns (conventional, UMB blocks)."""
    chain = dos.walk(dos.first_segment)
    assert chain is not None
    high = dos.umb_chain()
    assert high is not None
    if dos.umb_linked:
        assert chain[-len(high):] == high
        low = chain[:-len(high)]
    else:
        low = chain
        assert low[-1].type == MCB_Z
    check_area(low, dos.first_segment, dos.conv_end)
    assert dos.conv_end <= CONVENTIONAL_TOP
    if high:
        check_area(high[1:], dos.umb_start, dos.umb_end)
        assert high[-1].type == MCB_Z
    return low, high[1:]
