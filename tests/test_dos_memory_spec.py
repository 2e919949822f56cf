"""DOS memory in z3 (spec/dos_memory.py, proofs/dos_memory.py): the
obligations, a few proved steps, the steps' verdicts on concrete states, the
concrete-state builder, and the broken variants' rows."""

from __future__ import annotations

import pytest
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

from model.dos_memory import DosMemoryManager
from model.page_manager import PageManager
from proofs.broken_variants import VARIANTS
from proofs.dos_memory import (
    EMS_OS_LAYER,
    FIRST,
    FULL_ONLY,
    HIMEM_LAYER,
    LAYER,
    PLAIN_LAYER,
    UMB_START,
    dos_states,
    himem_states,
    obligations,
)
from proofs.inductive.layered import Layer, prove
from proofs.obligation import Kind
from spec import dos_memory as dm
from spec import himem as hm
from spec.abi import (
    A20_MAX_COUNT,
    CONVENTIONAL_TOP,
    EMM_MAP_ALREADY_SAVED,
    EMM_NO_SAVED_MAP,
    EMM_SAVED_CONTEXT,
    EMS_INVALID_HANDLE,
    EMS_INVALID_LOGICAL,
    EMS_INVALID_PHYSICAL,
    EMS_TOO_MANY_PAGES,
    EMS_ZERO_PAGES,
    HIMEM_A20_ERROR,
    HIMEM_HMA_IN_USE,
    HIMEM_HMA_NOT_ALLOCATED,
    HIMEM_HMA_TOO_SMALL,
    MCB_M,
    MCB_Z,
    STRATEGIES,
    UMB_HEAD,
    XMS_BASE,
    XMS_INVALID_HANDLE,
    XMS_INVALID_LENGTH,
    XMS_INVALID_SOURCE_HANDLE,
    XMS_INVALID_SOURCE_OFFSET,
    XMS_LOCKED,
    XMS_NOT_LOCKED,
    DosError,
)
from spec.dos_memory import McbView, XmsView, concrete_dos, violated
from spec.state import Ref

CLAIMS = ["DOS-1", "DOS-2", "DOS-3", "DOS-4", "DOS-5"]
M, Z = MCB_M, MCB_Z


def valid(claim: Ref) -> bool:
    solver = z3.Solver()
    solver.add(z3.Not(claim))
    return bool(solver.check() == z3.unsat)


def i(value: int) -> Ref:
    return z3.IntVal(value)


@pytest.fixture(scope="module")
def conv() -> dm.DosState:
    """[FIRST] 0x100 taken, a 0x200 hole, 0x80 taken, the free tail to A000h."""
    return dos_states()[0][1]


@pytest.fixture(scope="module")
def busy() -> dm.DosState:
    return dos_states()[1][1]


def status_is(step: dm.DosStep, code: int) -> bool:
    return valid(z3.Implies(step.assume, step.status == code))


def equals(term: Ref, expected: int) -> bool:
    return valid(term == expected)


def test_obligations_one_per_call_and_claim() -> None:
    ids = [o.id for o in obligations()]
    public = [op.name for layer in (LAYER, PLAIN_LAYER) for op in layer.operations
              if not op.internal]
    himem = [op.name for op in HIMEM_LAYER.operations]
    ems_os = [op.name for op in EMS_OS_LAYER.operations]
    expected = {f"dos_memory.{name}.{claim}" for name in public for claim in CLAIMS}
    expected |= {f"dos_memory.{name}.DOS-6" for name in himem}
    expected |= {f"dos_memory.{name}.{claim}" for name in ems_os for claim in ("DOS-7", "DOS-8")}
    non_vacuous = {f"dos_memory.{name}.NON-VACUOUS" for name in [*public, *himem, *ems_os]}
    claims = {"dos_memory.XmsFree.DOS-4F", "dos_memory.RequestHma.DOS-6H",
              "dos_memory.OsFunctionSet.DOS-7K", "dos_memory.AlternateMapRegisterSet.DOS-7D"}
    assert set(ids) == expected | claims | non_vacuous
    assert len(ids) == len(set(ids)) == (28 * 5 + 1 + 28 + 7 + 1 + 7
                                         + 2 * 2 + 2 + 2)
    assert FULL_ONLY <= set(ids)


