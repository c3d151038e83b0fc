"""The static leaderboard page and the writer of every output format.

``index.html`` is one self-contained file (inline CSS and a few lines of inline JavaScript for
sortable tables; no server, no CDN) next to an ``img/`` folder of PNG and SVG plots. Open it from
disk. Every output records the store it came from, the number of cells and the code versions.

The page's "pictures" section shows the image artifacts (``.png``, ``.gif``: the image domain's
sample grid, the motion domain's animation) of each entry's first done seed on each task, as
thumbnails linking to the files. The files are not copied: a link is relative when the file lies
under the page folder's parent (the page written in or next to the store's home), else an absolute
``file://`` URI; a run whose files are gone is skipped.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from benchmark.store import Record
from leaderboard.aggregate import Aggregate, Board
from leaderboard.tables import Table, build_tables, to_csv, to_latex, to_markdown

FORMATS = ("md", "csv", "latex", "html")
FILES = {"md": "leaderboard.md", "csv": "leaderboard.csv", "latex": "leaderboard.tex", "html": "index.html"}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#222;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.3rem}h2{font-size:1.15rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
dl.prov{display:grid;grid-template-columns:max-content auto;gap:.1rem 1rem;font-size:.85rem;color:#444}
dl.prov dt{font-weight:600}dl.prov dd{margin:0}
nav a{margin-right:.8rem;font-size:.9rem}
table{border-collapse:collapse;font-size:.85rem;margin:.4rem 0 .2rem}
th,td{padding:.25rem .6rem;border-bottom:1px solid #e4e4e4;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
td.note,th.note{text-align:left;white-space:normal;color:#666;max-width:28rem}
th{cursor:pointer;background:#f5f5f5;user-select:none}th:after{content:" \\2195";color:#aaa;font-size:.75em}
th.asc:after{content:" \\2191";color:#333}th.desc:after{content:" \\2193";color:#333}
td.best{font-weight:700;background:#eaf5ea}td.missing{color:#a33}
p.caption{font-size:.8rem;color:#555;max-width:60rem;margin:.2rem 0}
figure{margin:1.2rem 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.8rem;color:#555}div.scroll{overflow-x:auto}
h3{font-size:.95rem;margin:1rem 0 .2rem}div.gallery{display:flex;flex-wrap:wrap;gap:.4rem 1.2rem}
div.gallery figure{margin:.3rem 0}div.gallery figcaption{max-width:240px}
"""

JS = """
document.querySelectorAll("table.sortable").forEach(function(table){
  table.querySelectorAll("th").forEach(function(th, col){
    th.addEventListener("click", function(){
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var asc = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function(h){h.classList.remove("asc","desc");});
      th.classList.add(asc ? "asc" : "desc");
      rows.sort(function(a, b){
        var x = a.cells[col].getAttribute("data-sort"), y = b.cells[col].getAttribute("data-sort");
        if (x === null && y === null) return a.cells[col].textContent.localeCompare(b.cells[col].textContent);
        if (x === null) return 1; if (y === null) return -1;
        return asc ? parseFloat(x) - parseFloat(y) : parseFloat(y) - parseFloat(x);
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""


def _e(s: str) -> str:
    return html.escape(s, quote=True)


def _table_html(t: Table) -> str:
    out = [f'<h2 id="{_e(t.key)}">{_e(t.title)}</h2>', f'<p class="caption">{_e(t.caption)}</p>',
           f'<div class="scroll"><table class="sortable" data-kind="{_e(t.kind)}"><thead><tr>']
    out += [f'<th class="note">{_e(c)}</th>' if c == "notes" else f"<th>{_e(c)}</th>" for c in t.columns]
    out.append("</tr></thead><tbody>")
    for row in t.rows:
        out.append("<tr>")
        for i, c in enumerate(row):
            cls = []
            if c.best:
                cls.append("best")
            if c.text in ("missing", "n/a"):
                cls.append("missing")
            if t.columns[i] == "notes":
                cls.append("note")
            attrs = f' class="{" ".join(cls)}"' if cls else ""
            if c.sort is not None:
                attrs += f' data-sort="{c.sort!r}"'
            if c.title:
                attrs += f' title="{_e(c.title)}"'
            out.append(f"<td{attrs}>{_e(c.text)}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


IMAGE_SUFFIXES = (".png", ".gif")
THUMB_WIDTH_PX = 240


@dataclass(frozen=True)
class Picture:
    """One image artifact of a run, as the page shows it."""

    task: str
    """the task's heading, e.g. ``image — default``"""
    entry: str
    seed: int
    run_id: str
    name: str
    """the file's name, e.g. ``grid.png``"""
    href: str
    """the link from the page to the file"""


def _artifact_file(artifact: str, store_dir: Path) -> Path | None:
    """The existing file of a stored artifact path, or None. A path that no longer resolves (a
    relative home, a store moved with its ``artifacts/`` folder) is looked for under the store's folder."""
    path = Path(artifact)
    if path.is_file():
        return path.resolve()
    if "artifacts" in path.parts:
        i = len(path.parts) - 1 - path.parts[::-1].index("artifacts")
        moved = store_dir.joinpath(*path.parts[i:])
        if moved.is_file():
            return moved.resolve()
    return None


