"""Conventional memory and UMBs: the MCB chains of DosMemoryManager (seed section 6).

World (tests/dos_world.py): 4 MB, first MB reserved, chain from 0x0800, UMBs
[0xC800, 0xE000) behind the DOS-owned head at 0x9FFF. Every rule of the
module docstring has a test with exact codes; failures are compared with a
snapshot of all state (frames, owners, memory bytes, flags).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from model.dos_memory import DosMemoryManager, Mcb
from model.dos_physical import write_physical
from model.page_manager import PageManager
from spec.abi import (
    CONVENTIONAL_TOP,
    DEFAULT_PSP,
    MCB_M,
    MCB_Z,
    OWNER_DOS,
    UMB_HEAD,
    DosError,
    FrameOwner,
)
from tests.dos_world import check_chains, joined, make_dos, snapshot

FIRST = 0x0800
TOTAL = 0x9FFF - FIRST - 1  # the one free block at start


def free_sizes(blocks: list[Mcb]) -> list[int]:
    return [b.size for b in blocks if b.owner == 0]


def test_initial_layout() -> None:
    dos = make_dos()
    assert dos.walk(FIRST) == [Mcb(FIRST, MCB_Z, 0, TOTAL, bytes(8))]
    assert dos.umb_chain() == [
        Mcb(UMB_HEAD, MCB_M, OWNER_DOS, 0xC800 - 0xA000, b"SC".ljust(8, b"\0")),
        Mcb(0xC800, MCB_Z, 0, 0xE000 - 0xC800 - 1, bytes(8))]
    assert dos.GetDosMemorySize() == CONVENTIONAL_TOP and dos.last_error == 0
    assert dos.GetDosLargestBlock() == TOTAL
    check_chains(dos)


def test_without_umbs_the_chain_ends_at_a000() -> None:
    dos = make_dos(umb_start=0, umb_end=0)
    assert dos.walk(FIRST) == [Mcb(FIRST, MCB_Z, 0, 0xA000 - FIRST - 1, bytes(8))]
    assert not dos.SetUmbLink(True) and dos.last_error == DosError.INVALID_FUNCTION


def test_first_fit_takes_lowest_and_splits() -> None:
    dos = make_dos()
    assert dos.AllocateDosMemory(0x10) == FIRST + 1
    assert dos.walk(FIRST) == [Mcb(FIRST, MCB_M, DEFAULT_PSP, 0x10, bytes(8)),
                               Mcb(FIRST + 0x11, MCB_Z, 0, TOTAL - 0x11, bytes(8))]


def holes(dos: DosMemoryManager) -> list[int]:
    """Allocate a, b, c, d, e of 0x30, 0x10, 0x20, 0x10, 0x30; free b and d (0x10 holes)
    and a (0x30): free blocks of 0x30 (a), 0x10 (b), 0x10 (d) and the rest."""
    segs = [dos.AllocateDosMemory(n) for n in (0x30, 0x10, 0x20, 0x10, 0x30)]
    for s in (segs[0], segs[1], segs[3]):
        assert dos.FreeDosMemory(s)
    return segs


def test_best_fit_smallest_then_lowest() -> None:
    dos = make_dos()
    segs = holes(dos)
    # 49h joins nothing (ALLOC.ASM:354): a and b stay apart until the scan joins
    # them (0x30 + 1 + 0x10 = 0x41); d = 0x10: best fit for 8 is d.
    assert free_sizes(dos.walk(FIRST) or []) == [0x30, 0x10, 0x10, TOTAL - 0xA5]
    assert dos.SetAllocationStrategy(1)
    assert dos.AllocateDosMemory(8) == segs[3]
    assert dos.AllocateDosMemory(0x10) == segs[0]  # 0x41 beats the rest; lowest


def test_best_fit_tie_is_lowest() -> None:
    dos = make_dos()
    segs = [dos.AllocateDosMemory(n) for n in (0x10, 1, 0x10, 1)]
    assert dos.FreeDosMemory(segs[0]) and dos.FreeDosMemory(segs[2])
    assert dos.SetAllocationStrategy(1)
    assert dos.AllocateDosMemory(0x10) == segs[0]


def test_last_fit_carves_from_the_end_of_the_highest_block() -> None:
    dos = make_dos()
    assert dos.SetAllocationStrategy(2)
    seg = dos.AllocateDosMemory(0x10)
    assert seg == 0x9FFF - 0x10
    assert dos.walk(FIRST) == [Mcb(FIRST, MCB_M, 0, TOTAL - 0x11, bytes(8)),
                               Mcb(seg - 1, MCB_Z, DEFAULT_PSP, 0x10, bytes(8))]


def test_zero_paragraphs_allocates_an_empty_block() -> None:
    dos = make_dos()
    assert dos.AllocateDosMemory(0) == FIRST + 1
    assert (dos.walk(FIRST) or [])[0] == Mcb(FIRST, MCB_M, DEFAULT_PSP, 0, bytes(8))


def test_probe_ffff_returns_8_and_largest_without_change() -> None:
    dos = make_dos()
    dos.AllocateDosMemory(0x100)
    before = snapshot(dos)
    assert dos.AllocateDosMemory(0xFFFF) == 0
    assert dos.last_error == DosError.NOT_ENOUGH_MEMORY
    assert dos.largest_available == TOTAL - 0x101 == dos.GetDosLargestBlock()
    assert snapshot(dos)[:5] == before[:5]


def test_free_joins_nothing_and_the_next_scan_joins_all() -> None:
    """ALLOC.ASM:354 (49h writes owner 0 only), 207-208 (48h joins as it scans,
    and keeps the joins when it fails)."""
    dos = make_dos()
    a, b, c = (dos.AllocateDosMemory(0x10) for _ in range(3))
    assert dos.FreeDosMemory(a) and dos.FreeDosMemory(c)
    assert dos.FreeDosMemory(b)
    assert [(m.type, m.owner, m.size) for m in dos.walk(FIRST) or []] == [
        (MCB_M, 0, 0x10), (MCB_M, 0, 0x10), (MCB_M, 0, 0x10), (MCB_Z, 0, TOTAL - 0x33)]
    assert dos.GetDosLargestBlock() == TOTAL  # counted joined, nothing written
    assert len(dos.walk(FIRST) or []) == 4
    assert dos.AllocateDosMemory(0xFFFF) == 0 and dos.largest_available == TOTAL
    assert dos.walk(FIRST) == [Mcb(FIRST, MCB_Z, 0, TOTAL, bytes(8))]


def test_free_of_a_free_block_succeeds_unchanged() -> None:
    dos = make_dos()
    a = dos.AllocateDosMemory(0x10)
    dos.AllocateDosMemory(0x10)
    assert dos.FreeDosMemory(a)
    before = snapshot(dos)
    assert dos.FreeDosMemory(a) and dos.last_error == 0
    assert snapshot(dos) == before


@pytest.mark.parametrize("segment", [FIRST + 2, FIRST, 0x9000, 0xA000, 0xC802, 0])
def test_free_of_a_non_mcb_segment_is_error_9(segment: int) -> None:
    dos = make_dos()
    dos.AllocateDosMemory(0x10)
    before = snapshot(dos)
    assert not dos.FreeDosMemory(segment) and dos.last_error == DosError.INVALID_BLOCK
    assert snapshot(dos) == before


def test_resize_shrink_splits_and_merges_with_free_successor() -> None:
    dos = make_dos()
    a = dos.AllocateDosMemory(0x40)
    assert dos.ResizeDosMemory(a, 0x10)
    assert dos.walk(FIRST) == [Mcb(FIRST, MCB_M, DEFAULT_PSP, 0x10, bytes(8)),
                               Mcb(FIRST + 0x11, MCB_Z, 0, TOTAL - 0x11, bytes(8))]


def test_resize_grow_takes_following_free_block() -> None:
    dos = make_dos()
    a, b, _ = (dos.AllocateDosMemory(0x10) for _ in range(3))
    assert dos.FreeDosMemory(b)
    assert dos.ResizeDosMemory(a, 0x18)
    assert (dos.walk(FIRST) or [])[:2] == [Mcb(FIRST, MCB_M, DEFAULT_PSP, 0x18, bytes(8)),
                                           Mcb(FIRST + 0x19, MCB_M, 0, 8, bytes(8))]
    assert dos.ResizeDosMemory(a, 0x21)  # exactly a + its free neighbour
    assert (dos.walk(FIRST) or [])[0] == Mcb(FIRST, MCB_M, DEFAULT_PSP, 0x21, bytes(8))
    check_chains(dos)


def test_resize_failure_is_8_and_grows_to_the_maximum() -> None:
    """RBIL AH=4Ah (DOS 2.1-6.0): too big a request leaves the block as large as possible."""
    dos = make_dos()
    a, b, c = (dos.AllocateDosMemory(0x10) for _ in range(3))
    assert dos.FreeDosMemory(b)
    assert not dos.ResizeDosMemory(a, 0x22)
    assert dos.last_error == DosError.NOT_ENOUGH_MEMORY and dos.largest_available == 0x21
    assert (dos.walk(FIRST) or [])[:2] == [Mcb(FIRST, MCB_M, DEFAULT_PSP, 0x21, bytes(8)),
                                           Mcb(c - 1, MCB_M, DEFAULT_PSP, 0x10, bytes(8))]
    check_chains(dos)
    before = snapshot(dos)  # already at its maximum: error 8 again, nothing changes
    assert not dos.ResizeDosMemory(a, 0x22)
    assert dos.last_error == DosError.NOT_ENOUGH_MEMORY and dos.largest_available == 0x21
    assert snapshot(dos) == before


def test_resize_of_an_unknown_block_is_7_and_of_a_free_one_takes_it() -> None:
    """ALLOC.ASM:317-321 (bad signature: arena trashed), 311-331 (no owner check)
    and 283-286 (the block becomes the caller's)."""
    dos = make_dos()
    a = dos.AllocateDosMemory(0x10)
    dos.AllocateDosMemory(0x10)
    assert dos.FreeDosMemory(a)
    before = snapshot(dos)
    assert not dos.ResizeDosMemory(a + 1, 4) and dos.last_error == DosError.ARENA_TRASHED
    assert snapshot(dos) == before
    dos.psp = 0x0777
    assert dos.ResizeDosMemory(a, 4) and dos.last_error == 0
    assert [(m.owner, m.size) for m in (dos.walk(FIRST) or [])[:2]] == [(0x0777, 4), (0, 0xB)]


def test_resize_at_the_same_size_takes_the_block_and_joins_the_free_run() -> None:
    dos = make_dos()
    a, b, c, _ = (dos.AllocateDosMemory(0x10) for _ in range(4))
    assert dos.FreeDosMemory(b) and dos.FreeDosMemory(c)
    dos.psp = 0x0777
    assert dos.ResizeDosMemory(a, 0x10)
    assert [(m.owner, m.size) for m in (dos.walk(FIRST) or [])[:3]] == [
        (0x0777, 0x10), (0, 0x21), (DEFAULT_PSP, 0x10)]


def test_split_writes_only_type_owner_and_size() -> None:
    """ALLOC.ASM:276-281: the new MCB's bytes 5-15 are what memory held."""
    dos = make_dos()
    a = dos.AllocateDosMemory(0x20)
    write_physical(dos.pageman, (a + 7) * 16, b"ABCDEFGHIJKLMNOP")
    assert dos.ResizeDosMemory(a, 7)
    mcb = (dos.walk(FIRST) or [])[1]
    assert (mcb.segment, mcb.owner, mcb.name) == (a + 7, 0, b"IJKLMNOP")


@pytest.mark.parametrize("corrupt", ["type", "past_a000", "short_z"])
def test_corrupt_chain_is_error_7_and_never_followed(corrupt: str) -> None:
    dos = make_dos()
    a = dos.AllocateDosMemory(0x10)
    mcb = (a - 1) * 16
    if corrupt == "type":
        write_physical(dos.pageman, mcb, b"X")
    elif corrupt == "past_a000":
        write_physical(dos.pageman, mcb + 3, (0xA000 - FIRST).to_bytes(2, "little"))
    else:
        write_physical(dos.pageman, (a + 0x10) * 16 + 3, (5).to_bytes(2, "little"))
    assert dos.walk(FIRST) is None
    before = snapshot(dos)
    calls: list[Callable[[], object]] = [lambda: dos.AllocateDosMemory(1),
                                         lambda: dos.FreeDosMemory(a),
                                         lambda: dos.ResizeDosMemory(a, 1),
                                         dos.GetDosLargestBlock]
    for call in calls:
        assert not call() and dos.last_error == DosError.ARENA_TRASHED
    assert snapshot(dos) == before


def test_strategy_values() -> None:
    dos = make_dos()
    for value in (0, 1, 2, 0x40, 0x41, 0x42, 0x80, 0x81, 0x82):
        assert dos.SetAllocationStrategy(value) and dos.GetAllocationStrategy() == value
    before = snapshot(dos)
    for bad in (3, 0x43, 0x100, 0xC0):
        assert not dos.SetAllocationStrategy(bad) and dos.last_error == DosError.INVALID_FUNCTION
    assert snapshot(dos) == before


def test_umb_link_rewrites_last_conventional_mcb() -> None:
    dos = make_dos()
    assert not dos.GetUmbLink()
    assert dos.SetUmbLink(True) and dos.GetUmbLink()
    chain = dos.walk(FIRST) or []
    assert chain[0].type == MCB_M and chain[1].segment == UMB_HEAD and len(chain) == 3
    assert dos.SetUmbLink(False)
    assert dos.walk(FIRST) == [Mcb(FIRST, MCB_Z, 0, TOTAL, bytes(8))]


def test_high_strategies_need_the_link() -> None:
    dos = make_dos()
    assert dos.SetAllocationStrategy(0x40)
    assert dos.AllocateDosMemory(4) == FIRST + 1  # link off: low memory
    assert dos.SetUmbLink(True)
    assert dos.AllocateDosMemory(4) == 0xC801
    assert dos.AllocateDosMemory(0x2000) == 0 and dos.last_error == DosError.NOT_ENOUGH_MEMORY
    assert dos.largest_available == 0xE000 - 0xC800 - 1 - 4 - 1
    assert dos.SetAllocationStrategy(0x80)
    assert dos.AllocateDosMemory(0x2000) == FIRST + 6  # high then low
    assert dos.SetAllocationStrategy(0x82)
    assert dos.AllocateDosMemory(1) == 0xE000 - 1  # last fit in the UMB area
    assert dos.SetAllocationStrategy(0)
    assert dos.AllocateDosMemory(1) < 0x9FFF  # low first fit: conventional first
    assert dos.SetAllocationStrategy(2)  # linked: the scan runs on into the UMBs
    assert dos.AllocateDosMemory(1) == 0xE000 - 3
    assert dos.SetAllocationStrategy(0)
    big = max(b.size for b in check_chains(dos)[0] if b.owner == 0)
    assert dos.AllocateDosMemory(big - 0x10) < 0x9FFF
    assert dos.AllocateDosMemory(0x100) > 0xC800  # nothing fits low: on into the UMBs
    check_chains(dos)


def test_umb_blocks_free_and_resize_and_head_is_9() -> None:
    dos = make_dos()
    dos.SetUmbLink(True)
    dos.SetAllocationStrategy(0x40)
    u = dos.AllocateDosMemory(0x10)
    assert dos.ResizeDosMemory(u, 0x20) and dos.FreeDosMemory(u)
    assert [(m.type, m.owner, m.size) for m in (dos.umb_chain() or [])[1:]] == [
        (MCB_M, 0, 0x20), (MCB_Z, 0, 0xE000 - 0xC800 - 0x22)]
    before = snapshot(dos)
    assert not dos.FreeDosMemory(0xA000) and dos.last_error == DosError.INVALID_BLOCK
    assert snapshot(dos) == before


def test_hostile_arguments_change_nothing() -> None:
    dos = make_dos()
    dos.AllocateDosMemory(0x10)
    before = snapshot(dos)
    assert not dos.SetUmbLink(1) and dos.last_error == DosError.INVALID_PARAMETER  # type: ignore[arg-type]
    assert not dos.SetAllocationStrategy(True) and dos.last_error == DosError.INVALID_PARAMETER
    for bad in (-1, 0x10000, 1.0, "1", None, 2**40):
        assert dos.AllocateDosMemory(bad) == 0  # type: ignore[arg-type]
        assert dos.last_error == DosError.INVALID_PARAMETER
        assert not dos.FreeDosMemory(bad)  # type: ignore[arg-type]
        assert not dos.ResizeDosMemory(bad, 1)  # type: ignore[arg-type]
        assert not dos.ResizeDosMemory(FIRST + 1, bad)  # type: ignore[arg-type]
        assert not dos.SetAllocationStrategy(bad)  # type: ignore[arg-type]
        assert not dos.SetUmbLink(bad)  # type: ignore[arg-type]
        assert dos.walk(bad) is None  # type: ignore[arg-type]
    assert snapshot(dos) == before


def test_bad_configuration_is_not_ready() -> None:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 0x400000)
    for config in ({"first_segment": 0x9FFF}, {"umb_start": 0xD000, "umb_end": 0xE800},
                   {"xms_end": 0x10000000}, {"ems_pages": -1},
                   # a UMB bound that is no segment is refused, not read as "no UMBs"
                   {"umb_start": 0xD000, "umb_end": 0x10001}, {"umb_start": -1},
                   # no XMS handle at all, or more than a 16-bit count: no driver
                   {"xms_handles": 0}, {"xms_handles": 0x10000}):
        dos = DosMemoryManager(pm, **config)
        assert not dos.ready and dos.last_error == DosError.NOT_READY
        assert dos.AllocateDosMemory(1) == 0 and dos.last_error == DosError.NOT_READY
        assert dos.frames() == set()
    assert pm.frames.used == 0x100  # nothing claimed