@pytest.mark.parametrize(("layer", "operation", "claim"), [
    (LAYER, "SetBlock", "DOS-1"), (LAYER, "Coalesce", "DOS-1"), (LAYER, "FreeDosMemory", "DOS-3"),
    (PLAIN_LAYER, "SetUmbLink", "DOS-2"), (PLAIN_LAYER, "XmsReallocate", "DOS-4"),
    (PLAIN_LAYER, "EmsMapPage", "DOS-5"), (PLAIN_LAYER, "XmsFree", "DOS-4F"),
    (HIMEM_LAYER, "LocalDisableA20", "DOS-6"), (HIMEM_LAYER, "RequestHma", "DOS-6H")])
def test_step_proved(layer: Layer, operation: str, claim: str) -> None:
    verdict = prove(layer, layer.operation(operation), claim, "quick")
    assert verdict.kind is Kind.PROVED, verdict.detail


def test_reachable_states_satisfy_every_invariant() -> None:
    for name, state in dos_states():
        assert violated(state) == [], name


# -- allocation strategies on a concrete chain ------------------------------------------

HOLE, TAIL = FIRST + 0x101, FIRST + 0x101 + 0x201 + 0x81


@pytest.mark.parametrize(("strategy", "paragraphs", "block", "segment"), [
    (dm.FIRST_FIT, 0x10, HOLE, HOLE + 1),  # the lowest block that fits
    (dm.BEST_FIT, 0x10, HOLE, HOLE + 1),  # the smaller of the two
    (dm.LAST_FIT, 0x10, TAIL, UMB_HEAD - 0x10),  # the highest, from its end
    (dm.BEST_FIT, 0x300, TAIL, TAIL + 1),  # only the tail is large enough
])
def test_strategy_picks_exactly_one_block(conv: dm.DosState, strategy: int, paragraphs: int,
                                          block: int, segment: int) -> None:
    s = conv.but(strategy=i(strategy))
    b = z3.Int("b")
    step = dm.AllocateDosMemory(s, i(paragraphs), b, i(0x99))
    assert valid(z3.Implies(z3.And(step.assume, step.ok), b == block))
    chosen = dm.AllocateDosMemory(s, i(paragraphs), i(block), i(0x99))
    assert equals(chosen.status, 0) and equals(chosen.result, segment)
    assert violated(chosen.changed) == []


def test_allocation_too_large_is_error_8(conv: dm.DosState) -> None:
    step = dm.AllocateDosMemory(conv, i(0xFFFF), z3.Int("b"), i(0x99))
    assert status_is(step, DosError.NOT_ENOUGH_MEMORY)
    assert equals(step.result, 0)
    assert step.post is not None and valid(step.post.size == conv.size)


def test_high_only_takes_an_upper_block(busy: dm.DosState) -> None:
    b = z3.Int("b")
    step = dm.AllocateDosMemory(busy, i(0x10), b, i(0x99))
    assert valid(z3.Implies(z3.And(step.assume, step.ok), b == UMB_START + 0x41))


