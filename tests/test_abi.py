"""The ABI (spec/abi.py) against what the oracle's protocol tells implementers: the
JSON Schema's bounds and PROTOCOL.md's numbers are the ABI's, so a constant that
changes in one place and not the other fails here."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from proofs.oracle.world import MAX_THREADS
from spec import abi

ORACLE = Path(__file__).resolve().parent.parent / "proofs" / "oracle"
SCHEMA = json.loads((ORACLE / "protocol.schema.json").read_text())
PROTOCOL = " ".join((ORACLE / "PROTOCOL.md").read_text().split())

U16_MAX = 0xFFFF
#: Linux's MAX_ERRNO: a failed call returns -errno in [-4095, -1].
MAX_ERRNO = 4095


def bounds(node: Any, path: str = "") -> Iterator[tuple[str, str, int]]:
    """(path, "minimum" or "maximum", value) for every bound in the schema."""
    if isinstance(node, dict):
        for key in ("minimum", "maximum"):
            if key in node:
                yield path, key, node[key]
        for key, value in node.items():
            yield from bounds(value, f"{path}/{key}")
    elif isinstance(node, list):
        for item in node:
            yield from bounds(item, path)


def listed(text: str) -> dict[int, str]:
    """'0 success, 6 invalid handle, ...' -> {0: 'success', 6: 'invalid handle', ...}."""
    return {int(number, 0): name.strip().lower()
            for number, name in re.findall(r"(0x[0-9A-Fa-f]+|\d+) ([A-Za-z][A-Za-z ]*)", text)}


def words(name: str) -> set[str]:
    return set(name.lower().removeprefix("error_").replace("_", " ").split())


def test_the_schemas_bounds_are_the_abis() -> None:
    """Every number the schema bounds is a u32, a u16 register, a frame number, a
    signed result down to -MAX_ERRNO, an id, a protocol 3 thread (at most
    MAX_THREADS), or an argument the oracle may send out of range on purpose
    (up to 2**33, down to -2**31: the model refuses it)."""
    allowed = {("maximum", abi.U32_MAX), ("maximum", U16_MAX), ("maximum", abi.FRAME_LIMIT - 1),
               ("maximum", MAX_THREADS),
               ("maximum", 2 * abi.ADDRESS_LIMIT), ("minimum", 0), ("minimum", 1),
               ("minimum", -MAX_ERRNO), ("minimum", -(abi.ADDRESS_LIMIT // 2))}
    found = {(key, value) for _, key, value in bounds(SCHEMA)}
    assert found <= allowed, found - allowed
    frame_bounds = [value for path, key, value in bounds(SCHEMA)
                    if path.endswith("PageTables/properties/directory") and key == "maximum"]
    assert frame_bounds == [abi.FRAME_LIMIT - 1]


def test_protocol_md_windows_error_codes_are_the_abis() -> None:
    text = PROTOCOL.split("Windows error numbers of")[1].split(")")[0]
    codes = listed(text.split("(", 1)[1])
    assert len(codes) >= 10
    for number, name in codes.items():
        code = abi.ErrorCode(number)
        assert words(name) <= words(code.name) | {"success"}, (number, name, code.name)


def test_protocol_md_dos_error_codes_are_the_abis() -> None:
    text = PROTOCOL.split("the INT 21h error (")[1].split(")")[0]
    codes = listed(text)
    assert text.startswith(f"{abi.DosError.SUCCESS}, ")
    assert set(codes) | {abi.DosError.SUCCESS} == {int(e) for e in abi.DosError}
    assert codes[abi.DosError.ARENA_TRASHED] == "mcb destroyed"
    for number, name in codes.items():
        if name != "mcb destroyed" and number:
            assert words(name) == words(abi.DosError(number).name), (number, name)


def test_protocol_md_xms_and_ems_ranges_are_the_abis() -> None:
    xms = [value for name, value in vars(abi).items()
           if name.startswith("XMS_") and name != "XMS_BASE" and value]
    ems = [value for name, value in vars(abi).items()
           if name.startswith("EMS_") and name.isupper() and 0x80 <= value <= 0x8F]
    assert f"BL code (A0h-{max(xms):02X}h)" in PROTOCOL and min(xms) == 0xA0
    assert f"AH status ({min(ems):02X}h-{max(ems):02X}h)" in PROTOCOL


def test_protocol_md_errno_values_are_the_abis() -> None:
    text = PROTOCOL.split("the Linux errno (")[1].split(")")[0]
    named = dict(re.findall(r"(\d+) (E[A-Z]+)", text))
    assert len(named) >= 7
    for number, name in named.items():
        assert getattr(abi, name) == int(number), (name, number)


def test_protocol_md_origins_and_states_are_the_abis() -> None:
    text = PROTOCOL.split("with `origin` (")[1].split(":")[0]
    origins = listed(text)
    expected = {abi.ORIGIN_VIRTUAL_ALLOC: "virtualalloc", abi.ORIGIN_MMAP: "mmap",
                abi.ORIGIN_IMAGE: "image", abi.ORIGIN_BRK: "brk", abi.ORIGIN_STACK: "stack",
                abi.ORIGIN_PROCESS_HEAP: "process heap",
                abi.ORIGIN_SHARED_MEMORY: "shared memory view",
                abi.ORIGIN_MAPPED_FILE: "mapped file view"}
    assert origins == expected
    assert f"({abi.MEM_COMMIT:#x} committed, {abi.MEM_RESERVE:#x} reserved)" in PROTOCOL
