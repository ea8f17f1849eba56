"""Compare strategies across run directories: learning curves, tables and a self-contained HTML page.

This module renders (CSV, Markdown, PNG, HTML, console); :mod:`segal.results` loads the runs and
computes every number shown, with the definitions of the statistics.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from segal.errors import UserError
from segal.fileio import atomic_write_bytes, atomic_write_json
from segal.results import AXES, find_runs, load_run, summarize

# ---------------------------------------------------------------------------- rendering

def _pct(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{100 * v:.{digits}f}"


def _cell(point: dict[str, Any] | None) -> str:
    if point is None:
        return "–"
    text = f"{100 * point['mean']:.2f} ± {100 * point['std']:.2f}"
    return text if point["n"] > 1 else f"{100 * point['mean']:.2f}"


def _count(n: float) -> str:
    return str(int(n)) if float(n).is_integer() else f"{n:.1f}"


def budget(summary: dict[str, Any], fraction: float | None) -> str:
    """A budget as a person reads it: the labeled count beside its share of the pool, "37 (10.1%)"; on a
    cost axis the share of the pool's pixels, "15.0%", or the clicks, "12,345"."""
    if fraction is None:
        return "–"
    if summary.get("axis") == "clicks":
        return f"{fraction:,.0f}"
    labeled = next((b["labeled"] for b in summary.get("budgets", []) if b["fraction"] == fraction), None)
    share = f"{100 * fraction:.1f}%"
    return share if labeled is None else f"{_count(labeled)} ({share})"


def _axis_header(summary: dict[str, Any]) -> str:
    """The first column's header: what a row's budget counts."""
    return {"pixels": "labeled pixels (% of pool)", "clicks": "clicks"}.get(summary.get("axis", ""),
                                                                         "labeled (% of pool)")


def _spent(summary: dict[str, Any]) -> str:
    """What "to reach" counts in the summary's headers: labeled (images), pixels or clicks."""
    return {"pixels": "pixels", "clicks": "clicks"}.get(summary.get("axis", ""), "labeled")


def _baseline(summary: dict[str, Any]) -> str:
    return summary.get("baseline") or "random"


def _metric_label(summary: dict[str, Any]) -> str:
    return "mIoU" if summary["metric"] == "miou" else "accuracy"


def _title(summary: dict[str, Any]) -> str:
    n = summary["seeds"]
    return f"{summary['dataset']} · {summary['model']} · {n} seed{'s' if n != 1 else ''}"