def test_free_writes_owner_0_and_coalesce_joins_later(conv: dm.DosState) -> None:
    """ALLOC.ASM:354 (49h: owner 0 only), 123-139 (Coalesce joins the run after)."""
    third = HOLE + 0x201
    step = dm.FreeDosMemory(conv, i(third + 1))
    post = step.changed
    assert equals(step.status, 0)
    assert valid(z3.And(post.is_mcb[HOLE], post.is_mcb[third], post.is_mcb[TAIL],
                        post.owner[third] == 0, post.size[third] == conv.size[third]))
    assert violated(post) == []
    joined = dm.Coalesce(post, i(HOLE), i(UMB_HEAD))
    assert equals(joined.status, 0) and valid(joined.assume)
    assert valid(z3.And(joined.changed.is_mcb[HOLE], z3.Not(joined.changed.is_mcb[third]),
                        z3.Not(joined.changed.is_mcb[TAIL]), joined.changed.owner[HOLE] == 0,
                        joined.changed.typ[HOLE] == Z, dm.nxt(joined.changed, HOLE) == UMB_HEAD))
    assert violated(joined.changed) == []
    short = dm.Coalesce(post, i(HOLE), i(TAIL))  # stops inside the run: not a valid choice
    assert not valid(short.assume)


@pytest.mark.parametrize("segment", [FIRST + 5, 0, UMB_HEAD + 1, CONVENTIONAL_TOP + 3])
def test_free_of_a_non_block_is_error_9(conv: dm.DosState, segment: int) -> None:
    assert status_is(dm.FreeDosMemory(conv, i(segment)), DosError.INVALID_BLOCK)


def test_free_of_a_free_block_succeeds_and_changes_nothing(conv: dm.DosState) -> None:
    step = dm.FreeDosMemory(conv, i(HOLE + 1))
    assert equals(step.status, 0)
    assert valid(z3.And(step.changed.is_mcb == conv.is_mcb, step.changed.size == conv.size,
                        step.changed.owner == conv.owner))


def test_resize_of_a_free_block_gives_it_to_the_caller(conv: dm.DosState) -> None:
    """ALLOC.ASM:311-331 (no owner check), 283-286 (owner <- CurrentPDB); a
    segment that is not a block's data is 7 (317-321)."""
    step = dm.ResizeDosMemory(conv, i(HOLE + 1), i(1), i(0x99))
    assert equals(step.status, 0)
    assert valid(z3.And(step.changed.owner[HOLE] == 0x99, step.changed.size[HOLE] == 1,
                        step.changed.owner[HOLE + 2] == 0))
    assert violated(step.changed) == []
    assert status_is(dm.ResizeDosMemory(conv, i(FIRST + 5), i(1), i(0x99)),
                     DosError.ARENA_TRASHED)


def test_resize_grow_reports_the_largest_size(conv: dm.DosState) -> None:
    """Too big: error 8 with the joined size; the join stays (ALLOC.ASM:325-331)."""
    joined = dm.Coalesce(conv, i(FIRST), i(HOLE + 0x201))
    assert equals(joined.status, 0) and valid(joined.assume)
    state = joined.changed
    assert violated(state) == []
    step = dm.ResizeDosMemory(state, i(FIRST + 1), i(0x400), i(0x99))
    assert status_is(step, DosError.NOT_ENOUGH_MEMORY)
    assert equals(step.result, 0x100 + 0x200 + 1)
    assert valid(z3.And(step.post.size == state.size, step.post.owner == state.owner))
    grown = dm.ResizeDosMemory(state, i(FIRST + 1), i(0x301), i(0x99))
    assert equals(grown.status, 0) and violated(grown.changed) == []
    assert valid(z3.And(grown.post.is_mcb[FIRST], grown.post.size[FIRST] == 0x301,
                        grown.post.owner[FIRST] == 0x99, z3.Not(grown.post.is_mcb[HOLE]),
                        grown.post.is_mcb[HOLE + 0x201]))


def test_resize_grow_without_a_free_neighbour_fails_unchanged(conv: dm.DosState) -> None:
    third = HOLE + 0x201  # followed by the free tail
    tail_taken = dm.AllocateDosMemory(conv, i(0x10), i(TAIL), i(0x70)).changed
    stuck = dm.ResizeDosMemory(tail_taken, i(third + 1), i(0x90), i(0x99))
    assert status_is(stuck, DosError.NOT_ENOUGH_MEMORY) and equals(stuck.result, 0x80)
    assert valid(z3.And([z3.And(stuck.post.size[m] == tail_taken.size[m],
                                stuck.post.is_mcb[m] == tail_taken.is_mcb[m])
                         for m in (third, TAIL, TAIL + 0x11)]))


