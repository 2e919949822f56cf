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
            dict(dos.ems.names), dos.ems.alternate_area, dos.ems.access_key,
            dos.ems.keys_issued, dos.ems.os_enabled)


def check_area(blocks: list[Mcb], start: int, end: int) -> None:
    """Blocks tile [start, end), 'M' ... 'Z'-or-linked. Adjacent free blocks are
    allowed: MS-DOS joins them only while AH=48h/4Ah scan (ALLOC.ASM:123-139)."""
    assert blocks[0].segment == start
    for block, after in zip(blocks, blocks[1:], strict=False):
        assert block.type == MCB_M
        assert after.segment == block.segment + block.size + 1
    assert blocks[-1].segment + blocks[-1].size + 1 == end


def joined(blocks: list[Mcb]) -> list[Mcb]:
    """The blocks as AH=48h's scan leaves them: each run of free blocks one block."""
    out: list[Mcb] = []
    for block in blocks:
        if out and block.owner == OWNER_FREE and out[-1].owner == OWNER_FREE:
            out[-1] = out[-1]._replace(size=block.segment + block.size - out[-1].segment,
                                       type=block.type)
        else:
            out.append(block)
    return out


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
