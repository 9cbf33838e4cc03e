"""What the benchmarks print: a progress line and a Markdown table of measured figures."""

from __future__ import annotations


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def table(rows: list[list[str]]) -> str:
    """A Markdown table: the first row is the header; the first column left-aligned, the rest right."""
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("| " + " | ".join(c.rjust(w) if k else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths))) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