def test_resize_shrink_after_the_join_leaves_one_free_rest(conv: dm.DosState) -> None:
    third = HOLE + 0x201
    joined = dm.Coalesce(conv, i(third), i(UMB_HEAD)).changed
    step = dm.ResizeDosMemory(joined, i(third + 1), i(0x10), i(0x99))
    post = step.changed
    assert equals(step.status, 0)
    assert valid(z3.And(post.is_mcb[third + 0x11], post.owner[third + 0x11] == 0,
                        dm.nxt(post, third + 0x11) == UMB_HEAD, post.owner[third] == 0x99))
    assert violated(post) == []


def test_strategy_and_link_errors(conv: dm.DosState) -> None:
    assert status_is(dm.SetAllocationStrategy(conv, i(3)), DosError.INVALID_FUNCTION)
    assert status_is(dm.SetAllocationStrategy(conv, i(0x41)), 0)
    bare = dos_states()[2][1]
    assert status_is(dm.SetUmbLink(bare, z3.BoolVal(True)), DosError.INVALID_FUNCTION)
    linked = dm.SetUmbLink(conv, z3.BoolVal(True))
    assert valid(linked.changed.typ[TAIL] == M) and violated(linked.changed) == []


# -- XMS and EMS --------------------------------------------------------------------

def test_xms_codes(busy: dm.DosState) -> None:
    assert status_is(dm.XmsFree(busy, i(2)), XMS_LOCKED)
    assert status_is(dm.XmsFree(busy, i(7)), XMS_INVALID_HANDLE)
    assert status_is(dm.XmsUnlock(busy, i(1)), XMS_NOT_LOCKED)
    assert equals(dm.XmsLock(busy, i(1)).result, XMS_BASE)
    assert status_is(dm.XmsMove(busy, i(3), i(1), i(0), i(2), i(0)), XMS_INVALID_LENGTH)
    assert status_is(dm.XmsMove(busy, i(2), i(9), i(0), i(2), i(0)), XMS_INVALID_SOURCE_HANDLE)
    assert status_is(dm.XmsMove(busy, i(2), i(2), i(16 * 1024 + 2), i(0), i(0)),
                     XMS_INVALID_SOURCE_OFFSET)  # the start beyond the block
    assert status_is(dm.XmsMove(busy, i(2), i(2), i(16 * 1024), i(0), i(0)),
                     XMS_INVALID_LENGTH)  # the start inside, the range past the end
    assert status_is(dm.XmsMove(busy, i(2), i(9), i(-2), i(2), i(0)),
                     XMS_INVALID_SOURCE_OFFSET)  # a negative offset before the handle
    assert status_is(dm.XmsReallocate(busy, i(2), i(1), i(XMS_BASE), z3.BoolVal(False)),
                     XMS_LOCKED)


def test_xms_move_handle_0_reaches_the_hma(busy: dm.DosState) -> None:
    """Handle 0's seg:off range may end at 10FFF0h, the HMA's end, not past it
    (xms.cpp lines 340-347, HimemX.asm lines 1164-1182): A7h, and never A4h/A6h."""
    hma, last = 0xFFFF_0010, 0xFFFF_FFF0
    assert status_is(dm.XmsMove(busy, i(0x800), i(0), i(hma), i(1), i(0)), 0)
    assert status_is(dm.XmsMove(busy, i(16), i(1), i(0), i(0), i(last)), 0)
    assert status_is(dm.XmsMove(busy, i(0), i(0), i(0xFFFF_FFFF), i(0), i(0)), 0)
    assert status_is(dm.XmsMove(busy, i(18), i(1), i(0), i(0), i(last)), XMS_INVALID_LENGTH)
    assert status_is(dm.XmsMove(busy, i(2), i(0), i(0xFFFF_FFFF), i(1), i(0)),
                     XMS_INVALID_LENGTH)
    assert status_is(dm.XmsMove(busy, i(2), i(0), i(1 << 32), i(1), i(0)),
                     XMS_INVALID_SOURCE_OFFSET)
    assert status_is(dm.XmsMove(busy, i(1 << 32), i(0), i(0), i(1), i(0)), XMS_INVALID_LENGTH)


