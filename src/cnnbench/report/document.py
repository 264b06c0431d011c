"""A tiny document model rendered twice: one self-contained HTML page and its Markdown twin.

Blocks are paragraphs (inline ``**bold**`` and ```code``` only), tables whose cells may be
bold and carry a sort key, figure grids, raw Markdown, and collapsible details. The HTML has
its CSS and a ten-line sort script inline and its figures as base64 PNG: it opens offline.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from cnnbench.fileio import write_atomic


@dataclass
class Cell:
    text: str
    sort: float | str | None = None  # the value the HTML table sorts on (default: text)
    bold: bool = False


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    numeric: list[bool] = field(default_factory=list)  # right-aligned columns
    sortable: bool = True  # False: a key-value table without a header row

    def __post_init__(self) -> None:
        if not self.numeric:
            self.numeric = [False] * len(self.headers)


@dataclass
class Figure:
    slug: str  # file name stem under figures/
    title: str
    png: bytes
    caption: str = ""
    wide: bool = False


@dataclass
class Markdown:
    """A block of Markdown from elsewhere (e.g. the data exploration's summary)."""

    text: str


@dataclass
class Details:
    summary: str
    blocks: list


@dataclass
class Section:
    id: str
    title: str
    blocks: list


@dataclass
class Document:
    title: str
    subtitle: str
    verdict: list[tuple[str, str, str]]  # (label, big value, small print)
    verdict_text: str
    sections: list[Section]
    footer: str = ""


# ---------------------------------------------------------------- inline markup
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def inline_html(text: str) -> str:
    """Escape, then ``code``, **bold** and [links](...) (the only inline markup we use)."""
    out = html.escape(text, quote=False)
    out = _CODE.sub(r"<code>\1</code>", out)
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    return _LINK.sub(r'<a href="\2">\1</a>', out)


def markdown_to_html(text: str) -> str:
    """Enough Markdown for summaries we embed: headings, lists, pipe tables, paragraphs."""
    out: list[str] = []
    lines = text.strip().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            i += 1
        elif m := re.match(r"(#{1,6})\s+(.*)", line):
            level = min(6, len(m.group(1)) + 2)  # under the section's own h2
            out.append(f"<h{level}>{inline_html(m.group(2))}</h{level}>")
            i += 1
        elif re.match(r"\s*[-*]\s+", line):
            items = []
            while i < len(lines) and re.match(r"\s*[-*]\s+", lines[i]):
                items.append(re.sub(r"^\s*[-*]\s+", "", lines[i]))
                i += 1
            out.append("<ul>" + "".join(f"<li>{inline_html(t)}</li>" for t in items) + "</ul>")
        elif line.lstrip().startswith("|"):
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-{2,}:?", c) for c in cells):
                    rows.append(cells)
                i += 1
            head, body = rows[0], rows[1:]
            out.append(
                '<table class="plain"><thead><tr>'
                + "".join(f"<th>{inline_html(c)}</th>" for c in head)
                + "</tr></thead><tbody>"
                + "".join(
                    "<tr>" + "".join(f"<td>{inline_html(c)}</td>" for c in r) + "</tr>"
                    for r in body
                )
                + "</tbody></table>"
            )
        else:
            para = []
            while (
                i < len(lines)
                and lines[i].strip()
                and not re.match(r"(#|\s*[-*]\s|\s*\|)", lines[i])
            ):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{inline_html(' '.join(para))}</p>")
    return "\n".join(out)


# ---------------------------------------------------------------- HTML
_CSS = """
:root{--fg:#111827;--muted:#6b7280;--line:#e5e7eb;--bg:#f8fafc;--card:#fff;--accent:#2563eb;
--good:#047857}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.55 -apple-system,BlinkMacSystemFont,
"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans","Liberation Sans",sans-serif}
main{max-width:1180px;margin:0 auto;padding:28px 28px 60px}
header.top{background:linear-gradient(135deg,#0f172a,#1e3a8a);color:#fff;padding:30px 0 26px}
header.top .inner{max-width:1180px;margin:0 auto;padding:0 28px}
header.top h1{margin:0 0 4px;font-size:28px;letter-spacing:-.01em}
header.top .sub{color:#c7d2fe;font-size:14px}
.verdict{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:14px;margin-top:20px}
.stat{background:rgba(255,255,255,.08);border:1px solid rgba(255,255,255,.14);border-radius:10px;
padding:12px 16px}
.stat .k{font-size:12px;text-transform:uppercase;letter-spacing:.06em;color:#a5b4fc}
.stat .v{font-size:22px;font-weight:700;margin-top:2px;word-break:break-word}
.stat .s{font-size:12.5px;color:#c7d2fe}
.verdict-text{margin:16px 0 0;color:#e0e7ff;font-size:15px;max-width:900px}
.verdict-text strong{color:#fff}
header.top code{background:rgba(255,255,255,.12);color:#e0e7ff}
nav{position:sticky;top:0;z-index:2;background:rgba(248,250,252,.95);border-bottom:1px solid var(--line);
backdrop-filter:blur(4px)}
nav .inner{max-width:1180px;margin:0 auto;padding:8px 28px;display:flex;flex-wrap:wrap;gap:4px 18px;
font-size:13.5px}
nav a{color:var(--muted);text-decoration:none}nav a:hover{color:var(--accent)}
section{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:20px 24px;
margin:22px 0;box-shadow:0 1px 2px rgba(0,0,0,.03)}
h2{margin:0 0 12px;font-size:20px;letter-spacing:-.01em}
h3,h4,h5{margin:18px 0 8px}
p{margin:8px 0}
code{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;
background:#f1f5f9;padding:1px 5px;border-radius:4px}
.tablewrap{overflow-x:auto;margin:10px 0}
table{border-collapse:collapse;width:100%;font-size:13.5px;font-variant-numeric:tabular-nums}
th,td{padding:7px 10px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
th{background:#f1f5f9;font-weight:600;color:#374151;position:relative;white-space:normal;
vertical-align:bottom;line-height:1.3}
table.kv td:first-child{font-weight:600;color:#374151;width:190px}
table.kv td{white-space:normal}
table.sortable th{cursor:pointer;user-select:none;padding-right:20px}
table.sortable th::after{content:"\\2195";position:absolute;right:6px;color:#9ca3af;font-size:11px}
table.sortable th.asc::after{content:"\\25B2";color:var(--accent)}
table.sortable th.desc::after{content:"\\25BC";color:var(--accent)}
td.num,th.num{text-align:right}
tbody tr:nth-child(even){background:#fafafa}tbody tr:hover{background:#eff6ff}
td strong{color:var(--good)}
.figs{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:16px;margin-top:10px}
figure{margin:0;border:1px solid var(--line);border-radius:10px;padding:10px;background:#fff}
figure.wide{grid-column:1/-1}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{font-size:13px;color:var(--muted);margin-top:6px}
figcaption b{color:var(--fg)}
details{margin:10px 0}summary{cursor:pointer;color:var(--accent);font-weight:600}
footer{color:var(--muted);font-size:12.5px;text-align:center;margin-top:30px}
"""

_SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function(t){
 t.querySelectorAll("th").forEach(function(th,i){th.addEventListener("click",function(){
  var asc=!th.classList.contains("asc");t.querySelectorAll("th").forEach(function(h){
   h.classList.remove("asc","desc")});th.classList.add(asc?"asc":"desc");
  var b=t.tBodies[0],rows=Array.from(b.rows);rows.sort(function(x,y){
   var a=x.cells[i].dataset.v,c=y.cells[i].dataset.v,na=parseFloat(a),nc=parseFloat(c);
   var r=(!isNaN(na)&&!isNaN(nc))?na-nc:String(a).localeCompare(String(c));return asc?r:-r});
  rows.forEach(function(r){b.appendChild(r)})})})});
