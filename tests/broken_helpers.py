"""Helpers with deliberately wrong or uncheckable contracts, for tests/test_crosshair_runs.py.

A checker that cannot fail is worth nothing: each function here has a known
CrossHair verdict, and the test asserts the runner reports exactly that one.
Test-only; nothing in model/ or proofs/ imports this module.
"""

from __future__ import annotations


def align_up_wrong(value: int) -> int:
    """Round up to a page boundary, with a postcondition that is false at 0.

    pre: 0 <= value < 2**33
    post: __return__ % 4096 == 0
    post: __return__ > value
    """
    return value + (-value) % 4096


def align_down_right(value: int) -> int:
    """A correct helper written with arithmetic only, so CrossHair exhausts its paths.

    pre: 0 <= value < 2**33
    post: __return__ <= value < __return__ + 4096
    post: __return__ % 4096 == 0
    """
    return value - value % 4096


def pages_raising(size: int) -> int:
    """Number of pages for size bytes; raises for size 0 although the precondition allows it.

    pre: 0 <= size < 2**32
    post: __return__ >= 1
    """
    return 1 + (size - 1) // 4096 * (size // size)


def set_low_bit(word: int) -> int:
    """Correct, but `|` makes CrossHair realize the int, so it can never exhaust the paths.

    pre: 0 <= word < 2**32
    post: __return__ % 2 == 1
    """
    return word | 1


def is_small(value: object) -> bool:
    """A false contract that CrossHair "confirms": it only ever tries a plain object().

    post: __return__ == False
    """
    return type(value) is int and 0 <= value < 16


def impossible(value: int) -> int:
    """No input meets the precondition.

    pre: value < 0 and value > 0
    post: __return__ == value
    """
    return value


def no_contract(value: int) -> int:
    """No contract here: discovery must skip this function."""
    return value