def test_ems_codes(busy: dm.DosState) -> None:
    no = z3.BoolVal(False)
    k = z3.Int("k")
    ident = z3.Lambda([k], k)
    assert status_is(dm.EmsAllocate(busy, i(0), i(5), ident, ident, no, no), EMS_ZERO_PAGES)
    assert status_is(dm.EmsAllocateAny(busy, i(0), i(5), ident, ident, no, no), 0)
    assert status_is(dm.EmsAllocate(busy, i(17), i(5), ident, ident, no, no), EMS_TOO_MANY_PAGES)
    assert status_is(dm.EmsMapPage(busy, i(9), i(0), i(0)), EMS_INVALID_HANDLE)
    assert status_is(dm.EmsMapPage(busy, i(1), i(0), i(4)), EMS_INVALID_PHYSICAL)
    assert status_is(dm.EmsMapPage(busy, i(1), i(2), i(0)), EMS_INVALID_LOGICAL)


def test_ems_map_moves_a_shown_page(busy: dm.DosState) -> None:
    step = dm.EmsMapPage(busy, i(1), i(1), i(3))  # page (1, 1) shows in slot 0
    post = step.changed
    assert valid(z3.And(z3.Not(post.slot_used[0]), post.slot_used[3],
                        post.mapped_at[1, 1] == 3))
    assert violated(post) == []


def test_ems_deallocate_unmaps(busy: dm.DosState) -> None:
    post = dm.EmsDeallocate(busy, i(1)).changed
    assert valid(z3.And(z3.Not(post.elive[1]), z3.Not(post.slot_used[0]), post.sowner[0] == -1))
    assert violated(post) == []


def test_ems_deallocate_with_a_saved_mapping_is_86h(busy: dm.DosState) -> None:
    """LIM 4.0 function 6: 86h while 47h's context is saved; 48h empties it."""
    assert status_is(dm.EmsDeallocate(busy, i(2)), EMM_SAVED_CONTEXT)
    assert status_is(dm.EmsSaveMap(busy, i(2)), EMM_MAP_ALREADY_SAVED)
    restored = dm.EmsRestoreMap(busy, i(2))
    assert status_is(restored, 0)
    assert status_is(dm.EmsRestoreMap(restored.changed, i(2)), EMM_NO_SAVED_MAP)
    assert status_is(dm.EmsDeallocate(restored.changed, i(2)), 0)


# -- concrete states from plain data ----------------------------------------------------

def chain(*blocks: tuple[int, int, int, int]) -> list[McbView]:
    return [McbView(*block) for block in blocks]


def build(blocks: list[McbView], **changes: object) -> dm.DosState:
    args: dict[str, object] = dict(first=0x800, umb_start=0xC000, umb_end=0xC000, linked=False,
                                   strategy=0, xms={}, xms_end=0x200000, ems_handles={},
                                   ems_slots=[None] * 4, ems_total=8)
    args.update(changes)
    return concrete_dos(blocks, **args)  # type: ignore[arg-type]


GOOD = [(0x800, M, 8, 0x10), (0x811, M, 0, 0x20), (0x832, Z, 0x60, 0xA000 - 0x833)]
#: With UMBs: the conventional chain ends at 9FFFh, the UMB head (skipped) follows.
HEAD = (0x9FFF, M, 8, 0xF800 - 0xA000)
LOW = [*GOOD[:2], (0x832, Z, 0x60, 0x9FFF - 0x833), HEAD]


def test_concrete_good_state() -> None:
    assert violated(build(chain(*GOOD))) == []