def _href(file: Path, page_dir: Path) -> str:
    """A relative link when ``file`` lies under the page folder's parent, else a ``file://`` URI."""
    page_dir = page_dir.resolve()
    if file.is_relative_to(page_dir.parent):
        return quote(Path(os.path.relpath(file, page_dir)).as_posix())
    return file.as_uri()


def _run_images(rec: Record, store_dir: Path) -> list[Path]:
    files = [_artifact_file(a, store_dir) for a in rec.artifacts if Path(a).suffix.lower() in IMAGE_SUFFIXES]
    return [f for f in files if f is not None]


def run_pictures(board: Board, page_dir: Path) -> list[Picture]:
    """For every task and entry, the image artifacts of its first done seed that has any on disk."""
    store_dir = Path(board.store).parent
    out: list[Picture] = []
    for task in board.tasks:
        for entry in board.entries:
            done = board.group(entry, task).done
            found = next(((r, fs) for r in done if (fs := _run_images(r, store_dir))), None)
            if found is None:
                continue
            rec, files = found
            out += [Picture(f"{task.label} — {task.condition}", entry.label, rec.seed, rec.run_id, f.name,
                            _href(f, page_dir)) for f in files]
    return out


def _pictures_html(pictures: list[Picture]) -> str:
    """The "pictures" section: per task, a gallery of thumbnails linking to the files."""
    if not pictures:
        return ""
    out = ['<h2 id="pictures">pictures</h2>',
           "<p class=\"caption\">Pictures written by the runs (image artifacts, e.g. the trained policy's samples "
           "next to the reference's) of each entry's first seed on each task. Click one for the file.</p>"]
    for task in dict.fromkeys(p.task for p in pictures):
        out += [f"<h3>{_e(task)}</h3>", '<div class="gallery">']
        for p in (p for p in pictures if p.task == task):
            what = f"{p.entry} · seed {p.seed} · {p.name}"
            out.append(f'<figure><a href="{_e(p.href)}"><img src="{_e(p.href)}" width="{THUMB_WIDTH_PX}" '
                       f'alt="{_e(what)}"></a><figcaption>{_e(what)} <span title="run id">'
                       f"({_e(p.run_id[:12])})</span></figcaption></figure>")
        out.append("</div>")
    return "\n".join(out)


def to_html(board: Board, tables: list[Table], images: list[tuple[str, str]],
            pictures: list[Picture] | None = None) -> str:
    """The page: provenance, the tables, the plots (``img/``) and, when runs have any, their pictures."""
    prov = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in board.provenance())
    nav = " ".join(f'<a href="#{_e(t.key)}">{_e(t.title)}</a>' for t in tables)
    nav += ' <a href="#plots">plots</a>' + (' <a href="#pictures">pictures</a>' if pictures else "")
    figs = "\n".join(
        f'<figure><img src="img/{_e(name)}.png" alt="{_e(cap)}"><figcaption>{_e(cap)} '
        f'(<a href="img/{_e(name)}.svg">SVG</a>)</figcaption></figure>' for name, cap in images)
    body = "\n".join(_table_html(t) for t in tables)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>prefbench leaderboard ({_e(board.preset)})</title>
<style>{CSS}</style>
</head>
<body>
<h1>prefbench leaderboard</h1>
<dl class="prov">{prov}</dl>
<nav>{nav}</nav>
<p class="caption">Click a column header to sort. Hover a "missing" or "n/a" cell for its reason.
The same numbers are in leaderboard.csv / .md / .tex when those formats were written.</p>
{body}
<h2 id="plots">plots</h2>
{figs}
{_pictures_html(pictures or [])}
<script>{JS}</script>
</body>
</html>
"""


def parse_formats(spec: str) -> list[str]:
    from benchmark.errors import UserError

    names = list(FORMATS) if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    aliases = {"markdown": "md", "tex": "latex"}
    names = [aliases.get(n, n) for n in names]
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise UserError(f"--format {spec}: use md, csv, latex, html, a comma list of them, or all")
    return sorted(set(names), key=FORMATS.index)


def write(board: Board, aggs: list[Aggregate], formats: list[str], out: Path) -> list[Path]:
    """Write the chosen formats (and, for md/html, the plots under ``out/img``). Returns the files."""
    from leaderboard.plots import make_plots

    out.mkdir(parents=True, exist_ok=True)
    tables = build_tables(board, aggs)
    images: list[tuple[str, str]] = []
    written: list[Path] = []
    if {"md", "html"} & set(formats):
        img = out / "img"
        if img.exists():  # plots of a previous board that this one no longer has
            for old in sorted(img.glob("*")):
                if old.suffix in (".png", ".svg"):
                    old.unlink()
        images = make_plots(board, aggs, img)
        for name, _ in images:
            written += [img / f"{name}.png", img / f"{name}.svg"]
    for f in formats:
        path = out / FILES[f]
        if f == "md":
            text = to_markdown(board, tables, [(f"img/{n}.png", c) for n, c in images])
        elif f == "csv":
            text = to_csv(board, tables)
        elif f == "latex":
            text = to_latex(board, tables)
        else:
            text = to_html(board, tables, images, run_pictures(board, out))
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return sorted(written)


def render(board: Board, aggs: list[Aggregate], fmt: str) -> str:
    """One format as text (for the terminal); html needs files, see :func:`write`."""
    tables = build_tables(board, aggs)
    return {"md": lambda: to_markdown(board, tables), "csv": lambda: to_csv(board, tables),
            "latex": lambda: to_latex(board, tables)}[fmt]()
