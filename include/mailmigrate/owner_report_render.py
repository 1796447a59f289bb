"""Rendering an :class:`~mailmigrate.owner_report.OwnerReport` for its owner: HTML (a page or a
mail fragment), CSV and plain text. Pure functions; every mailbox value (folder names, server
replies) is escaped in HTML and neutralised in CSV (a cell starting with ``=``, ``+``, ``-`` or
``@`` is not a formula). Import them from :mod:`mailmigrate.owner_report`.
"""

from __future__ import annotations

import csv
import io
from html import escape
from typing import TYPE_CHECKING, Any

from mailmigrate.results import human_bytes

if TYPE_CHECKING:
    from mailmigrate.owner_report import OwnerReport

CSV_COLUMNS = (
    "row", "source_folder", "destination_folder", "source_messages", "source_bytes",
    "destination_messages", "destination_bytes", "copied_messages", "copied_bytes", "missing",
    "only_on_destination", "refused", "renamed", "problem",
)  # fmt: skip
SECURITY_LABELS = {"ssl": "SSL/TLS", "starttls": "STARTTLS", "none": "none (unencrypted)"}


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _n(count: int | None, word: str) -> str:
    """``1 message``, ``3 messages``, ``? messages``."""
    return f"{_count(count)} {word}{'' if count == 1 else 's'}"


def _reason(renamed: str) -> str:
    """A rename reason as an owner reads it."""
    return {"plan rule": "by the migration plan"}.get(renamed, renamed)


def _size(value: int | None) -> str:
    return "?" if value is None else human_bytes(value)


GROUPWARE_ROWS = (("calendars", "Calendars"), ("events", "Events"), ("task_lists", "Task lists"),
                  ("tasks", "Tasks"), ("address_books", "Address books"),
                  ("contacts", "Contacts"))  # fmt: skip


def _groupware_rows(report: OwnerReport) -> list[tuple[str, int, int]]:
    """(label, old, new) of the kinds either side holds, from the pass's groupware summary."""
    g = report.groupware
    if not g:
        return []
    rows = [(label, g["source"][key], g["destination"][key]) for key, label in GROUPWARE_ROWS]
    return [row for row in rows if row[1] or row[2]]


def _groupware_problems(report: OwnerReport) -> list[str]:
    g = report.groupware or {}
    more = g.get("problem_count", 0) - len(g.get("problems", []))
    return [f"Calendar or address book {text}" for text in g.get("problems", [])] + (
        [f"... and {more} more calendar or contact items (your IT team has the list)"]
        if more > 0 else []
    )  # fmt: skip


def _headline(report: OwnerReport) -> str:
    totals = report.totals()
    if report.error:
        return f"The copy of your mailbox did not finish: {report.error}"
    problems = []
    if (report.groupware or {}).get("problem_count"):
        count = report.groupware["problem_count"]  # type: ignore[index]
        problems.append(f"{_n(count, 'calendar or contact item')} not copied as it is")
    if totals["missing"]:
        problems.append(f"{_n(totals['missing'], 'message')} not on the new server yet")
    refused = sum(1 for x in report.failures if x.kind == "refused")
    if refused:
        problems.append(f"{_n(refused, 'message')} refused by the new server")
    if len(report.failures) > refused:
        unreadable = len(report.failures) - refused
        problems.append(f"{_n(unreadable, 'message')} the old server could not deliver")
    if report.changed:
        problems.append(f"{_n(len(report.changed), 'message')} copied but not identical")
    failed = [f for f in report.folders if f.error]
    if failed:
        problems.append(f"{_n(len(failed), 'folder')} could not be copied")
    if problems:
        return "Not everything arrived: " + "; ".join(problems) + "."
    if report.verified:
        return (
            f"All {_n(totals['source_messages'], 'message')} of your "
            f"{_n(len(report.folders), 'folder')} are on the new server."
        )
    return f"{_n(totals['copied'], 'message')} copied; the result was not re-checked."