@pytest.mark.parametrize(("blocks", "changes", "broken"), [
    ([*GOOD[:2], (0x832, Z, 0x60, 0xA000 - 0x832)], {}, {"DOS-1", "DOS-2"}),
    ([*GOOD[:2], (0x832, M, 0x60, 0xA000 - 0x833)], {}, {"DOS-2"}),
    ([(0x800, M, 0, 0x10), *GOOD[1:]], {}, set()),  # two free neighbours: MS-DOS's lazy join
    ([*LOW, (0xF800, Z, 0, 0x7FF)], {"umb_start": 0xF800, "umb_end": 0x10000}, set()),
    ([*GOOD, (0xF800, Z, 0, 0x7FF)], {"umb_start": 0xF800, "umb_end": 0x10000},
     {"DOS-1", "DOS-2"}),  # the conventional chain runs into the UMB head
    ([*LOW, (0xF800, Z, 0, 0x800)], {"umb_start": 0xF800, "umb_end": 0x10001}, {"DOS-3"}),
    ([*LOW, (0xE000, Z, 0, 0x7FF)], {"umb_start": 0xE000, "umb_end": 0xE800}, {"DOS-3"}),
    (GOOD, {"xms": {1: XmsView(0x100000, 4, 0)}}, {"DOS-4"}),
    (GOOD, {"xms": {1: XmsView(0x110000, 4, 0), 2: XmsView(0x110C00, 1, 0)}}, {"DOS-4"}),
    (GOOD, {"xms": {1: XmsView(0x110000, 4, 0), 2: XmsView(0x111000, 1, 3)}}, set()),
    (GOOD, {"ems_handles": {1: [0, 1]}, "ems_slots": [(1, 0), (1, 0), None, None]}, {"DOS-5"}),
    (GOOD, {"ems_handles": {1: [0, 1], 2: [1]}}, {"DOS-5"}),
    (GOOD, {"ems_handles": {1: [0, 9]}}, {"DOS-5"}),
    (GOOD, {"ems_handles": {1: [0, 1]}, "ems_slots": [(1, 1), None, None, (1, 0)]}, set()),
])
def test_concrete_states_name_what_they_break(blocks: list[tuple[int, int, int, int]],
                                              changes: dict[str, object],
                                              broken: set[str]) -> None:
    assert set(violated(build(chain(*blocks), **changes))) == broken


def test_concrete_accepts_type_characters() -> None:
    blocks = [McbView(0x800, M, 0, 0x97FF)]
    walked = [b._replace(type=Z) for b in blocks]
    assert violated(build(walked)) == []
    text = [(0x800, "Z", 0, 0x97FF)]
    assert violated(build([McbView(*t) for t in text])) == []  # type: ignore[arg-type]


def test_every_dos_invariant_has_a_variant() -> None:
    dos = [v for v in VARIANTS if v.layer is not None and v.layer.startswith("dos_memory")]
    assert {v.invariant for v in dos} == {*CLAIMS, "DOS-4F", "DOS-6", "DOS-6H", "DOS-7",
                                            "DOS-7K", "DOS-7D", "DOS-8"}
    assert {v.name for v in dos} >= {"dos-alloc-crosses-a000", "dos-coalesce-keeps-inner-mcbs",
                                     "ems-page-in-two-slots", "xms-free-locked-block",
                                     "umb-past-area-end"}


# -- the model's states satisfy the spec's invariants ------------------------------------

OPS = st.one_of(
    st.tuples(st.just("alloc"), st.sampled_from([0, 1, 0x10, 0x100, 0x800, 0xFFFF])),
    st.tuples(st.just("free"), st.integers(0, 7)),
    st.tuples(st.just("resize"), st.integers(0, 7), st.sampled_from([0, 4, 0x40, 0x400])),
    st.tuples(st.just("strategy"), st.sampled_from(sorted(STRATEGIES))),
    st.tuples(st.just("link"), st.booleans()),
    st.tuples(st.just("xalloc"), st.sampled_from([0, 4, 64])),
    st.tuples(st.just("xlock"), st.integers(1, 3)),
    st.tuples(st.just("xfree"), st.integers(1, 3)),
    st.tuples(st.just("ealloc"), st.integers(1, 3)),
    st.tuples(st.just("emap"), st.integers(0, 3), st.sampled_from([0, 1, 0xFFFF]),
              st.integers(0, 3)),
    st.tuples(st.just("efree"), st.integers(0, 3)))


