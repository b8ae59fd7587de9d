"""Tables that fit the terminal and never cut a number.

A `FitTable` is a rich renderable. Printed at the console's width (``COLUMNS``, else the terminal's), it
tries, in order, until the table's rows fit on one line each:

1. every column inline;
2. long text columns (``Col(note=True)``: source, method, citation) as numbered footnotes below the table;
3. the lowest-priority columns (largest ``Col.priority``) moved to a block below, one line per row
   (``key: header value; header value``), wrapped at spaces.

Number cells never wrap (a column is at least as wide as its longest cell); text cells wrap at spaces only.
So no cell is ever cut with '…' and every number appears whole. ``--wide`` (`WIDE_OPTION`, on each command
that prints tables) keeps every column inline, one line per row, however wide.

    from scaletune.cli._tables import Col, FitTable, show
    show(console, FitTable("title", [Col("N"), Col("source", justify="left", note=True)], rows))
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any, Sequence

import click

_wide = False


def set_wide(value: bool) -> None:
    """Keep every table on one line per row (--wide)."""
    global _wide
    _wide = bool(value)


WIDE_OPTION = click.option(
    "--wide",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, param, value: set_wide(value),
    help="Print every table column inline, one line per row, however wide (default: fit the terminal width).",
)


@dataclass(frozen=True)
class Col:
    """A column: ``priority`` 0 stays in the table, larger numbers move below first; ``note``: long text moved
    to footnotes when the table is too wide; ``wrap``: text that may wrap at spaces (numbers never do)."""

    header: str
    justify: str = "right"
    priority: int = 0
    note: bool = False
    wrap: bool = False


def _plain(cell: str) -> str:
    from rich.text import Text

    return Text.from_markup(cell).plain


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else str(value)


class FitTable:
    """A table that fits the width it is printed at (see the module doc). ``key``: the number of leading
    columns that name a row (never moved; repeated in the block below)."""

    def __init__(self, title: str, columns: Sequence[Col | str], rows: Sequence[Sequence[Any]] = (), key: int = 1):
        self.title = title
        self.columns = [c if isinstance(c, Col) else Col(c) for c in columns]
        self.rows = [[_cell(v) for v in r] for r in rows]
        self.key = key

    def add_row(self, *cells: Any) -> None:
        """Append a row (as rich's ``Table.add_row``)."""
        self.rows.append([_cell(v) for v in cells])

    def _footnote(self, i: int, cell: str) -> bool:
        return len(_plain(cell)) > max(len(self.columns[i].header), 8)  # short text stays in the table

    def _cells(self, i: int, footnoted: bool) -> list[str]:
        cells = [_plain(r[i]) for r in self.rows]
        return [f"[{len(self.rows)}]"] + [c for c in cells if not self._footnote(i, c)] if footnoted else cells

    def _wraps(self, i: int) -> bool:
        return self.columns[i].wrap or self.columns[i].note

    def _widths(self, i: int, footnoted: bool) -> tuple[int, int]:
        """(least, natural) width of column ``i``: the least without cutting (its longest cell where it does not
        wrap, else its longest word) and its width with every cell on one line."""
        cells, header = self._cells(i, footnoted), self.columns[i].header
        natural = max([len(header)] + [len(c) for c in cells])
        if not self._wraps(i) or footnoted:  # a footnoted column holds short markers: its header stays whole
            return natural, natural
        return max(len(w) for text in cells + [header] for w in text.split() or [""]) or 1, natural

    @staticmethod
    def _total(widths: Sequence[int]) -> int:
        return sum(widths) + 3 * len(widths) + 1  # rich's box: a border and one space of padding either side

    def _layout(self, keep: Sequence[int], footnoted: set[int], width: int) -> dict[int, int]:
        """Column widths within ``width``: natural where it fits, else wrapping columns share what is left in
        proportion to what they lack (never below their least)."""
        least, natural = zip(*(self._widths(i, i in footnoted) for i in keep))
        if self._total(natural) <= width:
            return dict(zip(keep, natural))
        spare = width - self._total(least)
        lack = [n - m for n, m in zip(natural, least)]
        extra = [int(spare * d / max(sum(lack), 1)) for d in lack]
        return {i: m + e for i, m, e in zip(keep, least, extra)}

    def _table(self, keep: Sequence[int], footnoted: set[int], widths: dict[int, int]):
        from rich.table import Table

        table = Table(title=self.title, title_justify="left")
        notes: dict[str, int] = {}
        for i in keep:
            col = self.columns[i]
            table.add_column(col.header, justify=col.justify, no_wrap=not self._wraps(i), overflow="fold", width=widths[i])
        for r in self.rows:
            table.add_row(
                *[f"\\[{notes.setdefault(r[i], len(notes) + 1)}]" if i in footnoted and self._footnote(i, r[i]) else r[i] for i in keep]
            )
        return table, notes

    def __rich_console__(self, console, options):
        from rich.text import Text

        everything = list(range(len(self.columns)))
        if _wide:
            widths = {i: self._widths(i, False)[1] for i in everything}
            table, _ = self._table(everything, set(), widths)
            yield from console.render(table, options.update(width=self._total(list(widths.values()))))
            return
        width = options.max_width
        keep, footnoted, moved = everything, set(), []

        def fits(one_line: bool) -> bool:
            return self._total([self._widths(i, i in footnoted)[1 if one_line else 0] for i in keep]) <= width

        if not fits(one_line=True):
            footnoted = {i for i in everything if self.columns[i].note}
        # Move columns below, lowest priority first (the rightmost first among equals), until the table fits
        # with its wrapping text at its narrowest; the key columns stay.
        movable = sorted(everything[self.key :], key=lambda i: (self.columns[i].priority, i), reverse=True)
        while movable and not fits(one_line=False):
            moved.append(movable.pop(0))
            keep = [i for i in everything if i not in moved]
        table, notes = self._table(keep, footnoted, self._layout(keep, footnoted, width))
        yield table
        lines = []
        for r in self.rows if moved else ():
            name = ", ".join(
                f"{self.columns[i].header}={_plain(r[i])}" if self.columns[i].justify == "right" else _plain(r[i])
                for i in range(min(self.key, len(r)))
            )
            items = [f"{self.columns[i].header}: {_plain(r[i])}" for i in sorted(moved) if _plain(r[i]).strip() not in ("", "-")]
            if items:
                lines.append(f"{name}: " + "; ".join(items))
        lines += [f"[{n}] {_plain(text)}" for text, n in notes.items()]
        for text in lines:
            for line in textwrap.wrap(text, width=width, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False):
                yield Text(line)


def show(console, *renderables) -> None:
    """Print renderables (FitTables among them) so that --wide output is not cropped at the terminal width."""
    for r in renderables:
        console.print(r, crop=not _wide)


def print_result(result, as_json: bool, render, footer: str | None = None) -> None:
    """A command's output: with --json, ``result.to_dict()`` as one JSON document; else ``render(result, console)``
    (its tables) and then ``footer`` (e.g. the files written), if any."""
    if as_json:
        from scaletune._json import dumps

        click.echo(dumps(result.to_dict()))
        return
    from rich.console import Console

    console = Console()
    render(result, console)
    if footer:
        console.print(footer)


def choice_option(name: str, choices: Sequence[str], help: str | None = None, *, dest: str | None = None) -> Any:
    """A click option taking one of ``choices``; the first choice is the default, shown in --help."""
    decls = (name, dest) if dest else (name,)
    return click.option(*decls, type=click.Choice(list(choices)), default=choices[0], show_default=True, help=help)
