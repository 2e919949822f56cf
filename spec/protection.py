"""Protection (seed section 8) at the page-table level: PROT-1..3.

The MMU's rule itself is ``spec.virtual_memory.allowed`` (SDM Vol. 3A 4.6,
CR0.WP=1, no NX): the model's access decisions are checked against it step by
step, and CrossHair confirms the model's ``access_fault`` states the same
rule. The invariants below are what that rule must never let through.
"""

from __future__ import annotations

import z3

from spec.state import (
    FRAME,
    MAPPED,
    SLOT,
    Ref,
    State,
    is_directory,
    is_table,
    kernel_slot,
    present,
    user,
    walk,
)


def prot_1(s: State) -> Ref:
    """PROT-1: whatever user mode can reach through a live directory is a page
    mapped for it in user space: never a kernel page, a reserved frame or a
    paging structure."""
    d = z3.Const("d", FRAME)
    i, j = z3.Consts("i j", SLOT)
    pde, pte, mapped = walk(s, d, i, j)
    reachable = z3.And(s.paging, is_directory(s, d), mapped, user(pde), user(pte))
    return z3.ForAll([d, i, j], z3.Implies(
        reachable, z3.And(z3.Not(kernel_slot(i)), s.owner[z3.Extract(31, 12, pte)] == MAPPED)))


def prot_2(s: State) -> Ref:
    """PTE bits never more permissive than the space they map: a kernel table
    (one linked at a kernel slot) holds no user PTE (PROT-2)."""
    t = z3.Const("t", FRAME)
    j = z3.Const("j", SLOT)
    return z3.ForAll([t, j], z3.Implies(
        z3.And(is_table(s, t), kernel_slot(s.table_slot[t]), present(s.pte[t][j])),
        z3.Not(user(s.pte[t][j]))))


def prot_3(s: State) -> Ref:
    """PROT-3: user mode never reaches a supervisor page: every kernel-space PDE
    of every directory is supervisor."""
    d = z3.Const("d", FRAME)
    i = z3.Const("i", SLOT)
    return z3.ForAll([d, i], z3.Implies(
        z3.And(is_directory(s, d), kernel_slot(i), present(s.pde[d][i])),
        z3.Not(user(s.pde[d][i]))))


INVARIANTS = {"PROT-1": prot_1, "PROT-2": prot_2, "PROT-3": prot_3}