"""


def _table_html(t: Table) -> str:
    if not t.sortable:
        rows = "".join(
            "<tr>" + "".join(f"<td>{inline_html(c.text)}</td>" for c in row) + "</tr>"
            for row in t.rows
        )
        return f'<div class="tablewrap"><table class="kv"><tbody>{rows}</tbody></table></div>'
    head = "".join(
        f'<th class="{"num" if n else ""}">{html.escape(h)}</th>'
        for h, n in zip(t.headers, t.numeric, strict=True)
    )
    body = []
    for row in t.rows:
        tds = []
        for cell, n in zip(row, t.numeric, strict=True):
            v = cell.sort if cell.sort is not None else cell.text
            text = inline_html(cell.text)
            if cell.bold:
                text = f"<strong>{text}</strong>"
            cls = ' class="num"' if n else ""
            tds.append(f'<td{cls} data-v="{html.escape(str(v))}">{text}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (
        f'<div class="tablewrap"><table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _figs_html(figs: list[Figure]) -> str:
    parts = []
    for f in figs:
        data = base64.b64encode(f.png).decode("ascii")
        cap = (
            f"<b>{html.escape(f.title)}.</b> {inline_html(f.caption)}"
            if f.caption
            else (f"<b>{html.escape(f.title)}</b>")
        )
        cls = ' class="wide"' if f.wide else ""
        parts.append(
            f'<figure{cls}><img alt="{html.escape(f.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{cap}</figcaption></figure>"
        )
    return f'<div class="figs">{"".join(parts)}</div>'


def _blocks_html(blocks: list) -> str:
    out = []
    for b in blocks:
        if isinstance(b, str):
            out.append(f"<p>{inline_html(b)}</p>")
        elif isinstance(b, Table):
            out.append(_table_html(b))
        elif isinstance(b, Markdown):
            out.append(markdown_to_html(b.text))
        elif isinstance(b, Details):
            out.append(
                f"<details><summary>{html.escape(b.summary)}</summary>"
                f"{_blocks_html(b.blocks)}</details>"
            )
        elif isinstance(b, list):
            out.append(_figs_html(b))
    return "\n".join(out)


def render_html(doc: Document) -> str:
    """The whole report as one HTML string: no external CSS, scripts, fonts or images."""
    stats = "".join(
        f'<div class="stat"><div class="k">{html.escape(k)}</div><div class="v">{html.escape(v)}'
        f'</div><div class="s">{html.escape(s)}</div></div>'
        for k, v, s in doc.verdict
    )
    nav = "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in doc.sections)
    sections = "".join(
        f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>{_blocks_html(s.blocks)}</section>'
        for s in doc.sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(doc.title)}</title><style>{_CSS}</style></head><body>"
        f'<header class="top"><div class="inner"><h1>{html.escape(doc.title)}</h1>'
        f'<div class="sub">{inline_html(doc.subtitle)}</div><div class="verdict">{stats}</div>'
        f'<p class="verdict-text">{inline_html(doc.verdict_text)}</p></div></header>'
        f'<nav><div class="inner">{nav}</div></nav><main>{sections}'
        f"<footer>{inline_html(doc.footer)}</footer></main><script>{_SORT_JS}</script>"
        "</body></html>\n"
    )


# ---------------------------------------------------------------- Markdown
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _table_md(t: Table) -> str:
    lines = ["| " + " | ".join(_md_escape(h) for h in t.headers) + " |"]
    lines.append("| " + " | ".join("---:" if n else "---" for n in t.numeric) + " |")
    for row in t.rows:
        cells = [f"**{_md_escape(c.text)}**" if c.bold else _md_escape(c.text) for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_png(path: Path, png: bytes) -> None:
    write_atomic(path, lambda f: f.write(png))


def _blocks_md(blocks: list, figures_dir: Path, rel: str) -> str:
    out = []
    for b in blocks:
        if isinstance(b, str):
            out.append(b)
        elif isinstance(b, Table):
            out.append(_table_md(b))
        elif isinstance(b, Markdown):
            out.append(b.text.strip())
        elif isinstance(b, Details):
            out.append(f"**{b.summary}**\n\n{_blocks_md(b.blocks, figures_dir, rel)}")
        elif isinstance(b, list):
            for f in b:
                _write_png(figures_dir / f"{f.slug}.png", f.png)
                cap = f" {f.caption}" if f.caption else ""
                out.append(f"![{f.title}]({rel}/{f.slug}.png)\n\n*{f.title}.{cap}*")
    return "\n\n".join(out)


def read_markdown_table(markdown: str, section: str) -> list[dict[str, str]]:
    """The first table under ``## <section>`` of a rendered report, as ``{header: cell}`` rows
    (bold markers stripped): how a test or a tool reads numbers back from ``report.md``."""
    part = markdown.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    lines = part.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))

    def cells(line: str) -> list[str]:
        raw = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        return [c.strip().removeprefix("**").removesuffix("**").replace("\\|", "|") for c in raw]

    header = cells(lines[start])
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, cells(line), strict=True)))
    return rows


def render_markdown(doc: Document, figures_dir: Path, rel: str = "figures") -> str:
    """The report as Markdown; writes each figure to ``figures_dir/<slug>.png``."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# {doc.title}", "", doc.subtitle, ""]
    lines += [f"- **{k}:** {v} ({s})" if s else f"- **{k}:** {v}" for k, v, s in doc.verdict]
    lines += ["", doc.verdict_text, ""]
    for s in doc.sections:
        lines += [f"## {s.title}", "", _blocks_md(s.blocks, figures_dir, rel), ""]
    if doc.footer:
        lines += ["---", "", doc.footer, ""]
    return "\n".join(lines)
