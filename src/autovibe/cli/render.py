"""The only module that prints: Rich on a terminal, plain text when piped, stable JSON for ``--json``.

Commands describe *what* to show with the small value types below (``Table``, ``TreeNode``,
``CheckLine``) and call the module functions; this module decides *how*. On a terminal it uses Rich
tables, trees and progress bars; otherwise it writes plain, unwrapped, colourless lines that are easy
to grep, and never imports Rich (which also keeps piped runs fast). Errors go to stderr.

Every human-facing output starts with :func:`header`, naming the target cluster.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

Justify = Literal["left", "right"]
CheckStatus = Literal["ok", "fail", "skip", "warn"]


@dataclass(frozen=True)
class Column:
    header: str
    justify: Justify = "left"


@dataclass(frozen=True)
class Table:
    """Rows of already formatted cells; ``columns`` gives headers and alignment. ``styles`` optionally
    gives each row a Rich style (``"red"``, ``"yellow"``), used on terminals only."""

    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[str, ...], ...]
    styles: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class TreeNode:
    label: str
    children: tuple[TreeNode, ...] = ()


@dataclass(frozen=True)
class CheckLine:
    """One doctor-style check: ``status`` ok/fail/skip/warn, a name, what was found, what to do."""

    status: CheckStatus
    name: str
    detail: str
    hint: str | None = None


_CHECK_MARKS: Mapping[CheckStatus, tuple[str, str]] = {
    "ok": ("✔", "green"),
    "fail": ("✘", "bold red"),
    "warn": ("!", "yellow"),
    "skip": ("-", "dim"),
}


class Output:
    """Writes to one stdout/stderr pair. ``terminal`` defaults to ``stdout.isatty()``."""

    def __init__(self, stdout: TextIO, stderr: TextIO, *, terminal: bool | None = None) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.is_terminal = stdout.isatty() if terminal is None else terminal
        self._console: Console | None = None
        self._err_console: Console | None = None
        self._live: Progress | None = None  # the progress bar being drawn, if any

    # ---- plumbing ----------------------------------------------------------------------------
    def _rich(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stdout, highlight=False)
        return self._console

    def _stderr_rich(self) -> Console:
        if self._err_console is None:
            from rich.console import Console

            self._err_console = Console(file=self.stderr, highlight=False)
        return self._err_console

    def _write(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    # ---- outputs -----------------------------------------------------------------------------
    def json(self, data: Any) -> None:
        """Stable JSON: sorted keys, two-space indent, UTF-8, one trailing newline."""
        self.stdout.write(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=_jsonable))
        self.stdout.write("\n")
        self.stdout.flush()

    def header(self, target: str) -> None:
        """The first line of every human-facing output: which cluster this is about."""
        if self.is_terminal:
            self._rich().print(f"[bold]target:[/] [cyan]{_escape(target)}[/]", soft_wrap=True)
        else:
            self._write(f"target: {target}")

    def line(self, text: str = "", *, style: str | None = None) -> None:
        """A line of prose; ``style`` is a Rich style used only on terminals."""
        if self.is_terminal:
            escaped = _escape(text)
            self._rich().print(f"[{style}]{escaped}[/]" if style else escaped, soft_wrap=True)
        else:
            self._write(text)

    def step(self, number: int, text: str) -> None:
        """A numbered step of a scripted flow (the demo)."""
        if self.is_terminal:
            self._rich().print(f"\n[bold cyan]{number}.[/] [bold]{_escape(text)}[/]", soft_wrap=True)
        else:
            self._write()
            self._write(f"{number}. {text}")

    def table(self, table: Table) -> None:
        if self.is_terminal:
            self._rich_table(table)
        else:
            self._plain_table(table)

    def tree(self, title: str, roots: Sequence[TreeNode]) -> None:
        """A tree under ``title``; plain mode indents two spaces per level with ``- `` bullets."""
        if self.is_terminal:
            from rich.tree import Tree

            top = Tree(f"[bold]{_escape(title)}[/]")
            _grow(top, roots)
            self._rich().print(top)
        else:
            self._write(title)
            for root in roots:
                self._plain_branch(root, depth=1)

    def checks(self, lines: Sequence[CheckLine]) -> None:
        """A checklist (doctor): a mark, the check's name and finding, and a hint under failures."""
        width = max((len(line.name) for line in lines), default=0)
        for line in lines:
            mark, style = _CHECK_MARKS[line.status]
            if self.is_terminal:
                name = _escape(line.name.ljust(width))
                self._rich().print(f"[{style}]{mark}[/] {name}  {_escape(line.detail)}")
                if line.hint and line.status in ("fail", "warn"):
                    self._rich().print(f"  [dim]{' ' * width}hint: {_escape(line.hint)}[/]")
            else:
                self._write(f"{line.status:<4}  {line.name.ljust(width)}  {line.detail}")
                if line.hint and line.status in ("fail", "warn"):
                    self._write(f"      {' ' * width}  hint: {line.hint}")

    @contextmanager
    def progress(self, label: str) -> Iterator[ProgressBar]:
        """A progress bar while waiting (a PVE task); plain mode prints one line when it ends."""
        started = time.monotonic()
        if self.is_terminal:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[note]}", style="dim"),
                TimeElapsedColumn(),
                console=self._rich(),
            ) as bar:
                task = bar.add_task(_escape(label), total=None, note="")
                self._live = bar
                try:
                    yield ProgressBar(bar, task)
                finally:
                    self._live = None
                bar.update(task, total=1, completed=1)
            return
        try:
            yield ProgressBar(None, None)
        except BaseException:
            self._write(f"{label} ... failed after {time.monotonic() - started:.1f} s")
            raise
        self._write(f"{label} ... done in {time.monotonic() - started:.1f} s")

    def note(self, text: str) -> None:
        """A remark while work goes on ("waiting: VM 100 is locked..."), on stderr so that stdout stays
        one JSON document with ``--json``. While a progress bar is drawn on the terminal, it is printed
        above the bar instead (writing around a live display would garble it)."""
        if self._live is not None:
            self._live.console.print(f"[yellow]{_escape(text)}[/]", soft_wrap=True)
        elif self.stderr.isatty():
            self._stderr_rich().print(f"[yellow]{_escape(text)}[/]", soft_wrap=True)
        else:
            self.stderr.write(text + "\n")
            self.stderr.flush()

    def error(self, message: str, hint: str | None = None) -> None:
        """One ``error:`` line on stderr, and a ``hint:`` line when there is something to do."""
        if self.stderr.isatty():
            console = self._stderr_rich()
            console.print(f"[bold red]error:[/] {_escape(message)}")
            if hint:
                console.print(f"[dim]hint:[/] {_escape(hint)}")
            return
        self.stderr.write(f"error: {message}\n")
        if hint:
            self.stderr.write(f"hint: {hint}\n")
        self.stderr.flush()

    def traceback(self, exc: BaseException) -> None:
        """The full traceback, on stderr; only shown when the user asked with ``-v``."""
        import traceback

        self.stderr.write("".join(traceback.format_exception(exc)))

    # ---- helpers -----------------------------------------------------------------------------
    def _rich_table(self, table: Table) -> None:
        from rich import box
        from rich.table import Table as RichTable

        rich_table = RichTable(
            title=_escape(table.title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
        )
        for column in table.columns:
            # Numbers must never be cut ("9…" for 9000); text columns wrap on narrow terminals.
            numeric = column.justify == "right"
            rich_table.add_column(
                _escape(column.header), justify=column.justify, no_wrap=numeric, overflow="fold"
            )
        for index, row in enumerate(table.rows):
            style = table.styles[index] if index < len(table.styles) else None
            rich_table.add_row(*(_escape(cell) for cell in row), style=style)
        self._rich().print(rich_table)

    def _plain_table(self, table: Table) -> None:
        headers = tuple(column.header.upper() for column in table.columns)
        widths = [max(len(cell) for cell in column) for column in zip(headers, *table.rows, strict=True)]
        self._write()
        self._write(table.title)

        def fmt(cells: tuple[str, ...]) -> str:
            padded = (
                cell.rjust(width) if column.justify == "right" else cell.ljust(width)
                for cell, width, column in zip(cells, widths, table.columns, strict=True)
            )
            return "  ".join(padded).rstrip()

        self._write(fmt(headers))
        for row in table.rows:
            self._write(fmt(row))

    def _plain_branch(self, node: TreeNode, depth: int) -> None:
        self._write(f"{'  ' * (depth - 1)}- {node.label}")
        for child in node.children:
            self._plain_branch(child, depth + 1)


class ProgressBar:
    """Handle given to the code that waits: ``update(fraction, note)``; both optional."""

    def __init__(self, bar: Progress | None, task: TaskID | None) -> None:
        self._bar = bar
        self._task = task

    def update(self, fraction: float | None = None, note: str | None = None) -> None:
        if self._bar is None or self._task is None:
            return
        fields: dict[str, Any] = {}
        if note is not None:
            fields["note"] = _escape(note[:60])
        if fraction is not None:
            self._bar.update(self._task, total=1.0, completed=max(0.0, min(1.0, fraction)), **fields)
        else:
            self._bar.update(self._task, **fields)


def _grow(branch: Any, nodes: Sequence[TreeNode]) -> None:
    for node in nodes:
        _grow(branch.add(_escape(node.label)), node.children)


def _escape(text: str) -> str:
    # Rich markup in PVE names or messages ("[x]") must print literally.
    return text.replace("[", r"\[")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value)  # sorted, so the output is stable
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