def results_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The main table: one row per budget, one column per strategy (mean ± std in %)."""
    labels = list(summary["strategies"])
    header = [_axis_header(summary)] + labels
    rows = []
    for f in summary["fractions"]:
        row = [budget(summary, f)]
        for label in labels:
            s = summary["strategies"][label]
            point = next((p for p in s["curve"] if p["fraction"] == f), None)
            partial = point is not None and point["n"] < len(s["seeds"])  # a cost axis: some seeds' curves end before
            row.append(_cell(point) + (f" (n = {point['n']})" if point is not None and partial else ""))
        rows.append(row)
    return header, rows


def _gain(stat: dict[str, Any] | None) -> str:
    """A paired gain in points: mean, its 95% t-interval, and ``*`` when the interval excludes zero."""
    if stat is None:
        return "–"
    if stat["ci"] is None:
        return f"{100 * stat['mean']:+.2f} (1 seed)"
    lo, hi = stat["ci"]
    return f"{100 * stat['mean']:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]{' *' if stat['real'] else ''}"


def _never(summary: dict[str, Any], fraction: float | None) -> str:
    return "never" if fraction is None else budget(summary, fraction)


def overview_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    target_pct = f"{100 * summary['target']:.0f}%"
    ceiling = summary.get("ceiling")
    spent, base = _spent(summary), _baseline(summary)
    header = ["strategy", "seeds", f"final {_metric_label(summary)}", "AUC",
              f"{spent} to reach {target_pct} of best", f"gain over {base} at final",
              "paired gain at final [95% CI]", "paired AUC gain [95% CI]"]
    if ceiling:
        header += ["% of ceiling", f"{spent} to 90% of ceiling", f"{spent} to 95% of ceiling"]
    rows = []
    for label, s in summary["strategies"].items():
        gain = next((g["gain"] for g in s["gain_over_random"] or [] if g["fraction"] == s["final"]["fraction"]), None)
        paired = s.get("paired") or {}
        final_gain = next((g for g in paired.get("per_budget", []) if g["fraction"] == s["final"]["fraction"]), None)
        row = [
            label, str(len(s["seeds"])), _cell(s["final"]),
            f"{100 * s['auc']:.2f} ± {100 * s['auc_std']:.2f}" if s["auc_std"] is not None else f"{100 * s['auc']:.2f}",
            _never(summary, s["fraction_to_target"]),
            "–" if gain is None else f"{100 * gain:+.2f}",
            _gain(final_gain), _gain(paired.get("auc")),
        ]
        if ceiling:
            reach = s["fraction_to_ceiling"]
            row += [f"{100 * s['of_ceiling']:.1f}", _never(summary, reach["0.9"]), _never(summary, reach["0.95"])]
        rows.append(row)
    return header, rows


def paired_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """Paired gain over random per budget (mean over seeds [95% t-interval]); ``None`` without pairs."""
    labels = [label for label, s in summary["strategies"].items() if s.get("paired") and s["paired"]["pairs"]]
    if not labels:
        return None
    fractions = sorted({g["fraction"] for label in labels for g in summary["strategies"][label]["paired"]["per_budget"]})
    rows = []
    for f in fractions:
        cells = [_gain(next((g for g in summary["strategies"][label]["paired"]["per_budget"] if g["fraction"] == f),
                            None)) for label in labels]
        rows.append([budget(summary, f), *cells])
    rows.append(["AUC", *(_gain(summary["strategies"][label]["paired"]["auc"]) for label in labels)])
    return [_axis_header(summary), *labels], rows


def _amount(summary: dict[str, Any], x: float) -> str:
    """An amount on the axis without the labeled count: "27.3%" or "12,345" clicks."""
    return f"{x:,.0f}" if summary.get("axis") == "clicks" else f"{100 * x:.1f}%"


def _needs(summary: dict[str, Any], v: dict[str, Any] | None) -> str:
    """What the baseline needs for a result, and the share of it the strategy used: "27.3% (0.73×)"."""
    if v is None:
        return "–"
    amount, ratio = _amount(summary, v["baseline_needs"]), v["ratio"]
    times = "" if ratio is None else f"{ratio:.2f}×"
    if v["bound"] == "more":
        return f"> {amount}" + (f" (< {times})" if times else "")
    if v["bound"] == "at_most":
        return f"≤ {amount}" + (f" (≥ {times})" if times else "")
    return amount + (f" ({times})" if times else "")


def savings_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """What the baseline needs for each strategy's mean at each budget, and the share of it the strategy
    used; ``None`` without a baseline and another strategy."""
    labels = [label for label, s in summary["strategies"].items() if s.get("savings")]
    if not labels:
        return None
    rows = []
    for f in summary["fractions"]:
        cells = [_needs(summary, next((v for v in summary["strategies"][label]["savings"] if v["fraction"] == f),
                                      None)) for label in labels]
        rows.append([budget(summary, f), *cells])
    return [_axis_header(summary), *labels], rows


def ceiling_savings_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """Per strategy: where it reaches 90% and 95% of the ceiling, and what the baseline needs for the
    same result there; ``None`` without a ceiling or a baseline."""
    if not summary.get("ceiling"):
        return None
    spent, base = _spent(summary), _baseline(summary)
    rows = []
    for label, s in summary["strategies"].items():
        if not s.get("at_ceiling"):
            continue
        row = [label]
        for share in ("0.9", "0.95"):
            reach = s["fraction_to_ceiling"][share]
            row += [_never(summary, reach), _needs(summary, s["at_ceiling"][share])]
        rows.append(row)
    if not rows:
        return None
    return (["strategy", f"{spent} to 90% of ceiling", f"{base} needs for that result (strategy's share of it)",
             f"{spent} to 95% of ceiling", f"{base} needs for that result (strategy's share of it)"], rows)


SAVINGS_NOTE = ("the budget at which the baseline's mean curve, interpolated linearly between its budgets, first "
                "reaches the strategy's mean; in brackets the strategy's budget as a share of it (below 1×: fewer "
                "labels than the baseline for the same result). > : the baseline never reaches it within its "
                "budgets; ≤ : its first budget already does.")


def ceiling_line(summary: dict[str, Any]) -> str | None:
    c = summary.get("ceiling")
    if not c:
        return None
    spread = f" ± {100 * c['std']:.2f}" if c["n"] > 1 else ""
    return (f"ceiling (whole pool labeled, {c['n']} seed{'s' if c['n'] != 1 else ''}): "
            f"{_metric_label(summary)} {100 * c['mean']:.2f}{spread}")


PAIRED_NOTE = ("paired gain = strategy − random with the same seed (same initial labeled set and initialisation), "
               "in points; mean over seeds [two-sided 95% Student t-interval]; * = the interval excludes 0, "
               "so the difference is real at that level.")
INTERPOLATION_NOTE = ("on a cost axis runs do not share x values, so each run's curve is interpolated linearly at "
                      "a common grid (the strategies' per-cycle mean x values, points within a quarter of a cycle's "
                      "step merged into the smallest); no extrapolation: a grid point outside a run's range has no "
                      "value for it (n = the seeds that have one).")


def paired_note(summary: dict[str, Any]) -> str:
    """:data:`PAIRED_NOTE` against the summary's baseline (on a cost axis, at the grid of :data:`INTERPOLATION_NOTE`)."""
    note = PAIRED_NOTE.replace("strategy − random", f"strategy − {_baseline(summary)}")
    return note + (" On a cost axis, at the interpolated grid points." if summary.get("interpolated") else "")


