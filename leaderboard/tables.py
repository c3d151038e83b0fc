"""Leaderboard tables: one neutral structure, rendered as Markdown, CSV and LaTeX (booktabs).

``build_tables`` turns a board and its aggregates into :class:`Table` objects; the renderers
only format them, so every format shows the same numbers. The HTML page (``leaderboard/site.py``)
renders the same tables.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

from benchmark.metrics import HEADLINE, HIGHER_IS_BETTER, NULL_VALUES
from leaderboard.aggregate import (
    STATISTICS,
    Aggregate,
    Board,
    Stat,
    best_index,
    domain_metrics,
)


@dataclass
class Cell:
    text: str
    sort: float | None = None
    best: bool = False
    title: str = ""
    """A longer explanation (reasons of n/a or failed cells)."""


@dataclass
class Table:
    key: str
    title: str
    caption: str
    columns: list[str]
    rows: list[list[Cell]]
    kind: str = "domain"
    long: list[dict] = field(default_factory=list)
    """The table's numbers in long form, one dict per (row, column): what the CSV holds."""


def fmt(v: float | None) -> str:
    """Three significant digits; one decimal from 100 up; scientific outside [1e-3, 1e4)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    a = abs(v)
    if a != 0 and (a >= 1e4 or a < 1e-3):
        return f"{v:.2e}"
    if a >= 100:
        return f"{v:.1f}"
    return f"{v:.3g}"


def stat_text(s: Stat | None) -> str:
    if s is None:
        return "—"
    if s.half is None:
        return fmt(s.mean)
    return f"{fmt(s.mean)} ± {fmt(s.half)}"


def _metric_table(board: Board, domain: str, condition: str, metrics: list[str], key: str, title: str,
                  caption: str) -> Table:
    tasks = board.tasks_of(domain=domain, condition=condition)
    columns = ["entry", "seeds", *metrics, "notes"]
    rows: list[list[Cell]] = []
    long: list[dict] = []
    for task in tasks:
        entries = board.entries_of(board.tasks_of(condition=condition, domain=domain))
        groups = [board.group(e, task) for e in entries]
        stats = {m: [g.stat(m) for g in groups] for m in metrics}
        best = {m: best_index(stats[m], HIGHER_IS_BETTER[m]) if m in HIGHER_IS_BETTER else None for m in metrics}
        for i, (e, g) in enumerate(zip(entries, groups)):
            label = e.label if len(tasks) == 1 else f"{e.label} · {task.label}"
            counts = g.by_status()
            n_done = counts.get("done", 0)
            seeds_text = str(n_done) if n_done else "0"
            row = [Cell(label), Cell(seeds_text, float(n_done), title="seeds: " + ",".join(map(str, g.seeds())))]
            na_only = bool(g.records) and counts.get("na", 0) == len(g.records)
            for m in metrics:
                s = stats[m][i]
                if s is None:
                    text = "n/a" if na_only else ("missing" if not g.records or not n_done else "—")
                    row.append(Cell(text, None, title=g.missing_reason() if text != "—" else ""))
                else:
                    null = covers_null(m, s)
                    row.append(Cell(stat_text(s) + (" °" if null else ""), s.mean, best=best[m] == i,
                                    title="interval covers the reference's value" if null else ""))
                long.append({
                    "table": "domain", "domain": domain, "condition": condition, "task": task.label,
                    "entry": e.label, "algo": e.algo, "metric": m,
                    "estimate": None if s is None else s.mean, "ci_low": None if s is None else s.lo,
                    "ci_high": None if s is None else s.hi, "std": None if s is None else s.std,
                    "n_seeds": n_done, "seeds": " ".join(map(str, g.seeds())),
                    "best": best[m] == i, "covers_reference": covers_null(m, s),
                    "note": g.note() if g.records else "no cells",
                })
            note = g.note() if g.records else "no cells"
            row.append(Cell(note, None, title=note))
            rows.append(row)
    return Table(key, title, caption, columns, rows, "domain", long)


CI_CAPTION = ("mean ± half-width of the 95% Student-t interval over training seeds (not evaluation samples); "
              "bold: best, marked only when its interval is disjoint from every other row's; °: the interval "
              "covers the untrained reference's value (normalized_score 0, win_rate 0.5 under paired evaluation), "
              "so the entry is not distinguishable from doing nothing")


def covers_null(metric: str, s: Stat | None) -> bool:
    """Whether a seed interval contains what the untrained reference scores on ``metric``."""
    if s is None or s.lo is None or s.hi is None or metric not in NULL_VALUES:
        return False
    return s.lo <= NULL_VALUES[metric] <= s.hi


def domain_tables(board: Board) -> list[Table]:
    out = []
    for domain in board.domains:
        for cond in board.conditions:
            if not board.tasks_of(domain=domain, condition=cond):
                continue
            metrics = [m for m in HEADLINE if any(m in r.metrics for r in board.records
                                                   if r.domain == domain and r.condition == cond)]
            metrics = metrics or ["normalized_score"]
            out.append(_metric_table(
                board, domain, cond, metrics, f"{domain}-{cond}", f"{domain} — {cond}",
                f"{CI_CAPTION}. normalized_score: 0 = the reference on the same evaluation draws, 100 = its "
                f"best-of-N under the oracle (one definition on every domain)."))
            own = domain_metrics(board, domain)
            if own:
                out.append(_metric_table(
                    board, domain, cond, own, f"{domain}-{cond}-metrics", f"{domain} — {cond}: domain metrics",
                    "mean ± half-width of the 95% Student-t interval over training seeds; these metrics have "
                    "no declared direction, so none is marked best."))
    return out


def aggregate_table(agg: Aggregate) -> Table:
    scope = ("all domains of the condition" if agg.scope == "all" else
             f"only the domains where every entry has cells ({', '.join(t.label for t in agg.tasks)})")
    caption = (f"normalized_score aggregated with rliable over {len(agg.tasks)} task(s) = domains of condition "
               f"{agg.condition} ({', '.join(t.label for t in agg.tasks)}); runs = training seeds. "
               f"Point estimate [95% stratified-bootstrap percentile interval, {agg.reps} resamples of seeds within "
               f"each domain, random_state {agg.seed}]. IQM: interquartile mean of all runs × tasks; mean: mean "
               f"of per-domain means; optimality gap: mean shortfall below γ = 100 (lower is better)")
    if agg.baseline:
        caption += f"; P(> {agg.baseline}): probability of improvement over {agg.baseline}"
    caption += ". Entries without done cells on every domain are shown as missing, never averaged over fewer"
    caption += f". Scope: {scope}."
    columns = ["entry", "seeds/domain", *STATISTICS]
    if agg.baseline:
        columns.append(f"P(> {agg.baseline})")
    columns.append("notes")
    rows, long = [], []
    bests = {}
    for s in STATISTICS:
        ivs = [agg.stats[e.label][s] for e in agg.entries]
        vals = [Stat(iv.estimate, 2, None, iv.lo, iv.hi) if iv.lo is not None else Stat(iv.estimate, 1)
                for iv in ivs]
        bests[s] = best_index(vals, s != "optimality gap")
    for i, e in enumerate(agg.entries):
        st = agg.stats[e.label]
        row = [Cell(e.label), Cell(str(agg.runs[e.label]), float(agg.runs[e.label]))]
        for s in STATISTICS:
            iv = st[s]
            text = fmt(iv.estimate) + (f" [{fmt(iv.lo)}, {fmt(iv.hi)}]" if iv.lo is not None else "")
            row.append(Cell(text, iv.estimate, best=bests[s] == i))
            long.append({"table": f"aggregate-{agg.scope}", "domain": "+".join(t.label for t in agg.tasks),
                         "condition": agg.condition, "entry": e.label, "algo": e.algo, "metric": s,
                         "estimate": iv.estimate, "ci_low": iv.lo, "ci_high": iv.hi,
                         "n_seeds": agg.runs[e.label], "best": bests[s] == i, "note": agg.notes.get(e.label, "")})
        if agg.baseline:
            iv = agg.improvement.get(e.label)
            if iv is None:
                row.append(Cell("baseline", None))
            else:
                text = fmt(iv.estimate) + (f" [{fmt(iv.lo)}, {fmt(iv.hi)}]" if iv.lo is not None else "")
                row.append(Cell(text, iv.estimate))
                long.append({"table": f"aggregate-{agg.scope}", "domain": "+".join(t.label for t in agg.tasks),
                             "condition": agg.condition, "entry": e.label, "algo": e.algo,
                             "metric": f"P(> {agg.baseline})", "estimate": iv.estimate, "ci_low": iv.lo,
                             "ci_high": iv.hi, "n_seeds": agg.runs[e.label], "best": False,
                             "note": agg.notes.get(e.label, "")})
        row.append(Cell(agg.notes.get(e.label, ""), None))
        rows.append(row)
    for label in sorted(agg.missing):
        reason = f"missing: {agg.missing[label]}"
        rows.append([Cell(label), Cell("—"), *[Cell("missing", None, title=reason) for _ in STATISTICS],
                     *([Cell("missing", None)] if agg.baseline else []), Cell(reason, None, title=reason)])
        long.append({"table": f"aggregate-{agg.scope}", "domain": "+".join(t.label for t in agg.tasks),
                     "condition": agg.condition, "entry": label, "algo": label.split(" ")[0], "metric": "IQM",
                     "estimate": None, "ci_low": None, "ci_high": None, "n_seeds": 0, "best": False, "note": reason})
    title = f"cross-domain — {agg.condition}" + ("" if agg.scope == "all" else " (common domains)")
    return Table(f"aggregate-{agg.condition}-{agg.scope}", title, caption, columns,
                 rows, "aggregate", long)


def pairwise_table(agg: Aggregate) -> Table | None:
    labels = [e.label for e in agg.entries]
    if len(labels) < 2:
        return None
    rows = []
    for x in labels:
        rows.append([Cell(x), *[Cell("—" if x == y else fmt(agg.pairwise[(x, y)]),
                                     None if x == y else agg.pairwise[(x, y)]) for y in labels]])
    return Table(f"pairwise-{agg.condition}-{agg.scope}", f"probability of improvement — {agg.condition}"
                 + ("" if agg.scope == "all" else " (common domains)"),
                 "P(row > column): rliable's probability of improvement (Mann–Whitney over seeds, averaged over "
                 "domains), point estimates; intervals for each entry against the baseline are in the table above.",
                 ["P(row > column)", *labels], rows, "pairwise")


def build_tables(board: Board, aggs: list[Aggregate]) -> list[Table]:
    out: list[Table] = []
    for agg in aggs:
        out.append(aggregate_table(agg))
        pw = pairwise_table(agg)
        if pw is not None:
            out.append(pw)
    from leaderboard.claims import claims_table

    claims = claims_table(board)
    return out + domain_tables(board) + ([claims] if claims is not None else [])


# ---------------------------------------------------------------------------------------------
# renderers
# ---------------------------------------------------------------------------------------------


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def provenance_lines(board: Board) -> list[str]:
    return [f"{k}: {v}" for k, v in board.provenance()]


def to_markdown(board: Board, tables: list[Table], images: list[tuple[str, str]] | None = None) -> str:
    lines = ["# prefbench leaderboard", ""]
    lines += [f"- {_md_escape(x)}" for x in provenance_lines(board)]
    lines.append("")
    for t in tables:
        lines += [f"## {t.title}", "", f"_{_md_escape(t.caption)}_", ""]
        lines.append("| " + " | ".join(_md_escape(c) for c in t.columns) + " |")
        lines.append("|" + "|".join(":---" if i == 0 or c == "notes" else "---:"
                                    for i, c in enumerate(t.columns)) + "|")
        for row in t.rows:
            cells = [f"**{_md_escape(c.text)}**" if c.best else _md_escape(c.text) for c in row]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if images:
        lines += ["## plots", ""]
        for path, caption in images:
            lines += [f"![{_md_escape(caption)}]({path})", "", f"_{_md_escape(caption)}_", ""]
    return "\n".join(lines).rstrip() + "\n"


CSV_FIELDS = ["table", "domain", "condition", "task", "entry", "algo", "metric", "estimate", "ci_low", "ci_high",
              "std", "n_seeds", "seeds", "best", "note"]


def _csv_value(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def to_csv(board: Board, tables: list[Table]) -> str:
    buf = io.StringIO()
    for line in provenance_lines(board):
        buf.write(f"# {line}\n")
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for t in tables:
        for row in t.long:
            w.writerow({k: _csv_value(row.get(k)) for k in CSV_FIELDS})
    return buf.getvalue()


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "—": "--", "·": r"$\cdot$",
        "×": r"$\times$", "≥": r"$\geq$", "≤": r"$\leq$", "–": "--", "γ": r"$\gamma$", "τ": r"$\tau$"}


def tex_escape(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(board: Board, tables: list[Table]) -> str:
    out = ["% prefbench leaderboard (needs \\usepackage{booktabs})"]
    out += [f"% {line}" for line in provenance_lines(board)]
    for t in tables:
        if t.kind == "domain":
            cols = [c for c in t.columns if c != "notes"]
        else:
            cols = list(t.columns)
        idx = [t.columns.index(c) for c in cols]
        spec = "l" + "r" * (len(cols) - 1)
        if "notes" in cols:
            spec = spec[:-1] + "p{5cm}"
        out += ["", "\\begin{table}[ht]", "\\centering", "\\small",
                f"\\caption{{{tex_escape(t.title)}: {tex_escape(t.caption)}}}",
                f"\\label{{tab:{t.key}}}", f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
                " & ".join(tex_escape(c) for c in cols) + " \\\\", "\\midrule"]
        for row in t.rows:
            cells = [row[i] for i in idx]
            out.append(" & ".join(f"\\textbf{{{tex_escape(c.text)}}}" if c.best else tex_escape(c.text)
                                  for c in cells) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(out) + "\n"
