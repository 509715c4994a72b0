"""The reliability suite's report: a row per check, written as a markdown table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

REPORT = Path(__file__).parents[2] / "test-artifacts" / "reliability.md"


@dataclass
class Report:
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, check: str, done: str, seen: str) -> None:
        self.rows.append((check, done, seen))

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["| check | what was done | what the clients saw |", "|---|---|---|"]
        lines += [f"| {check} | {done} | {seen} |" for check, done, seen in self.rows]
        path.write_text("\n".join(lines) + "\n")