def test_frames_cover_low_mb_and_pool() -> None:
    dos = make_dos()
    frames = dos.frames()
    assert set(range(0x100)) <= frames
    assert set(range(0x110, 0x200)) <= frames
    assert all(dos.pageman.owner[f] == FrameOwner.HELD for f in range(0x110, 0x200))
    assert all(dos.pageman.owner[f] == FrameOwner.RESERVED for f in range(0x100))


class ChainMachine(RuleBasedStateMachine):
    """Random strategies, link changes, allocations, frees, resizes: the chains stay valid,
    an allocation succeeds exactly when some searched free block fits, and the block
    chosen is the strategy's."""

    def __init__(self) -> None:
        super().__init__()
        self.dos = make_dos()
        self.live: list[int] = []

    @rule(value=st.sampled_from(sorted({0, 1, 2, 0x40, 0x41, 0x42, 0x80, 0x81, 0x82})))
    def strategy(self, value: int) -> None:
        assert self.dos.SetAllocationStrategy(value)

    @rule(linked=st.booleans())
    def link(self, linked: bool) -> None:
        assert self.dos.SetUmbLink(linked)

    @rule(size=st.one_of(st.integers(0, 0x40), st.integers(0, 0x9000)))
    def allocate(self, size: int) -> None:
        dos = self.dos
        low, high = check_chains(dos)
        low, high = joined(low), joined(high)  # the scan joins free runs (ALLOC.ASM:207-208)
        areas = [low]  # each scan's blocks, in chain order
        if dos.umb_linked:
            areas = ([high] if dos.strategy & 0x40 else [high, low + high]
                     if dos.strategy & 0x80 else [low + high])
        fitting = [[b for b in a if b.owner == 0 and b.size >= size] for a in areas]
        seg = dos.AllocateDosMemory(size)
        candidates = next((f for f in fitting if f), [])
        if not candidates:
            assert seg == 0 and dos.last_error == DosError.NOT_ENOUGH_MEMORY
            assert dos.largest_available == max(
                (b.size for a in areas for b in a if b.owner == 0), default=0)
            return
        fit = dos.strategy & 3
        chosen = (min(candidates, key=lambda b: (b.size, b.segment)) if fit == 1
                  else candidates[-1] if fit == 2 else candidates[0])
        expected = chosen.segment + 1 + (chosen.size - size if fit == 2 else 0)
        assert seg == expected and dos.last_error == 0
        self.live.append(seg)

    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        if self.live:
            seg = self.live.pop(data.draw(st.integers(0, len(self.live) - 1)))
            assert self.dos.FreeDosMemory(seg)

    @rule(data=st.data(), size=st.integers(0, 0x200))
    def resize(self, data: st.DataObject, size: int) -> None:
        if self.live:
            seg = self.live[data.draw(st.integers(0, len(self.live) - 1))]
            low, high = check_chains(self.dos)
            area = next(a for a in (low, high) if any(b.segment == seg - 1 for b in a))
            index = next(i for i, b in enumerate(area) if b.segment == seg - 1)
            most = area[index].size
            for after in area[index + 1:]:  # Coalesce: every free block after it
                if after.owner != 0:
                    break
                most += after.size + 1
            if not self.dos.ResizeDosMemory(seg, size):
                assert self.dos.last_error == DosError.NOT_ENOUGH_MEMORY
                assert self.dos.largest_available == most < size
                grown = [b for a in check_chains(self.dos) for b in a if b.segment == seg - 1]
                assert grown[0].size == most  # RBIL: made as large as possible

    @invariant()
    def chains_valid(self) -> None:
        low, high = check_chains(self.dos)
        owned = {b.segment + 1 for b in low + high if b.owner != 0}
        assert owned == set(self.live)


TestChainMachine = ChainMachine.TestCase
TestChainMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