def settings_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The runs' recipe keys, one row per recipe section ("train: steps 10 · lr 0.001 · …"): one value
    when all runs agree, else the values per strategy in brackets."""
    sections: dict[str, list[str]] = {}
    for item in summary.get("settings", []):
        section, _, key = item["key"].rpartition(".") if "." in item["key"] else ("run", "", item["key"])
        values = item["values"]
        text = values["all"] if "all" in values else "[" + "; ".join(
            f"{label}: {' / '.join(v)}" for label, v in values.items()) + "]"
        sections.setdefault(section, []).append(f"{key} {text}")
    return ["section", "settings"], [[section, " · ".join(items)] for section, items in sections.items()]


def compute_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """CPU hours per run by stage (segal.compute_time), None where no run recorded CPU time."""
    c = summary.get("compute")
    if not c:
        return None
    header = ["strategy", "runs", "train", "acquire", "evaluate", "total", "of it estimated"]
    rows = [[label, str(row["runs"]), *(f"{row[k]:.2f}" for k in ("train", "acquire", "evaluate", "total")),
             f"{row['estimated']:.2f}"] for label, row in c["per_run"].items()]
    return header, rows


def compute_line(summary: dict[str, Any]) -> str | None:
    c = summary.get("compute")
    if not c:
        return None
    runs = sum(row["runs"] for row in c["per_run"].values())
    return (f"CPU time of all {runs} runs: {c['cpu_hours']:.1f} h ({c['estimated_hours']:.1f} h of it estimated), "
            f"i.e. {c['cpu_hours'] / 2:.1f} h on 2 cores (÷ the cores, one thread a run); training "
            f"{c['seconds_per_step']:.3f} CPU s per step over {c['measured_steps']} measured steps "
            "(segal.compute_time: cycles without CPU time are estimated from their steps and wall times)")


def version_line(summary: dict[str, Any]) -> str:
    versions = summary.get("segal_versions") or []
    if not versions:
        return "segal version: not recorded (these runs predate it)"
    return f"segal {', '.join(versions)}" + (" (runs of different versions)" if len(versions) > 1 else "")


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_csv(summary: dict[str, Any], path: Path) -> None:
    labels = list(summary["strategies"])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    clicks = summary.get("axis") == "clicks"
    first = {"pixels": "pixels_percent", "clicks": "clicks"}.get(summary.get("axis", ""), "labeled_percent")
    w.writerow([first] + [f"{label} {k}" for label in labels for k in ("mean", "std", "n")])
    for f in summary["fractions"]:
        row: list[Any] = [f"{f:.1f}" if clicks else f"{100 * f:.4f}"]
        for label in labels:
            p = next((p for p in summary["strategies"][label]["curve"] if p["fraction"] == f), None)
            row += ["", "", 0] if p is None else [f"{100 * p['mean']:.4f}", f"{100 * p['std']:.4f}", p["n"]]
        w.writerow(row)
    atomic_write_bytes(path, buf.getvalue().encode())


def curves_figure(summary: dict[str, Any]):
    """The learning curves (a matplotlib ``Figure``, Agg, no display needed), the legend right of the
    axes: inside them it covered the last budgets, where the strategies differ most."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.8, 4.8), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    scale = 1.0 if summary.get("axis") == "clicks" else 100.0
    for label, s in summary["strategies"].items():
        x = np.array([scale * p["fraction"] for p in s["curve"]])
        y = np.array([100 * p["mean"] for p in s["curve"]])
        e = np.array([100 * p["std"] for p in s["curve"]])
        is_random = label == _baseline(summary)
        (line,) = ax.plot(x, y, marker="s" if s.get("unit") == "region" else "o", markersize=4, label=label,
                          linestyle="--" if is_random else "-", color="0.35" if is_random else None, linewidth=1.6)
        if (e > 0).any():
            ax.fill_between(x, y - e, y + e, color=line.get_color(), alpha=0.18, linewidth=0)
    if summary.get("ceiling"):
        c = summary["ceiling"]
        ax.axhline(100 * c["mean"], color="black", linestyle=":", linewidth=1.4, label="ceiling (100% labeled)")
        if c["std"] > 0:
            ax.axhspan(100 * (c["mean"] - c["std"]), 100 * (c["mean"] + c["std"]), color="black", alpha=0.08, linewidth=0)
    ax.set_xlabel(summary.get("axis_label") or "labeled images (% of pool)")
    pool = _pool_size(summary) if summary.get("axis", "fraction") == "fraction" else None
    if pool:  # the counts on top, as the tables give them beside the %
        def to_count(pct: Any) -> np.ndarray:
            return np.asarray(pct, dtype=np.float64) * pool / 100

        def to_pct(count: Any) -> np.ndarray:
            return 100 * np.asarray(count, dtype=np.float64) / pool

        ax.secondary_xaxis("top", functions=(to_count, to_pct)).set_xlabel("labeled images")
    ax.set_ylabel(f"{_metric_label(summary)} (%)")
    ax.set_title(_title(summary))
    ax.grid(True, alpha=0.35)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper")
    return fig