# ---- module-level API: the default Output on the process's stdout/stderr ------------------------
_default: Output | None = None


def output() -> Output:
    """The process-wide :class:`Output` on ``sys.stdout``/``sys.stderr`` (created on first use)."""
    global _default
    if _default is None:
        _default = Output(sys.stdout, sys.stderr)
    return _default


def emit_json(data: Any) -> None:
    output().json(data)


def header(target: str) -> None:
    output().header(target)


def line(text: str = "", *, style: str | None = None) -> None:
    output().line(text, style=style)


def step(number: int, text: str) -> None:
    output().step(number, text)


def table(value: Table) -> None:
    output().table(value)


def tree(title: str, roots: Sequence[TreeNode]) -> None:
    output().tree(title, roots)


def checks(lines: Sequence[CheckLine]) -> None:
    output().checks(lines)


def progress(label: str) -> AbstractContextManager[ProgressBar]:
    """Context manager yielding a :class:`ProgressBar`; see :meth:`Output.progress`."""
    return output().progress(label)


def note(text: str) -> None:
    output().note(text)


def error(message: str, hint: str | None = None) -> None:
    output().error(message, hint)


def traceback(exc: BaseException) -> None:
    output().traceback(exc)


def raw(text: str) -> None:
    """Machine-readable text in a fixed format (e.g. Prometheus exposition), written as-is to stdout."""
    output().stdout.write(text)