def render_text(report: OwnerReport) -> str:
    """A plain-text version of the report (mail bodies, logs)."""
    lines = [
        f"Mailbox migration report for {report.account} -> {report.destination_account}",
        f"{report.phase} copy of {report.generated_at:%Y-%m-%d %H:%M} UTC ({report.plan})",
        "",
        _headline(report),
        "",
        *report.notes,
        *([""] if report.notes else []),
    ]
    for f in report.folders:
        line = (
            f"{f.source} -> {f.destination}: source {_count(f.source_messages)} "
            f"({_size(f.source_bytes)}), destination {_count(f.destination_messages)} "
            f"({_size(f.destination_bytes)}), copied now {f.copied:,}"
        )
        if f.renamed:
            line += f"; renamed {_reason(f.renamed)}"
        if f.error:
            line += f"; FAILED: {f.error}"
        lines.append(line)
    for failure in (*report.failures, *report.changed):
        lines.append(
            f"{failure.kind}: {failure.folder} message {failure.ref} "
            f"({human_bytes(failure.size)}): {failure.reason}"
        )
    lines += [f"{name}: not copied (excluded by the migration plan)" for name in report.excluded]
    if report.groupware:
        lines += ["", "Calendars, contacts and tasks (old server -> new server):"]
        lines += [f"  {label}: {old:,} -> {new:,}" for label, old, new in _groupware_rows(report)]
        lines += _groupware_problems(report)
    if report.servers:
        lines += ["", "Your mail client settings on the new server:"]
        lines += [
            f"  {s.label}: {s.host}, port {s.port}, {SECURITY_LABELS.get(s.security, s.security)}"
            for s in report.servers
        ]
        lines.append(f"  User name: {report.destination_account}")
    if report.autoconfig:
        lines.append(f"  Automatic setup: {report.autoconfig}")
    return "\n".join(lines) + "\n"


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2433;margin:1.5rem}
h1{font-size:1.3rem;margin:0 0 .2rem}h2{font-size:1.05rem;margin:1.4rem 0 .4rem}
.meta{color:#5b6478;margin:0 0 1rem}.ok{background:#e6f4ea;border-left:4px solid #1e8e3e}
.bad{background:#fce8e6;border-left:4px solid #d93025}.banner{padding:.6rem .8rem;margin:0 0 1rem}
table{border-collapse:collapse;font-size:.9rem}th,td{border-bottom:1px solid #dde1e7;
padding:.3rem .6rem;text-align:left;vertical-align:top}td.n,th.n{text-align:right}
tr.problem td{background:#fff4f2}tfoot td{font-weight:600}
"""


def _cell(value: str, numeric: bool = False) -> str:
    return f'<td class="n">{value}</td>' if numeric else f"<td>{value}</td>"


def render_html(report: OwnerReport, *, standalone: bool = True) -> str:
    """The report as HTML: a whole page, or (``standalone=False``) a fragment for a mail body."""
    totals = report.totals()
    e = escape
    parts = [
        f"<h1>Mailbox migration report: {e(report.account)}</h1>",
        f'<p class="meta">{e(report.phase)} copy to {e(report.destination_account)}, '
        f"{report.generated_at:%Y-%m-%d %H:%M} UTC, migration {e(report.plan)}</p>",
        f'<p class="banner {"ok" if report.ok else "bad"}">{e(_headline(report))}</p>',
    ]
    if report.notes:
        parts.append("<ul>" + "".join(f"<li>{e(note)}</li>" for note in report.notes) + "</ul>")
    if not report.verified:
        why = f" ({e(report.comparison_error)})" if report.comparison_error else ""
        parts.append(
            f'<p class="meta">Counts are those of the copy itself; both sides were not listed '
            f"again afterwards{why}.</p>"
        )
    head = ("Folder", "On the new server as", "Messages (old)", "Size (old)", "Messages (new)",
            "Size (new)", "Copied now", "Missing", "Notes")  # fmt: skip
    numeric = {2, 3, 4, 5, 6, 7}
    parts.append("<h2>Folders</h2><table><thead><tr>")
    parts += [f"<th{' class=n' if i in numeric else ''}>{h}</th>" for i, h in enumerate(head)]
    parts.append("</tr></thead><tbody>")
    for f in report.folders:
        notes = []
        if f.renamed:
            notes.append(f"renamed {e(_reason(f.renamed))}")
        if f.refused:
            notes.append(f"{f.refused:,} refused")
        if f.extra:
            notes.append(f"{f.extra:,} only on the new server")
        if f.error:
            notes.append(f"<strong>failed:</strong> {e(f.error)}")
        problem = bool(f.error or f.refused or f.missing)
        parts.append(f"<tr{' class=problem' if problem else ''}>")
        parts += [_cell(e(f.source)), _cell(e(f.destination)),
                  _cell(_count(f.source_messages), True), _cell(_size(f.source_bytes), True),
                  _cell(_count(f.destination_messages), True),
                  _cell(_size(f.destination_bytes), True), _cell(f"{f.copied:,}", True),
                  _cell(_count(f.missing), True), _cell("<br>".join(notes))]  # fmt: skip
        parts.append("</tr>")
    parts.append("</tbody><tfoot><tr>")
    parts += [_cell("Total"), _cell(""), _cell(_count(totals["source_messages"]), True),
              _cell(_size(totals["source_bytes"]), True),
              _cell(_count(totals["destination_messages"]), True),
              _cell(_size(totals["destination_bytes"]), True),
              _cell(_count(totals["copied"]), True), _cell(_count(totals["missing"]), True),
              _cell("")]  # fmt: skip
    parts.append("</tr></tfoot></table>")
    renamed = [f for f in report.folders if f.renamed]
    if renamed:
        parts.append("<h2>Renamed folders</h2><ul>")
        parts += [
            f"<li>{e(f.source)} is now <strong>{e(f.destination)}</strong> "
            f"({e(_reason(f.renamed or ''))})</li>"
            for f in renamed
        ]
        parts.append("</ul>")
    if report.failures or report.changed or report.error or any(f.error for f in report.folders):
        parts.append("<h2>What failed and why</h2><ul>")
        if report.error:
            parts.append(f"<li>The whole copy: {e(report.error)}</li>")
        parts += [f"<li>Folder {e(f.source)}: {e(f.error)}</li>" for f in report.folders if f.error]
        parts += [
            f"<li>Message {e(x.ref)} in {e(x.folder)} ({human_bytes(x.size)}): {e(x.reason)}</li>"
            for x in report.failures
        ]
        parts += [
            f"<li>Message {e(x.ref)} in {e(x.folder)} ({human_bytes(x.size)}) copied, "
            f"not identical: {e(x.reason)}</li>"
            for x in report.changed
        ]
        parts.append("</ul>")
    if report.groupware:
        parts.append(
            "<h2>Calendars, contacts and tasks</h2><table><thead><tr><th></th>"
            "<th class=n>Old server</th><th class=n>New server</th></tr></thead><tbody>"
        )
        parts += [
            f"<tr>{_cell(e(label))}{_cell(f'{old:,}', True)}{_cell(f'{new:,}', True)}</tr>"
            for label, old, new in _groupware_rows(report)
        ]
        parts.append("</tbody></table>")
        problems = _groupware_problems(report)
        if problems:
            parts.append("<ul>" + "".join(f"<li>{e(p)}</li>" for p in problems) + "</ul>")
    if report.excluded:
        parts.append("<h2>Not copied (excluded by the migration plan)</h2><ul>")
        parts += [f"<li>{e(name)}</li>" for name in report.excluded]
        parts.append("</ul>")
    parts.append(_settings_html(report))
    body = "\n".join(parts)
    if not standalone:
        return f'<div class="mailmigrate-report"><style>{_STYLE}</style>{body}</div>'
    title = e(f"Mailbox migration report: {report.account}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def _settings_html(report: OwnerReport) -> str:
    e = escape
    parts = ["<h2>Your mail client settings on the new server</h2>"]
    if report.servers:
        parts.append("<table><tbody>")
        for s in report.servers:
            security = SECURITY_LABELS.get(s.security, s.security)
            parts.append(
                f"<tr><th>{e(s.label)}</th><td>Server <strong>{e(s.host)}</strong>, port "
                f"{s.port}, security {e(security)}</td></tr>"
            )
        parts.append(
            f"<tr><th>User name</th><td><strong>{e(report.destination_account)}</strong></td></tr>"
            "</tbody></table>"
        )
    else:
        parts.append("<p>Your IT team will send you the settings of the new server.</p>")
    if report.autoconfig:
        url = e(report.autoconfig)
        parts.append(
            "<p>Mail clients such as Thunderbird set themselves up from your address alone "
            f'(automatic setup: <a href="{url}">{url}</a>).</p>'
        )
    return "\n".join(parts)


def _safe(value: Any) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render_csv(report: OwnerReport) -> str:
    """The report as CSV: one ``folder`` row per folder, one ``message`` row per refused message,
    an ``account`` row for an error of the whole pass, and a ``total`` row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for f in report.folders:
        writer.writerow([_safe(v) for v in ("folder", f.source, f.destination, f.source_messages,
                         f.source_bytes, f.destination_messages, f.destination_bytes, f.copied,
                         f.copied_bytes, f.missing, f.extra, f.refused, f.renamed, f.error)])  # fmt: skip
    for x in report.failures:
        writer.writerow([_safe(v) for v in ("message", x.folder, "", "", x.size, "", "", "", "",
                         "", "", 1, "", f"message {x.ref}: {x.reason}")])  # fmt: skip
    for label, old, new in _groupware_rows(report):
        writer.writerow([_safe(v) for v in ("groupware", label, label, old, "", new, *[""] * 8)])
    for problem in (report.groupware or {}).get("problems", []):
        writer.writerow([_safe(v) for v in ("groupware item", *[""] * 12, problem)])
    if report.error:
        writer.writerow([_safe(v) for v in ("account", *[""] * 12, report.error)])
    t = report.totals()
    writer.writerow([_safe(v) for v in ("total", "", "", t["source_messages"], t["source_bytes"],
                     t["destination_messages"], t["destination_bytes"], t["copied"],
                     t["copied_bytes"], t["missing"], t["extra"], t["refused"], "", "")])  # fmt: skip
    return out.getvalue()