def _pool_size(summary: dict[str, Any]) -> float | None:
    """The pool size every budget implies (labeled ÷ fraction), or ``None`` when the runs' pools differ."""
    sizes = [b["labeled"] / b["fraction"] for b in summary.get("budgets", []) if b["labeled"] and b["fraction"]]
    if not sizes or max(sizes) - min(sizes) > 1.0:
        return None
    return float(np.mean(sizes))


def plot_curves(summary: dict[str, Any]) -> bytes:
    """The learning curves as PNG bytes."""
    fig = curves_figure(summary)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _html_table(header: list[str], rows: list[list[str]], table_id: str | None = None) -> str:
    attr = f' id="{table_id}"' if table_id else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _per_class_tables(summary: dict[str, Any]) -> str:
    parts = []
    for label, s in summary["strategies"].items():
        classes = list(s["per_class"][0]["classes"]) if s["per_class"] else []
        if not classes:
            continue
        rows = [[budget(summary, pc["fraction"])] + [_class_cell(pc, c) for c in classes] for pc in s["per_class"]]
        parts.append(f"<h3>{html.escape(label)}</h3>" + _html_table([_axis_header(summary)] + classes, rows))
    if not parts:
        return "<p>no per-class scores in these runs</p>"
    return ("<p class=\"note\">mean ± sample std over the seeds that scored the class (no ± with one seed); "
            "– = the class is absent from the test images.</p>" + "".join(parts))