def model_state(d: DosMemoryManager) -> dm.DosState:
    blocks = {b.segment: b for b in (d.walk(d.first_segment) or []) + (d.umb_chain() or [])}
    return concrete_dos(blocks.values(), first=d.first_segment, umb_start=d.umb_start,
                        umb_end=d.umb_end, linked=d.umb_linked, strategy=d.strategy,
                        xms=d.xms.handles, xms_end=d.xms.pool_end, ems_handles=d.ems.handles,
                        ems_slots=d.ems.slots, ems_total=d.ems.total_pages)


@settings(max_examples=8, deadline=None)
@given(st.lists(OPS, max_size=12))
def test_model_states_satisfy_the_spec(ops: list[tuple[object, ...]]) -> None:
    pm = PageManager()
    pm.InitializePhysicalMemory(0x100000, 0x800000)
    d = DosMemoryManager(pm)
    segments: list[int] = []
    for op in ops:
        name, *args = op
        a = [int(x) for x in args]  # type: ignore[call-overload]
        if name == "alloc" and (segment := d.AllocateDosMemory(a[0])):
            segments.append(segment)
        elif name == "free" and segments:
            d.FreeDosMemory(segments[a[0] % len(segments)])
        elif name == "resize" and segments:
            d.ResizeDosMemory(segments[a[0] % len(segments)], a[1])
        elif name == "strategy":
            d.SetAllocationStrategy(a[0])
        elif name == "link":
            d.SetUmbLink(bool(a[0]))
        elif name == "xalloc":
            d.xms.XmsAllocate(a[0])
        elif name == "xlock":
            d.xms.XmsLock(a[0])
        elif name == "xfree":
            d.xms.XmsFree(a[0])
        elif name == "ealloc":
            d.ems.EmsAllocate(a[0])
        elif name == "emap":
            d.ems.EmsMap(a[0], a[1], a[2])
        elif name == "efree":
            d.ems.EmsDeallocate(a[0])
    assert violated(model_state(d)) == []


# -- HIMEM's HMA and A20 (spec/himem.py) -------------------------------------------------

def test_himem_steps_answer_as_himem() -> None:
    """The spec's statuses and results are HIMEM's (DOSBox-staging src/ints/xms.cpp
    lines 185-224, 513-578): 91h, 92h, 93h, 82h at 0 and at the limit, 94h as the
    result of a disable that leaves the count above 0."""
    loaded, busy, flagged = (state for _, state in himem_states())
    assert status_is(hm.RequestHma(loaded, i(0x3FF)), HIMEM_HMA_TOO_SMALL)
    assert status_is(hm.RequestHma(busy, i(0xFFFF)), HIMEM_HMA_IN_USE)
    assert status_is(hm.ReleaseHma(loaded), HIMEM_HMA_NOT_ALLOCATED)
    assert status_is(hm.LocalDisableA20(loaded), HIMEM_A20_ERROR)
    top = loaded.but(a20_count=i(A20_MAX_COUNT))
    assert status_is(hm.LocalEnableA20(top), HIMEM_A20_ERROR)
    still = hm.LocalDisableA20(busy)
    assert status_is(still, 0) and valid(still.result == z3.BoolVal(True))
    assert equals(still.changed.a20_count, 1)
    off = hm.GlobalDisableA20(flagged)
    assert status_is(off, HIMEM_A20_ERROR) and hm.violated(flagged) == []
    assert valid(hm.QueryA20(busy).result == z3.BoolVal(True))
    assert hm.violated(loaded.but(a20_count=i(-1))) == ["DOS-6"]