def help_text(text: str) -> None:
    """Help or version text, written as-is to stdout."""
    output().stdout.write(text if text.endswith("\n") else text + "\n")


# ---- cell formatting shared by commands ----------------------------------------------------------
_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(size: int | float) -> str:
    """``4294967296`` -> ``4.0 GiB``; ``0`` -> ``0 B``. IEC units, as PVE's GUI shows them."""
    value = float(size)
    for unit in _IEC:
        if abs(value) < 1024 or unit == _IEC[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: int | float) -> str:
    """Uptime-style: ``3d 4h``, ``2h 5m``, ``4m 10s``, ``-`` for zero (stopped)."""
    total = int(seconds)
    if total <= 0:
        return "-"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def percent(fraction: float) -> str:
    """``0.034`` -> ``3%``."""
    return f"{fraction * 100:.0f}%"


_SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], *, width: int = 24) -> str:
    """The last ``width`` values as ``▁▂▃▄▅▆▇█``, scaled to their largest (all ``▁`` when none is above 0)."""
    shown = list(values)[-width:] if width > 0 else []
    top = max(shown, default=0.0)
    if top <= 0:
        return _SPARKS[0] * len(shown)
    last = len(_SPARKS) - 1
    return "".join(_SPARKS[max(0, min(last, round(value / top * last)))] for value in shown)