def _class_cell(per_class: dict[str, Any], name: str) -> str:
    mean = per_class["classes"].get(name)
    if mean is None:
        return "–"
    std, n = (per_class.get("std") or {}).get(name), (per_class.get("n") or {}).get(name, 1)
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if n > 1 and std is not None else f"{100 * mean:.1f}"


def _diagnostics_tables(summary: dict[str, Any]) -> str:
    parts = []
    for label, s in summary["strategies"].items():
        if not s["diagnostics"]:
            continue
        rows = []
        for d in s["diagnostics"]:
            hist = d["class_histogram"] or {}
            top = ", ".join(f"{n} {100 * v:.1f}%" for n, v in sorted(hist.items(), key=lambda kv: -kv[1]))
            rows.append([str(d["cycle"]), budget(summary, d["fraction"]), *_auroc_cells(d),
                         "–" if d["seconds"] is None else f"{d['seconds']:.1f}", top or "–"])
        header = ["cycle", "labeled when acquiring", "discriminator AUROC", "AUROC 95% interval",
                  "each seed's 95% interval", "seconds", "acquired classes (share)"]
        if all(d["auroc"] is None for d in s["diagnostics"]):  # not VAAL: no AUROC columns of dashes
            header, rows = header[:2] + header[5:], [r[:2] + r[5:] for r in rows]
        parts.append(f"<h3>{html.escape(label)}</h3><div class=\"diag\">{_html_table(header, rows)}</div>")
    if not parts:
        return "<p>no acquisitions yet</p>"
    return "".join(parts) + f"<p class=\"note\">{html.escape(AUROC_NOTE)}</p>"


AUROC_NOTE = ("discriminator AUROC (VAAL: labeled vs unlabeled images, or regions, it did not train on; 0.5 = it cannot tell them "
              "apart): mean ± sample std over seeds (n = seeds); 95% interval: Student t over the seeds' AUROCs "
              "with two or more seeds, else the seed's own Hanley–McNeil interval.")


def _auroc_cells(d: dict[str, Any]) -> list[str]:
    """The AUROC as mean ± std (n seeds); its 95% interval (over seeds, else the one seed's own); and
    each seed's own interval."""
    if d["auroc"] is None:
        return ["–", "–", "–"]
    n = d.get("auroc_n") or 1
    value = f"{d['auroc']:.3f} ± {d['auroc_std']:.3f} (n = {n})" if n > 1 and d.get("auroc_std") is not None \
        else f"{d['auroc']:.3f} (n = 1)"
    interval = d.get("auroc_seeds_ci") or (d["auroc_ci"][0] if d.get("auroc_ci") and n == 1 else None)
    seeds = "; ".join(f"[{lo:.2f}, {hi:.2f}]" for lo, hi in d.get("auroc_ci") or [])
    return [value, "–" if interval is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]", seeds or "–"]


def auroc_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """VAAL's discriminator AUROC per acquisition, for table.md and the console: whether the discriminator
    learned is what decides if VAAL's ranking means anything, so it belongs beside the results (the HTML
    report adds each acquisition's classes). None when no run has one."""
    rows = [[label, str(d["cycle"]), budget(summary, d["fraction"]), *_auroc_cells(d)]
            for label, s in summary["strategies"].items() for d in s["diagnostics"] if d["auroc"] is not None]
    if not rows:
        return None
    return ["strategy", "cycle", "labeled when acquiring", "discriminator AUROC", "AUROC 95% interval",
            "each seed's 95% interval"], rows


