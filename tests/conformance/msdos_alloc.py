"""What MS-DOS's own memory routines do, as data, run through DosMemoryManager.Int21h.

Source: microsoft/MS-DOS v4.0/src/DOS/ALLOC.ASM ($ALLOC 48h, $DEALLOC 49h,
$SETBLOCK 4Ah, $AllocOper 58h, Coalesce), its dispatcher DISP.ASM, MS_CODE.ASM
(SYS_RET_OK / SYS_RET_ERR) and MS_TABLE.ASM (the dispatch table); v2.0's
v2.0/source/ALLOC.ASM is the same routine (lines 292-365: $SETBLOCK,
$DEALLOC, $AllocOper as in 4.0). Where MS-DOS 4 is silent (58h AL=02h/03h, the
DOS 5 UMB link) FDOS/kernel kernel/inthndlr.c. Each case cites the lines whose
behaviour it pins down.

A case is a starting chain written directly into conventional memory (no
UMBs: the chain tiles [0800h, A000h)), one INT 21h call with its registers,
and what MS-DOS answers: carry, AX, BX (None: as it was) and the chain read
back (owner, size per block; the types are 'M' ... 'Z'). ``REST`` is the
size that makes the chain end at A000h. A block index in ``es`` means that
block's data segment; in ``ax`` ``Data(k)`` is the data segment of block k of
the chain after the call, ``Mcb(k)`` the MCB segment of block k before it.
``UMB_CASES`` do the same with upper memory blocks [C800h, E000h) behind the
DOS-owned MCB at 9FFFh (MS-DOS 5's layout; MS-DOS 4 has no UMBs, so they
cite FreeDOS's kernel/memmgr.c): both chains written, the link set or not.
``corrupt`` overwrites block k's type byte with 'X'; the chain is then
expected unchanged. ``differs`` names a deliberate deviation of the model
(model/dos_memory.py's docstring): the case runs as a strict xfail.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from model.dos_memory import DosMemoryManager
from model.dos_physical import read_physical, write_physical
from model.registers import Registers
from spec.abi import DEFAULT_PSP, MCB_M, MCB_Z, DosError
from tests.dos_world import make_dos

FIRST, TOP = 0x0800, 0xA000
P, OTHER, F = DEFAULT_PSP, 0x0200, 0  # the current PSP, another owner, free
REST = -1
HIGH = 0x5A5A_0000  # high words a call must keep
A = "v4.0/src/DOS/ALLOC.ASM"


class Data(NamedTuple):
    block: int


class Mcb(NamedTuple):
    block: int


class Case(NamedTuple):
    name: str
    chain: tuple[tuple[int, int], ...]
    ax: int
    carry: bool
    ax_out: int | Data | Mcb
    after: tuple[tuple[int, int], ...] | None
    source: str
    bx: int = 0
    es: int | None = None
    bx_out: int | None = None
    strategy: int = 0
    corrupt: int | None = None
    differs: str = ""


def c(*blocks: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    return blocks


CASES = [
    # -- AH=48h -----------------------------------------------------------------------
    Case("48h_first_fit_lowest_block_split", c((P, 4), (F, 8), (P, 4), (F, 20), (P, REST)),
         0x4800, False, Data(1), c((P, 4), (P, 6), (F, 1), (P, 4), (F, 20), (P, REST)),
         f"{A}: line 224 (FirstArena) and lines 262, 271-281", bx=6),
    Case("48h_best_fit_smallest_lowest_on_tie",
         c((P, 4), (F, 20), (P, 4), (F, 8), (P, 4), (F, 8), (P, REST)), 0x4800, False, Data(3),
         c((P, 4), (F, 20), (P, 4), (P, 6), (F, 1), (P, 4), (F, 8), (P, REST)),
         f"{A}: lines 225-234 (JBE keeps the earlier best) and 264", bx=6, strategy=1),
    Case("48h_last_fit_highest_block_carved_from_its_end",
         c((P, 4), (F, 20), (P, 4), (F, 8), (P, 4), (F, 8), (P, REST)), 0x4800, False, Data(6),
         c((P, 4), (F, 20), (P, 4), (F, 8), (P, 4), (F, 1), (P, 6), (P, REST)),
         f"{A}: lines 235-236, 242-252 (split high) and 275-286", bx=6, strategy=2),
    Case("48h_exact_fit_is_not_split", c((P, 4), (F, 6), (P, REST)), 0x4800, False, Data(1),
         c((P, 4), (P, 6), (P, REST)), f"{A}: line 270 (BX = size: no split)", bx=6),
    Case("48h_last_fit_exact_is_not_split", c((P, 4), (F, 6), (P, REST)), 0x4800, False,
         Data(1), c((P, 4), (P, 6), (P, REST)), f"{A}: line 247", bx=6, strategy=2),
    Case("48h_zero_paragraphs_splits_an_empty_block", c((P, 4), (F, 5), (P, REST)), 0x4800,
         False, Data(1), c((P, 4), (P, 0), (F, 4), (P, REST)),
         f"{A}: line 219 (0 > size never) and lines 271-281", bx=0),
    Case("48h_scan_joins_adjacent_free_blocks_before_the_fit",
         c((P, 4), (F, 5), (F, 5), (P, REST)), 0x4800, False, Data(1),
         c((P, 4), (P, 11), (P, REST)), f"{A}: lines 207-210 and 131-139 (Coalesce)", bx=11),
    Case("48h_scan_joins_a_run_of_three", c((P, 4), (F, 2), (F, 2), (F, 2), (P, REST)), 0x4800,
         False, Data(1), c((P, 4), (P, 8), (P, REST)), f"{A}: line 139 (JMP coalesce)", bx=8),
    Case("48h_scan_goes_on_to_the_z_joining_later_runs",
         c((P, 4), (F, 8), (P, 4), (F, 2), (F, 2), (P, REST)), 0x4800, False, Data(1),
         c((P, 4), (P, 3), (F, 4), (P, 4), (F, 5), (P, REST)),
         f"{A}: lines 182-187 and 237 (the scan continues after a fit)", bx=3),
    Case("48h_best_fit_compares_joined_sizes",
         c((P, 4), (F, 3), (F, 3), (P, 4), (F, 6), (P, REST)), 0x4800, False, Data(3),
         c((P, 4), (F, 7), (P, 4), (P, 6), (P, REST)), f"{A}: lines 208-210 and 225-234",
         bx=6, strategy=1),
    Case("48h_failure_is_8_bx_largest_joined_and_joins_stay",
         c((P, 4), (F, 5), (F, 5), (P, 4), (F, 3), (P, REST)), 0x4800, True,
         DosError.NOT_ENOUGH_MEMORY, c((P, 4), (F, 11), (P, 4), (F, 3), (P, REST)),
         f"{A}: lines 200-205 and 212-216 (alloc_max)", bx=20, bx_out=11),
    Case("48h_probe_ffff_reports_the_largest", c((P, 4), (F, 5), (P, 4), (F, REST)), 0x4800,
         True, DosError.NOT_ENOUGH_MEMORY, c((P, 4), (F, 5), (P, 4), (F, REST)),
         f"{A}: lines 125-127 (Coalesce stops at 'Z') and 200-205", bx=0xFFFF,
         bx_out=TOP - FIRST - 17),
    Case("48h_nothing_free_bx_0", c((P, 4), (P, REST)), 0x4800, True,
         DosError.NOT_ENOUGH_MEMORY, c((P, 4), (P, REST)),
         f"{A}: line 171 (alloc_max <- 0) and 200-205", bx=1, bx_out=0),
    Case("48h_bad_first_signature_is_7", c((P, 4), (F, 5), (P, REST)), 0x4800, True,
         DosError.ARENA_TRASHED, None, f"{A}: lines 173-174 and 192-194", bx=1, corrupt=0),
    Case("48h_bad_signature_after_a_used_block_is_7", c((P, 4), (P, 5), (P, REST)), 0x4800,
         True, DosError.ARENA_TRASHED, None, f"{A}: lines 186-194", bx=1, corrupt=2),
    Case("48h_bad_signature_met_while_joining_is_7", c((P, 4), (F, 5), (P, REST)), 0x4800,
         True, DosError.ARENA_TRASHED, None, f"{A}: lines 128-129 and 208-209", bx=1,
         corrupt=2),
    # -- AH=49h -----------------------------------------------------------------------
    Case("49h_writes_owner_0_and_leaves_free_neighbours_apart",
         c((P, 4), (F, 5), (P, 6), (F, 7), (P, REST)), 0x4900, False, Mcb(2),
         c((P, 4), (F, 5), (F, 6), (F, 7), (P, REST)),
         f"{A}: lines 349-356 (only owner <- 0; AX = ES - 1)", es=2),
    Case("49h_of_a_block_between_used_blocks", c((P, 4), (P, 6), (P, REST)), 0x4900, False,
         Mcb(1), c((P, 4), (F, 6), (P, REST)), f"{A}: lines 349-356", es=1),
    Case("49h_double_free_succeeds", c((P, 4), (F, 5), (P, REST)), 0x4900, False, Mcb(1),
         c((P, 4), (F, 5), (P, REST)), f"{A}: lines 352-354 (no owner check)", es=1),
    Case("49h_of_a_block_of_another_owner", c((P, 4), (OTHER, 6), (P, REST)), 0x4900, False,
         Mcb(1), c((P, 4), (F, 6), (P, REST)), f"{A}: line 354 (no owner check)", es=1),
    Case("49h_bad_signature_is_9", c((P, 4), (P, 6), (P, REST)), 0x4900, True,
         DosError.INVALID_BLOCK, c((P, 4), (P, 6), (P, REST)), f"{A}: lines 352-353, 358-360",
         es=1 + 0x10000 * 3),
    # -- AH=4Ah -----------------------------------------------------------------------
    Case("4ah_shrink_splits_off_a_free_block", c((P, 4), (P, 10), (P, REST)), 0x4A00, False,
         Data(1), c((P, 4), (P, 4), (F, 5), (P, REST)),
         f"{A}: lines 327-330 then 266-281 (alloc_get_size)", bx=4, es=1),
    Case("4ah_gives_the_block_to_the_caller", c((P, 4), (OTHER, 10), (P, REST)), 0x4A00, False,
         Data(1), c((P, 4), (P, 4), (F, 5), (P, REST)),
         f"{A}: lines 283-286 (alloc_set_owner: owner <- CurrentPDB)", bx=4, es=1),
    Case("4ah_shrink_joins_the_free_blocks_after_it_first",
         c((P, 4), (P, 10), (F, 3), (F, 3), (P, REST)), 0x4A00, False, Data(1),
         c((P, 4), (P, 4), (F, 13), (P, REST)), f"{A}: lines 324-325 (Coalesce) and 266-281",
         bx=4, es=1),
    Case("4ah_grow_into_the_following_free_block", c((P, 4), (P, 4), (F, 10), (P, REST)),
         0x4A00, False, Data(1), c((P, 4), (P, 8), (F, 6), (P, REST)),
         f"{A}: lines 324-330 and 266-281", bx=8, es=1),
    Case("4ah_grow_across_several_free_blocks", c((P, 4), (P, 4), (F, 3), (F, 3), (P, REST)),
         0x4A00, False, Data(1), c((P, 4), (P, 12), (P, REST)),
         f"{A}: lines 131-139 (Coalesce loops) and 270", bx=12, es=1),
    Case("4ah_grow_too_far_made_as_large_as_possible", c((P, 4), (P, 4), (F, 5), (P, REST)),
         0x4A00, True, DosError.NOT_ENOUGH_MEMORY, c((P, 4), (P, 10), (P, REST)),
         f"{A}: lines 325-331 then 200-205 (BX = the joined size)", bx=20, es=1, bx_out=10),
    Case("4ah_grow_too_far_keeps_another_owner", c((P, 4), (OTHER, 4), (F, 5), (P, REST)),
         0x4A00, True, DosError.NOT_ENOUGH_MEMORY, c((P, 4), (OTHER, 10), (P, REST)),
         f"{A}: lines 325-331 (alloc_fail writes no owner)", bx=20, es=1, bx_out=10),
    Case("4ah_same_size_joins_then_splits_the_free_run_back_off",
         c((P, 4), (P, 4), (F, 2), (F, 2), (P, REST)), 0x4A00, False, Data(1),
         c((P, 4), (P, 4), (F, 5), (P, REST)), f"{A}: lines 324-330 and 266-281", bx=4, es=1),
    Case("4ah_of_a_free_block_allocates_it_to_the_caller", c((P, 4), (F, 10), (P, REST)),
         0x4A00, False, Data(1), c((P, 4), (P, 4), (F, 5), (P, REST)),
         f"{A}: lines 311-331 (no owner check) and 283-286", bx=4, es=1),
    Case("4ah_bad_signature_is_7", c((P, 4), (P, 6), (P, REST)), 0x4A00, True,
         DosError.ARENA_TRASHED, c((P, 4), (P, 6), (P, REST)),
         f"{A}: lines 317-321 (setblock_bad -> alloc_trashed)", bx=1, es=1 + 0x10000 * 3),
    Case("4ah_bad_signature_met_while_joining_is_7", c((P, 4), (P, 4), (P, REST)), 0x4A00,
         True, DosError.ARENA_TRASHED, None, f"{A}: lines 128-129 and 325-326", bx=8, es=1,
         corrupt=2),
    Case("4ah_splits_low_whatever_the_strategy", c((P, 4), (P, 10), (P, REST)), 0x4A00, False,
         Data(1), c((P, 4), (P, 4), (F, 5), (P, REST)),
         f"{A}: line 330 (JBE alloc_get_size: never alloc_do_split_high)", bx=4, es=1,
         strategy=2),
    Case("4ah_grow_the_z_block_nothing_to_join", c((P, 4), (P, REST)), 0x4A00, True,
         DosError.NOT_ENOUGH_MEMORY, c((P, 4), (P, REST)),
         f"{A}: lines 125-127 and 327-331", bx=0xFFFF, es=1, bx_out=TOP - FIRST - 4 - 2),
    # -- AH=58h -----------------------------------------------------------------------
    Case("58h_00_returns_the_strategy_ah_0", c((F, REST),), 0x5800, False, 0x0001,
         c((F, REST),), f"{A}: lines 382-385", strategy=1),
    Case("58h_01_sets_the_strategy_ax_kept", c((F, REST),), 0x5801, False, 0x5801,
         c((F, REST),), f"{A}: lines 386-388", bx=0x0002),
    Case("58h_01_takes_bl_only", c((F, REST),), 0x5801, False, 0x5801, c((F, REST),),
         f"{A}: line 387 (MOV [AllocMethod],BL)", bx=0x7F01),
    Case("58h_01_any_bl_is_accepted", c((F, REST),), 0x5801, False, 0x5801, c((F, REST),),
         f"{A}: lines 386-388 (no check)", bx=0x0005,
         differs="deliberate: DOS 5's set only (FreeDOS kernel/inthndlr.c: line 1216)"),
    Case("58h_04_is_error_1", c((F, REST),), 0x5804, True, DosError.INVALID_FUNCTION,
         c((F, REST),), f"{A}: lines 377-381"),
    Case("58h_ff_is_error_1", c((F, REST),), 0x58FF, True, DosError.INVALID_FUNCTION,
         c((F, REST),), f"{A}: lines 377-381"),
    Case("58h_02_without_umbs_reports_unlinked", c((F, REST),), 0x5802, False, 0x5800,
         c((F, REST),), "kernel/inthndlr.c: lines 1222-1224 (FreeDOS; DOS 5)"),
    Case("58h_03_without_umbs_is_error_1", c((F, REST),), 0x5803, True,
         DosError.INVALID_FUNCTION, c((F, REST),),
         "kernel/inthndlr.c: lines 1226-1235 (FreeDOS: always error if no UMBs)", bx=1),
    # -- the dispatcher -----------------------------------------------------------------
    Case("ah_past_the_table_sets_al_0", c((P, 4), (F, REST)), 0x6D42, False, 0x6D00,
         c((P, 4), (F, REST)), "v4.0/src/DOS/DISP.ASM: lines 237-238 and 197-200", bx=1),
    Case("ah_ff_sets_al_0", c((P, 4), (F, REST)), 0xFF42, False, 0xFF00,
         c((P, 4), (F, REST)), "v4.0/src/DOS/DISP.ASM: lines 197-200", bx=1),
    Case("cpm_no_op_18h_sets_al_0", c((P, 4), (F, REST)), 0x1842, False, 0x1800,
         c((P, 4), (F, REST)), "v4.0/src/DOS/MS_CODE.ASM: lines 313-315 (CPMFUNC)"),
]


def sizes(chain: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    """(owner, size) with REST resolved so the chain ends at A000h."""
    used = sum(size + 1 for _, size in chain if size != REST)
    return [(owner, TOP - FIRST - used - 1 if size == REST else size) for owner, size in chain]


def segments(blocks: list[tuple[int, int]]) -> list[int]:
    at, out = FIRST, []
    for _, size in blocks:
        out.append(at)
        at += size + 1
    return out


def write_chain(dos: DosMemoryManager, chain: tuple[tuple[int, int], ...]) -> list[int]:
    blocks = sizes(chain)
    at = segments(blocks)
    for index, ((owner, size), segment) in enumerate(zip(blocks, at, strict=True)):
        typ = MCB_Z if index == len(blocks) - 1 else MCB_M
        header = bytes((typ,)) + owner.to_bytes(2, "little") + size.to_bytes(2, "little")
        write_physical(dos.pageman, segment * 16, header + bytes(11))
    return at


def memory(dos: DosMemoryManager) -> bytes:
    return read_physical(dos.pageman, FIRST * 16, (TOP - FIRST) * 16)


@pytest.mark.parametrize("case", [
    pytest.param(case, marks=pytest.mark.xfail(strict=True, reason=case.differs))
    if case.differs else case for case in CASES], ids=[case.name for case in CASES])
def test_msdos_alloc(case: Case) -> None:
    dos = make_dos(umb_start=0, umb_end=0)
    dos.strategy = case.strategy
    at = write_chain(dos, case.chain)
    if case.corrupt is not None:
        write_physical(dos.pageman, at[case.corrupt] * 16, b"X")
    before = memory(dos)
    es = 0 if case.es is None else (at[case.es % 0x10000] + 1 + case.es // 0x10000)
    regs = Registers(eax=HIGH | case.ax, ebx=HIGH | case.bx, ecx=HIGH | 0x1234, es=es,
                     ds=0x4321)
    out = dos.Int21h(regs)
    after = dos.walk(FIRST)
    if isinstance(case.ax_out, Data):
        assert after is not None
        ax = after[case.ax_out.block].segment + 1
    else:
        ax = at[case.ax_out.block] if isinstance(case.ax_out, Mcb) else case.ax_out
    bx = case.bx if case.bx_out is None else case.bx_out
    assert out == regs.set(ax=ax, bx=bx, carry=case.carry)
    if case.after is None:
        assert memory(dos) == before
        return
    assert after is not None
    assert [(b.owner, b.size) for b in after] == sizes(case.after)
    assert [b.type for b in after] == [MCB_M] * (len(after) - 1) + [MCB_Z]


# -- with UMBs: the DOS 5 link (FreeDOS where MS-DOS 4 has nothing) ----------------------

UMB_START, UMB_END, HEAD = 0xC800, 0xE000, 0x9FFF
M_ = "kernel/memmgr.c"


class UmbCase(NamedTuple):
    name: str
    low: tuple[tuple[int, int], ...]
    umb: tuple[tuple[int, int], ...]
    linked: bool
    strategy: int
    bx: int
    carry: bool
    ax_out: int
    low_after: tuple[tuple[int, int], ...]
    umb_after: tuple[tuple[int, int], ...]
    source: str
    bx_out: int | None = None
    ax: int = 0x4800


UMB_CASES = [
    UmbCase("linked_first_fit_goes_on_into_the_umbs", c((P, REST),), c((F, REST),), True, 0,
            0x10, False, UMB_START + 1, c((P, REST),), c((P, 0x10), (F, REST)),
            f"{M_}: lines 137-190 (the scan runs to the 'Z', past the UMB root)"),
    UmbCase("linked_last_fit_takes_the_highest_block", c((P, 4), (F, REST)), c((F, REST),),
            True, 2, 0x10, False, UMB_END - 0x10, c((P, 4), (F, REST)), c((F, REST), (P, 0x10)),
            f"{M_}: lines 156-161 (last fit: the last match) and 216-228"),
    UmbCase("linked_best_fit_takes_the_smaller_umb", c((P, 4), (F, REST)), c((F, REST),), True,
            1, 0x10, False, UMB_START + 1, c((P, 4), (F, REST)), c((P, 0x10), (F, REST)),
            f"{M_}: lines 168-174 (best fit over the whole chain)"),
    UmbCase("linked_scan_joins_free_umbs", c((P, REST),), c((F, 5), (F, 5), (P, REST)), True, 0,
            11, False, UMB_START + 1, c((P, REST),), c((P, 11), (P, REST)),
            f"{M_}: lines 143-146 (joinMCBs while scanning)"),
    UmbCase("high_only_fails_with_the_largest_umb", c((P, 4), (F, REST)),
            c((P, 4), (F, 8), (P, REST)), True, 0x40, 0x10, True, 8, c((P, 4), (F, REST)),
            c((P, 4), (F, 8), (P, REST)), f"{M_}: lines 128-134 and 195-205 (no second scan)",
            bx_out=8),
    UmbCase("high_first_falls_back_to_low_memory", c((P, 4), (F, REST)),
            c((P, 4), (F, 8), (P, REST)), True, 0x80, 0x10, False, FIRST + 6,
            c((P, 4), (P, 0x10), (F, REST)), c((P, 4), (F, 8), (P, REST)),
            f"{M_}: lines 195-202 (bit 7: search again from the first MCB)"),
    UmbCase("high_bits_without_the_link_take_low_memory", c((P, 4), (F, REST)), c((F, REST),),
            False, 0x40, 0x10, False, FIRST + 6, c((P, 4), (P, 0x10), (F, REST)),
            c((F, REST),), f"{M_}: lines 128-134 (UMBs only while uppermem_link)"),
    UmbCase("ax_5802h_reports_the_link", c((P, 4), (F, REST)), c((F, REST),), True, 0, 0,
            False, 0x5801, c((P, 4), (F, REST)), c((F, REST),),
            "kernel/inthndlr.c: lines 1222-1224", ax=0x5802),
]


def write_area(dos: DosMemoryManager, chain: tuple[tuple[int, int], ...], start: int, end: int,
               last: int) -> None:
    used = sum(size + 1 for _, size in chain if size != REST)
    at = start
    for index, (owner, size) in enumerate(chain):
        size = end - start - used - 1 if size == REST else size
        typ = last if index == len(chain) - 1 else MCB_M
        header = bytes((typ,)) + owner.to_bytes(2, "little") + size.to_bytes(2, "little")
        write_physical(dos.pageman, at * 16, header + bytes(11))
        at += size + 1


def resolved(chain: tuple[tuple[int, int], ...], start: int, end: int) -> list[tuple[int, int]]:
    used = sum(size + 1 for _, size in chain if size != REST)
    return [(owner, end - start - used - 1 if size == REST else size) for owner, size in chain]


@pytest.mark.parametrize("case", UMB_CASES, ids=[case.name for case in UMB_CASES])
def test_msdos_alloc_with_umbs(case: UmbCase) -> None:
    dos = make_dos()
    assert dos.SetUmbLink(case.linked) and dos.SetAllocationStrategy(case.strategy)
    write_area(dos, case.low, FIRST, HEAD, MCB_M if case.linked else MCB_Z)
    write_area(dos, case.umb, UMB_START, UMB_END, MCB_Z)
    regs = Registers(eax=HIGH | case.ax, ebx=HIGH | case.bx, es=0x1234)
    out = dos.Int21h(regs)
    bx = case.bx if case.bx_out is None else case.bx_out
    assert out == regs.set(ax=case.ax_out, bx=bx, carry=case.carry)
    chain, umbs = dos.walk(FIRST), dos.umb_chain()
    assert chain is not None and umbs is not None
    low = [(b.owner, b.size) for b in chain if b.segment < HEAD]
    assert low == resolved(case.low_after, FIRST, HEAD)
    assert [(b.owner, b.size) for b in umbs[1:]] == resolved(case.umb_after, UMB_START, UMB_END)
