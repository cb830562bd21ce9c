"""The records of processing (GDPR Art. 30) as Markdown, generated from the inventory.

docs/privacy.md holds this text between two markers; a test keeps it current
(``identity gdpr inventory --markdown`` prints it).
"""

from __future__ import annotations

from identity.privacy.inventory import INVENTORY, NOT_PERSONAL, personal_columns

BEGIN = "<!-- inventory:begin -->"
END = "<!-- inventory:end -->"


def markdown() -> str:
    lines = [
        "| Table | Purpose | Retention | On erasure | Personal data (category; exported) |",
        "|---|---|---|---|---|",
    ]
    for name, table in sorted(INVENTORY.items()):
        columns = personal_columns(name)
        held = "<br>".join(
            f"`{column}` ({c.category}; {'exported' if c.export else 'not exported'}"
            + (f": {c.note}" if c.note else "")
            + ")"
            for column, c in columns.items()
        )
        erasure = table.erasure + (f": {table.note}" if table.note else "")
        if table.erasure == NOT_PERSONAL and not table.note:
            erasure = "n/a"
        lines.append(
            f"| `{name}` | {table.purpose} | {table.retention} | {erasure} | {held or 'none'} |"
        )
    return "\n".join(lines) + "\n"


def replace_block(document: str) -> str:
    """``document`` with the text between the markers replaced by ``markdown()``."""
    start = document.index(BEGIN) + len(BEGIN)
    end = document.index(END)
    return document[:start] + "\n" + markdown() + document[end:]