def _group_tables(summary: dict[str, Any]) -> str:
    parts = []
    for label, s in summary["strategies"].items():
        rows_in = [d for d in s["diagnostics"] if d.get("group_share")]
        if not rows_in:
            continue
        groups = sorted({g for d in rows_in for g in d["group_share"]})
        rows = [[str(d["cycle"]), budget(summary, d["fraction"])] + [_pct(d["group_share"].get(g, 0.0), 1) for g in groups]
                + [_pct(d.get("adjacent_share"), 1)] for d in rows_in]
        parts.append(f"<h3>{html.escape(label)}</h3>"
                     + _html_table(["cycle", "labeled when acquiring", *groups, "adjacent picks"], rows))
    if not parts:
        return ""
    return ("<h2>Acquired images by sequence (% of each acquisition)</h2>"
            "<p class=\"note\">mean over seeds; a sequence's frames are near-duplicates, so a strategy that keeps "
            f"drawing from one sequence gains little per label. {ADJACENT_NOTE}</p>" + "".join(parts))


ADJACENT_NOTE = ("Adjacent picks: the share of an acquisition whose neighbour in the pool's order within its sequence "
                 "(the frame just before or after it) was acquired in the same batch, labels spent twice on one scene.")


def adjacent_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """Adjacent picks per strategy (image runs of pools with sequences): the mean over every acquisition
    of every seed, and each seed's own mean."""
    found = {label: s["adjacent_share"] for label, s in summary["strategies"].items() if s.get("adjacent_share")}
    if not found:
        return None
    rows = [[label, _pct(a["mean"], 1), str(a["acquisitions"]),
             ", ".join(f"{seed}: {_pct(v, 1)}" for seed, v in a["seeds"].items())] for label, a in found.items()]
    return ["strategy", "adjacent picks (%)", "acquisitions", "per seed (%)"], rows


NOISE_NOTE = ("Label noise: the share of the labeled pixels whose label is wrong, from the simulated dominant oracle's "
              "metrics.json (every pixel of a region takes its majority class); mean ± sample std over seeds.")


