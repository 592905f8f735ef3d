"""The main routing table, however it is written: the one table fact the model, the kernel's state
and the table-name reader all need (tables.py resolves every other name)."""

from __future__ import annotations

MAIN = "main"


def is_main(table: str | None) -> bool:
    """The main table, however it is written: no table at all, its name, or its id 254."""
    return table is None or table in (MAIN, "254")


def normal_table(table: str) -> str:
    """A table as the kernel names it, with main always spelled `main` (ip -N prints 254)."""
    return MAIN if is_main(table) else table
