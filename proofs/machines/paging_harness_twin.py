"""The paging harness's judgement of a page-manager call, on the Python twins of the steps.

:func:`accepts` is what :class:`proofs.machines.paging_harness.HarnessCore`'s
``call`` decides for the page manager's calls (``PageManagerCalls``: the same
arguments substituted, the same choice read from the reply), evaluated on
:mod:`proofs.abstractions.page_manager_twin`'s concrete states instead of z3
terms: the reported status is the step's, the reply its result, the guarded
``assume`` holds, and the reported post-state equals the step's successor on
every real field. It only ever accepts: True when all of that holds; False
(any difference, an operation without a twin, a value the twin does not
evaluate) hands the call to the z3 step, which gives the verdict and names
what differs. tests/test_page_manager_twin.py checks that a harness with the
twin gives the z3 verdict on valid, corrupted and wrongly answered calls.
"""

from __future__ import annotations

from collections.abc import Mapping

from proofs.abstractions import page_manager_twin as tw
from proofs.abstractions.paging import Snapshot
from spec.abi import NO_FRAME, PAGE_SHIFT, ErrorCode

#: The bool/word kind of each twinned call's reply (PageManagerCalls' reply_claim).
KINDS = {"InitializePhysicalMemory": "bool", "RequestFrame": "word", "FreeFrame": "bool",
         "FirstFreeFrame": "word", "GetFrameCount": "word", "GetFreeFrameCount": "word",
         "GetUsedFrameCount": "word"}
#: What the harness asks the spec about a value it cannot represent
#: (proofs/machines/paging_expect.py's UNALIGNED).
UNALIGNED = 1


def _substitute(value: object, limit: int, replacement: int) -> int:
    """paging_expect.substitute: value when it fits the sort, else replacement."""
    return value if type(value) is int and 0 <= value < limit else replacement


def _chosen(reply: object) -> int:
    """The frame a RequestFrame/FirstFreeFrame reply names, as the harness reads it."""
    frame = reply >> PAGE_SHIFT if isinstance(reply, int) and reply != NO_FRAME else 0
    return frame & (tw.FRAMES - 1)


def _arguments(operation: str, args: Mapping[str, object], reply: object) -> tuple[int, ...]:
    """The step's arguments as PageManagerCalls' expects give them."""
    if operation == "InitializePhysicalMemory":
        return (_substitute(args["mem_start"], 1 << 32, 0xFFFFFFFF),
                _substitute(args["mem_end"], 1 << 33, 0))
    if operation == "RequestFrame":
        return (_chosen(reply),)
    if operation == "FreeFrame":
        return (_substitute(args["frame_addr"], 1 << 32, UNALIGNED),)
    if operation == "FirstFreeFrame":
        return (_chosen(reply),)
    return ()


def _reply_holds(reply: object, result: int | bool | None, kind: str) -> bool:
    """paging_harness.reply_claim on values."""
    if result is None:
        return True
    if kind == "bool":
        return type(reply) is bool and reply == result
    return type(reply) is int and 0 <= reply <= tw.WORD_MASK and reply == result


def accepts(operation: str, args: Mapping[str, object], reply: object, status: int,
            pre_snap: Snapshot, post_snap: Snapshot) -> bool:
    """Whether the harness's z3 check of this page-manager call would pass
    (False: let z3 judge it)."""
    step = tw.STEPS.get(operation)
    if step is None or type(status) is not int or not 0 <= status <= tw.WORD_MASK:
        return False
    if operation == "RequestFrame" and not all(
            isinstance(args[k], bool) for k in ("is_kernel", "is_writeable")):
        # the harness's Refused: a flag the spec cannot represent must be refused
        # with ERROR_INVALID_PARAMETER, the state unchanged, no success value
        return (status == ErrorCode.ERROR_INVALID_PARAMETER and post_snap == pre_snap
                and reply is not True)
    arguments = _arguments(operation, args, reply)
    pre, post = tw.real(pre_snap), tw.real(post_snap)
    if pre is None or post is None:
        return False
    expected = step(pre, *arguments)
    return (expected.status == status and expected.assume
            and _reply_holds(reply, expected.result, KINDS[operation])
            and expected.post == post)