def noise_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """The dominant oracle's label noise per cycle and strategy, for table.md, the console and the HTML report:
    what one click per region costs in wrong labels, beside what it saves.  None when no run records it."""
    rows = [[label, str(d["cycle"]), budget(summary, d["x"]),
             f"{_pct(d['mean'])} ± {_pct(d['std'])}" if d["n"] > 1 else _pct(d["mean"]), str(d["n"])]
            for label, s in summary["strategies"].items() for d in s.get("label_noise") or []]
    if not rows:
        return None
    return ["strategy", "cycle", _axis_header(summary), "wrong labels (%)", "seeds"], rows


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
#settings td,#settings th,.diag td:last-child,.diag th:last-child{text-align:left;white-space:normal}
table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:not(:last-child){white-space:nowrap}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.note{color:#666;font-size:0.9em}"""

# Records the decoded image size on the <img> so a headless browser's DOM dump shows it rendered.
_SCRIPT = """window.addEventListener('load',function(){var i=document.getElementById('curves');
i.setAttribute('data-rendered-width',String(i.naturalWidth));});"""


def render_html(summary: dict[str, Any], png: bytes) -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    title = html.escape(_title(summary))
    runs = "".join(f"<li>{html.escape(label)}: {html.escape(', '.join(s['runs']))}</li>"
                   for label, s in summary["strategies"].items())
    note = (f"mean ± sample std over seeds (std 0 with one seed); x = {summary.get('axis_label', 'labeled fraction')}; "
            f"AUC = trapezoid area over x divided by its range, on the budgets all strategies reached; target = "
            f"{100 * summary['target']:.0f}% of the best final mean ({_pct(summary['threshold'])}).")
    if summary.get("interpolated"):
        note += " " + INTERPOLATION_NOTE
    paired = paired_rows(summary)
    paired_html = (f"<h2>Paired gain over {html.escape(_baseline(summary))} (points)</h2>"
                   + _html_table(*paired, table_id="paired")
                   + f"<p class=\"note\">{html.escape(paired_note(summary))}</p>") if paired else ""
    savings = savings_rows(summary)
    savings_html = (f"<h2>Labels {html.escape(_baseline(summary))} needs for each result</h2>"
                    + _html_table(*savings, table_id="savings")
                    + f"<p class=\"note\">{html.escape(SAVINGS_NOTE)}</p>") if savings else ""
    at_ceiling = ceiling_savings_rows(summary)
    if at_ceiling:
        savings_html += "<h2>Reaching the ceiling</h2>" + _html_table(*at_ceiling, table_id="at-ceiling")
    ceiling = ceiling_line(summary)
    ceiling_html = f"<p id=\"ceiling\">{html.escape(ceiling)}</p>" if ceiling else ""
    warnings_html = ("<h2>Warnings</h2><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in summary["warnings"])
                     + "</ul>") if summary.get("warnings") else ""
    if summary.get("environment_notes"):
        warnings_html += ("<h2 id=\"environment-notes\">Pairs from different numeric environments</h2><ul>"
                          + "".join(f"<li>{html.escape(n)}</li>" for n in summary["environment_notes"]) + "</ul>")
    return (
        f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>segal report: {title}</title>"
        f"<style>{_CSS}</style></head><body><h1>{title}</h1>"
        f"<p id=\"version\" class=\"note\">{html.escape(version_line(summary))} · "
        f"{sum(len(s['runs']) for s in summary['strategies'].values())} runs</p>"
        f"<img id=\"curves\" alt=\"learning curves\" src=\"{uri}\">"
        f"<h2>{html.escape(_metric_label(summary))} (%) by labeled budget</h2>"
        + _html_table(*results_rows(summary), table_id="results")
        + "<h2>Summary</h2>" + ceiling_html + _html_table(*overview_rows(summary), table_id="summary")
        + f"<p class=\"note\">{html.escape(note)}</p>" + paired_html + savings_html + warnings_html
        + f"<h2>Per-class {'IoU' if summary['metric'] == 'miou' else 'accuracy'} (%)</h2>" + _per_class_tables(summary)
        + "<h2>Acquisition diagnostics</h2>" + _diagnostics_tables(summary) + _group_tables(summary)
        + _noise_html(summary)
        + _compute_html(summary)
        + "<h2>Settings</h2><p class=\"note\">from the runs' recipe.yaml (seeds and folders: see Runs)</p>"
        + _html_table(*settings_rows(summary), table_id="settings")
        + f"<h2>Runs</h2><ul>{runs}</ul><script>{_SCRIPT}</script></body></html>"
    )


def _section_html(title: str, table: tuple[list[str], list[list[str]]] | None, table_id: str, note: str) -> str:
    """A titled table with its note, or nothing when there is no table."""
    if not table:
        return ""
    return (f"<h2>{html.escape(title)}</h2>" + _html_table(*table, table_id=table_id)
            + f"<p class=\"note\">{html.escape(note)}</p>")


def _noise_html(summary: dict[str, Any]) -> str:
    return _section_html("Label noise of the dominant oracle", noise_rows(summary), "label-noise", NOISE_NOTE)


def _compute_html(summary: dict[str, Any]) -> str:
    return _section_html("CPU hours per run", compute_rows(summary), "compute", compute_line(summary) or "")


def _print(summary: dict[str, Any], console) -> None:
    from rich.table import Table

    tables = [(results_rows(summary), f"{_metric_label(summary)} (%) · {_title(summary)}"),
              (overview_rows(summary), "summary")]
    paired = paired_rows(summary)
    if paired:
        tables.append((paired, f"paired gain over {_baseline(summary)} (points, * = 95% interval excludes 0)"))
    savings = savings_rows(summary)
    if savings:
        tables.append((savings, f"labels {_baseline(summary)} needs for each result (strategy's share of them)"))
    at_ceiling = ceiling_savings_rows(summary)
    if at_ceiling:
        tables.append((at_ceiling, "reaching the ceiling"))
    auroc = auroc_rows(summary)
    if auroc:
        tables.append((auroc, "discriminator AUROC per acquisition (0.5: it cannot tell labeled from unlabeled)"))
    noise = noise_rows(summary)
    if noise:
        tables.append((noise, "label noise of the dominant oracle (share of labeled pixels that are wrong)"))
    adjacent = adjacent_rows(summary)
    if adjacent:
        tables.append((adjacent, "adjacent picks (a pick's neighbouring frame acquired with it)"))
    for (header, rows), title in tables:
        table = Table(title=title)
        for h in header:
            table.add_column(h, justify="right")
        for r in rows:
            table.add_row(*r)
        console.print(table)
    if ceiling_line(summary):
        console.print(ceiling_line(summary))
    compute = compute_rows(summary)
    if compute:
        table = Table(title="CPU hours per run (mean over the runs)")
        for h in compute[0]:
            table.add_column(h, justify="right")
        for r in compute[1]:
            table.add_row(*r)
        console.print(table)
        console.print(compute_line(summary))
    for w in summary.get("warnings", []):
        console.print(f"[yellow]warning:[/] {w}")
    for n in summary.get("environment_notes", []):
        console.print(f"note: {n}")


def default_out(run_dirs: list[Path]) -> Path:
    parents = [str(p.resolve().parent) for p in run_dirs]
    return Path(os.path.commonpath(parents)) / "report"


def report(run_dirs: list[Path], out: Path | None = None, console=None, target: float = 0.95,
           axis: str | None = None) -> Path:
    """Write curves.png, table.md, table.csv, summary.json and report.html; return the output folder.

    ``axis``: the x of every table and plot, one of :data:`segal.results.AXES` (default: ``pixels`` when a
    run is region-level, else ``fraction``)."""
    if not 0 < target <= 1:
        raise UserError(f"target {target} is not in (0, 1]", fix="e.g. --target 0.95")
    if axis is not None and axis not in AXES:
        raise UserError(f"unknown report axis {axis!r}", fix=f"use --x {' or '.join(AXES)}")
    dirs = find_runs([Path(p) for p in run_dirs])
    runs = [load_run(d) for d in dirs]
    summary = summarize(runs, target, axis)
    out = Path(out) if out is not None else default_out(dirs)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_curves(summary)
    atomic_write_bytes(out / "curves.png", png)
    md = (f"# {_title(summary)}\n\n{_metric_label(summary)} (%), mean ± std over seeds, against "
          f"{summary['axis_label']}\n\n"
          + _markdown(*results_rows(summary)) + "\n" + _markdown(*overview_rows(summary)))
    if ceiling_line(summary):
        md += f"\n{ceiling_line(summary)}\n"
    if summary.get("interpolated"):
        md += f"\n{INTERPOLATION_NOTE}\n"
    paired = paired_rows(summary)
    if paired:
        md += (f"\nPaired gain over {_baseline(summary)} (points)\n\n" + _markdown(*paired)
               + f"\n{paired_note(summary)}\n")
    savings = savings_rows(summary)
    if savings:
        md += (f"\nLabels {_baseline(summary)} needs for each result\n\n" + _markdown(*savings)
               + f"\n{SAVINGS_NOTE}\n")
    at_ceiling = ceiling_savings_rows(summary)
    if at_ceiling:
        md += "\nReaching the ceiling\n\n" + _markdown(*at_ceiling) + "\n"
    auroc = auroc_rows(summary)
    if auroc:
        md += "\nDiscriminator AUROC per acquisition\n\n" + _markdown(*auroc) + f"\n{AUROC_NOTE}\n"
    noise = noise_rows(summary)
    if noise:
        md += "\nLabel noise of the dominant oracle\n\n" + _markdown(*noise) + f"\n{NOISE_NOTE}\n"
    adjacent = adjacent_rows(summary)
    if adjacent:
        md += "\nAdjacent picks\n\n" + _markdown(*adjacent) + f"\n{ADJACENT_NOTE}\n"
    compute = compute_rows(summary)
    if compute:
        md += "\nCPU hours per run (mean over the runs)\n\n" + _markdown(*compute) + f"\n{compute_line(summary)}\n"
    if summary.get("warnings"):
        md += "\n" + "".join(f"- warning: {w}\n" for w in summary["warnings"])
    if summary.get("environment_notes"):
        md += "\n" + "".join(f"- note: {n}\n" for n in summary["environment_notes"])
    md += f"\n{version_line(summary)}\n"
    atomic_write_bytes(out / "table.md", md.encode())
    write_csv(summary, out / "table.csv")
    atomic_write_json(out / "summary.json", summary)
    atomic_write_bytes(out / "report.html", render_html(summary, png).encode())
    if console is not None:
        _print(summary, console)
        console.print(f"report written to {out}")
    return out
