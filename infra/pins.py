"""The versions the images install, from the repository's constraints.txt (one place for pins).

The file sits beside the `infra` package: locally at the repository's root, in a container at
/root, where the images mount it (`add_local_file`), since Modal imports this package there too.
"""

from __future__ import annotations

from pathlib import Path

CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"
REMOTE_CONSTRAINTS = "/root/constraints.txt"


def pins(*names: str) -> tuple[str, ...]:
    """`name==version` for each of `names`, as constraints.txt pins them."""
    pinned: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            name, _, version = requirement.partition("==")
            pinned[name.strip().lower()] = f"{name.strip()}=={version.strip()}"
    missing = [name for name in names if name.lower() not in pinned]
    if missing:
        raise LookupError(f"constraints.txt pins no {', '.join(missing)}")
    return tuple(pinned[name.lower()] for name in names)
