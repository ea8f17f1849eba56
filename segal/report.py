"""Compare strategies across run directories: learning curves, tables and a self-contained HTML page.

Runs are grouped by strategy (``vaal`` and ``vaal (paper)`` stay apart when
``active.strategy_params.mode`` differs from the strategy's default mode) and aligned by labeled fraction rounded to 4 decimals, so
seeds of one protocol land on the same budgets even when pool sizes differ by rounding.

Statistics (every number is also in ``summary.json``, metrics as fractions in [0, 1]):

- mean ± std over seeds at each budget; std is the sample std (ddof=1) when two or more seeds reach
  that budget and 0 with a single seed (there is no spread to estimate).
- area under the learning curve: trapezoid rule over the labeled fraction divided by the fraction
  range, i.e. the curve's average height, comparable to the metric itself.  It is taken over the
  budgets that every strategy reached, so strategies are compared on the same range (a run that is
  still going does not shorten or lengthen another's).  With a single common budget it is the value
  there.  ``auc`` uses the mean curve; ``auc_std`` is the spread of the per-seed areas.
- fraction to target: the smallest labeled fraction at which a strategy's mean reaches
  ``target`` × the best final mean over strategies (final = the strategy's last budget), ``None``
  if it never does.
- gain over random: strategy mean − random mean at each budget both reached (metric points).
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import functools
import html
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from segal.errors import UserError
from segal.pool import atomic_write_bytes, atomic_write_json

RANDOM = "random"


@dataclass
class RunData:
    """What the report needs from one run directory."""

    dir: Path
    recipe: dict[str, Any]
    metrics: list[dict[str, Any]]  # one per finished cycle, by cycle
    queries: dict[int, dict[str, Any]] = field(default_factory=dict)  # cycle -> queries.json

    @property
    def strategy(self) -> str:
        return str(self.metrics[0].get("strategy") or _get(self.recipe, "active.strategy") or "?")

    @property
    def mode(self) -> str | None:
        """The strategy's ``mode`` parameter, ``None`` when unset or equal to the strategy's default."""
        params = _get(self.recipe, "active.strategy_params") or {}
        mode = params.get("mode") if isinstance(params, dict) else None
        return None if mode is None or mode == _default_mode(self.strategy) else str(mode)

    @property
    def label(self) -> str:
        return self.strategy if self.mode is None else f"{self.strategy} ({self.mode})"

    @property
    def seed(self) -> int | None:
        return self.metrics[0].get("seed", _get(self.recipe, "seed"))


@functools.cache
def _default_mode(strategy: str) -> Any:
    """Default of the strategy's ``Params.mode`` (so ``vaal`` and ``vaal:fixed`` are one group)."""
    try:
        from segal.strategies import STRATEGIES

        params = STRATEGIES.get(strategy).Params
        return next((f.default for f in dataclasses.fields(params) if f.name == "mode"), None)
    except Exception:  # an unknown or since-removed strategy: keep whatever mode the recipe names
        return None


def _get(d: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)
    return d


# ---------------------------------------------------------------------------- loading

def is_run_dir(path: Path) -> bool:
    return (path / "recipe.yaml").is_file() and (path / "cycles").is_dir()


def find_runs(paths: list[Path]) -> list[Path]:
    """Run directories among ``paths``; a directory that is not a run is searched for runs below it."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise UserError("no such run directory", path=path, fix="pass the output dir of `segal acquire`")
        if is_run_dir(path):
            found.append(path)
            continue
        below = sorted(p.parent for p in path.rglob("recipe.yaml") if is_run_dir(p.parent)) if path.is_dir() else []
        if not below:
            raise UserError("not a run directory and holds none (no recipe.yaml with cycles/)", path=path,
                            fix="pass run directories written by `segal acquire` or `segal sweep`")
        found.extend(below)
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    if not unique:
        raise UserError("no run directories given", fix="pass one or more run directories")
    return list(unique.values())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON ({exc.msg})", path=path, fix="re-run that cycle or delete the file") from None


def load_run(run_dir: Path) -> RunData:
    recipe_path = run_dir / "recipe.yaml"
    try:
        recipe = yaml.safe_load(recipe_path.read_text()) or {}
    except yaml.YAMLError:
        raise UserError("malformed recipe.yaml", path=recipe_path, fix="restore the run's resolved recipe") from None
    cycle_dirs = sorted((p for p in (run_dir / "cycles").iterdir() if p.is_dir() and p.name.isdigit()),
                        key=lambda p: int(p.name))
    metrics = []
    for d in cycle_dirs:
        if (d / "metrics.json").is_file():
            m = _read_json(d / "metrics.json")
            if not isinstance(m, dict) or "fraction" not in m or not ("miou" in m or "accuracy" in m):
                raise UserError("metrics.json lacks 'fraction' or 'miou'/'accuracy'", path=d / "metrics.json",
                                fix="re-evaluate the run with `segal evaluate`")
            metrics.append(m)
    if not metrics:
        raise UserError("run has no evaluated cycle (no cycles/*/metrics.json)", path=run_dir,
                        fix="run `segal acquire` until cycle 0 is evaluated, or leave this run out")
    queries = {int(d.name): _read_json(d / "queries.json") for d in cycle_dirs if (d / "queries.json").is_file()}
    return RunData(run_dir, recipe if isinstance(recipe, dict) else {}, metrics, queries)


# ---------------------------------------------------------------------------- statistics

def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1); std is 0 for a single value."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) >= 2 else 0.0


def normalised_auc(x: list[float], y: list[float]) -> float:
    """Trapezoid area under y(x) divided by the x range: the curve's mean height."""
    if len(x) == 1:
        return float(y[0])
    xa, ya = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.sum((xa[1:] - xa[:-1]) * (ya[1:] + ya[:-1]) / 2) / (xa[-1] - xa[0]))


def _key(fraction: float) -> float:
    return round(float(fraction), 4)


def _metric_name(runs: list[RunData]) -> str:
    names = {"miou" if "miou" in m else "accuracy" for r in runs for m in r.metrics}
    if len(names) > 1:
        raise UserError("runs mix segmentation (mIoU) and classification (accuracy)",
                        fix="report segmentation and classification runs separately")
    return names.pop()


def _per_class(metrics: dict[str, Any]) -> dict[str, float | None]:
    return metrics.get("per_class_iou") or metrics.get("per_class_accuracy") or {}


def _mean_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(present)) if present else None


def summarize(runs: list[RunData], target: float = 0.95) -> dict[str, Any]:
    """Every number of the report, as a JSON-ready dict (see the module docstring for definitions)."""
    metric = _metric_name(runs)
    groups: dict[str, list[RunData]] = {}
    for r in runs:
        groups.setdefault(r.label, []).append(r)
    order = sorted(groups, key=lambda label: (label != RANDOM, label))

    strategies: dict[str, dict[str, Any]] = {}
    for label in order:
        members = groups[label]
        by_fraction: dict[float, list[tuple[RunData, dict]]] = {}
        for r in members:
            for m in r.metrics:
                by_fraction.setdefault(_key(m["fraction"]), []).append((r, m))
        curve = []
        for f in sorted(by_fraction):
            rows = by_fraction[f]
            values = [float(m[metric]) for _, m in rows]
            mean, std = mean_std(values)
            seconds = [m["train_seconds"] for _, m in rows if m.get("train_seconds") is not None]
            labeled = [m["labeled"] for _, m in rows if m.get("labeled") is not None]
            curve.append({
                "fraction": f, "labeled": float(np.mean(labeled)) if labeled else None,
                "mean": mean, "std": std, "n": len(values), "values": values,
                "seeds": [r.seed for r, _ in rows],
                "train_seconds": float(np.mean(seconds)) if seconds else None,
            })
        classes = list(dict.fromkeys(name for r in members for m in r.metrics for name in _per_class(m)))
        per_class = [{"fraction": f, "classes": {c: _mean_or_none([_per_class(m).get(c) for _, m in by_fraction[f]])
                                                 for c in classes}} for f in sorted(by_fraction)]
        strategies[label] = {
            "strategy": members[0].strategy, "mode": members[0].mode,
            "runs": [str(r.dir) for r in members], "seeds": sorted({r.seed for r in members if r.seed is not None}),
            "curve": curve, "per_class": per_class, "diagnostics": _diagnostics(members),
        }

    common = sorted(set.intersection(*({p["fraction"] for p in s["curve"]} for s in strategies.values())))
    finals = {label: s["curve"][-1]["mean"] for label, s in strategies.items()}
    best_label = max(finals, key=lambda label: finals[label])
    threshold = target * finals[best_label]
    for label, s in strategies.items():
        points = {p["fraction"]: p for p in s["curve"]}
        span = common or [p["fraction"] for p in s["curve"]]
        s["auc"] = normalised_auc(span, [points[f]["mean"] for f in span])
        per_seed = []
        for r in groups[label]:
            own = {_key(m["fraction"]): float(m[metric]) for m in r.metrics}
            if all(f in own for f in span):
                per_seed.append(normalised_auc(span, [own[f] for f in span]))
        s["auc_std"] = mean_std(per_seed)[1] if per_seed else 0.0
        s["auc_range"] = [span[0], span[-1]]
        s["final"] = {k: s["curve"][-1][k] for k in ("fraction", "mean", "std", "n")}
        s["fraction_to_target"] = next((p["fraction"] for p in s["curve"] if p["mean"] >= threshold), None)
        if RANDOM in strategies and label != RANDOM:
            rnd = {p["fraction"]: p["mean"] for p in strategies[RANDOM]["curve"]}
            s["gain_over_random"] = [{"fraction": p["fraction"], "gain": p["mean"] - rnd[p["fraction"]]}
                                     for p in s["curve"] if p["fraction"] in rnd]
        else:
            s["gain_over_random"] = None

    datasets = sorted({str(_get(r.recipe, "data.dataset")) for r in runs})
    models = sorted({_model_name(r.recipe) for r in runs})
    return {
        "metric": metric, "target": target, "threshold": threshold,
        "best_final": {"strategy": best_label, "mean": finals[best_label]},
        "dataset": ", ".join(datasets), "model": ", ".join(models),
        "seeds": max(len(s["seeds"]) for s in strategies.values()),
        "fractions": sorted({p["fraction"] for s in strategies.values() for p in s["curve"]}),
        "common_fractions": common,
        "strategies": strategies,
    }


def _model_name(recipe: dict[str, Any]) -> str:
    name, encoder = _get(recipe, "model.name"), _get(recipe, "model.encoder")
    return f"{name}/{encoder}" if name == "deeplabv3plus" and encoder else str(name)


def _diagnostics(members: list[RunData]) -> list[dict[str, Any]]:
    """Per acquisition cycle: mean discriminator AUROC (VAAL), mean acquired class histogram, time."""
    cycles = sorted({c for r in members for c in r.queries})
    out = []
    for c in cycles:
        qs = [(r, r.queries[c]) for r in members if c in r.queries]
        fractions = [m["fraction"] for r, _ in qs for m in r.metrics if m.get("cycle") == c]
        aurocs = [q.get("diagnostics", {}).get("auroc") for _, q in qs]
        hists = [q.get("diagnostics", {}).get("class_histogram") for _, q in qs]
        hists = [h for h in hists if h]
        names = list(dict.fromkeys(n for h in hists for n in h))
        seconds = [q["seconds"] for _, q in qs if q.get("seconds") is not None]
        out.append({
            "cycle": c, "fraction": _key(np.mean(fractions)) if fractions else None, "n": len(qs),
            "auroc": _mean_or_none(aurocs),
            "class_histogram": {n: float(np.mean([h.get(n, 0.0) for h in hists])) for n in names} if hists else None,
            "seconds": float(np.mean(seconds)) if seconds else None,
        })
    return out


# ---------------------------------------------------------------------------- rendering

def _pct(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{100 * v:.{digits}f}"


def _cell(point: dict[str, Any] | None) -> str:
    if point is None:
        return "–"
    text = f"{100 * point['mean']:.2f} ± {100 * point['std']:.2f}"
    return text if point["n"] > 1 else f"{100 * point['mean']:.2f}"


def _metric_label(summary: dict[str, Any]) -> str:
    return "mIoU" if summary["metric"] == "miou" else "accuracy"


def _title(summary: dict[str, Any]) -> str:
    n = summary["seeds"]
    return f"{summary['dataset']} · {summary['model']} · {n} seed{'s' if n != 1 else ''}"


def results_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The main table: one row per budget, one column per strategy (mean ± std in %)."""
    labels = list(summary["strategies"])
    header = ["labeled %"] + labels
    rows = []
    for f in summary["fractions"]:
        row = [f"{100 * f:.2f}"]
        for label in labels:
            point = next((p for p in summary["strategies"][label]["curve"] if p["fraction"] == f), None)
            row.append(_cell(point))
        rows.append(row)
    return header, rows


def overview_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    target_pct = f"{100 * summary['target']:.0f}%"
    header = ["strategy", "seeds", f"final {_metric_label(summary)}", "AUC",
              f"labeled % to reach {target_pct} of best", "gain over random at final"]
    rows = []
    for label, s in summary["strategies"].items():
        gain = s["gain_over_random"][-1]["gain"] if s["gain_over_random"] else None
        rows.append([
            label, str(len(s["seeds"])), _cell(s["final"]),
            f"{100 * s['auc']:.2f} ± {100 * s['auc_std']:.2f}" if len(s["seeds"]) > 1 else f"{100 * s['auc']:.2f}",
            "never" if s["fraction_to_target"] is None else f"{100 * s['fraction_to_target']:.2f}",
            "–" if gain is None else f"{100 * gain:+.2f}",
        ])
    return header, rows


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_csv(summary: dict[str, Any], path: Path) -> None:
    labels = list(summary["strategies"])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["labeled_percent"] + [f"{label} {k}" for label in labels for k in ("mean", "std", "n")])
    for f in summary["fractions"]:
        row: list[Any] = [f"{100 * f:.4f}"]
        for label in labels:
            p = next((p for p in summary["strategies"][label]["curve"] if p["fraction"] == f), None)
            row += ["", "", 0] if p is None else [f"{100 * p['mean']:.4f}", f"{100 * p['std']:.4f}", p["n"]]
        w.writerow(row)
    atomic_write_bytes(path, buf.getvalue().encode())


def plot_curves(summary: dict[str, Any]) -> bytes:
    """The learning curves as PNG bytes (Agg, no display needed)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8), dpi=120)
    ax = fig.add_subplot()
    for label, s in summary["strategies"].items():
        x = np.array([100 * p["fraction"] for p in s["curve"]])
        y = np.array([100 * p["mean"] for p in s["curve"]])
        e = np.array([100 * p["std"] for p in s["curve"]])
        is_random = label == RANDOM
        (line,) = ax.plot(x, y, marker="o", markersize=4, label=label, linestyle="--" if is_random else "-",
                          color="0.35" if is_random else None, linewidth=1.6)
        if (e > 0).any():
            ax.fill_between(x, y - e, y + e, color=line.get_color(), alpha=0.18, linewidth=0)
    ax.set_xlabel("labeled images (% of pool)")
    ax.set_ylabel(f"{_metric_label(summary)} (%)")
    ax.set_title(_title(summary))
    ax.grid(True, alpha=0.35)
    ax.legend(loc="lower right")
    fig.tight_layout()
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
        rows = [[f"{100 * pc['fraction']:.2f}"] + [_pct(pc["classes"].get(c), 1) for c in classes] for pc in s["per_class"]]
        parts.append(f"<h3>{html.escape(label)}</h3>" + _html_table(["labeled %"] + classes, rows))
    return "".join(parts) or "<p>no per-class scores in these runs</p>"


def _diagnostics_tables(summary: dict[str, Any]) -> str:
    parts = []
    for label, s in summary["strategies"].items():
        if not s["diagnostics"]:
            continue
        rows = []
        for d in s["diagnostics"]:
            hist = d["class_histogram"] or {}
            top = ", ".join(f"{n} {100 * v:.1f}%" for n, v in sorted(hist.items(), key=lambda kv: -kv[1]))
            rows.append([str(d["cycle"]), _pct(d["fraction"]), "–" if d["auroc"] is None else f"{d['auroc']:.3f}",
                         "–" if d["seconds"] is None else f"{d['seconds']:.1f}", top or "–"])
        parts.append(f"<h3>{html.escape(label)}</h3>" + _html_table(
            ["cycle", "labeled % when acquiring", "discriminator AUROC", "seconds", "acquired classes (share)"], rows))
    return "".join(parts) or "<p>no acquisitions yet</p>"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.note{color:#666;font-size:0.9em}"""

# Records the decoded image size on the <img> so a headless browser's DOM dump shows it rendered.
_SCRIPT = """window.addEventListener('load',function(){var i=document.getElementById('curves');
i.setAttribute('data-rendered-width',String(i.naturalWidth));});"""


def render_html(summary: dict[str, Any], png: bytes) -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    title = html.escape(_title(summary))
    runs = "".join(f"<li>{html.escape(label)}: {html.escape(', '.join(s['runs']))}</li>"
                   for label, s in summary["strategies"].items())
    note = (f"mean ± sample std over seeds (std 0 with one seed); AUC = trapezoid area over the labeled fraction "
            f"divided by its range, on the budgets all strategies reached; target = "
            f"{100 * summary['target']:.0f}% of the best final mean ({_pct(summary['threshold'])}).")
    return (
        f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>segal report: {title}</title>"
        f"<style>{_CSS}</style></head><body><h1>{title}</h1>"
        f"<img id=\"curves\" alt=\"learning curves\" src=\"{uri}\">"
        f"<h2>{html.escape(_metric_label(summary))} (%) by labeled budget</h2>"
        + _html_table(*results_rows(summary), table_id="results")
        + "<h2>Summary</h2>" + _html_table(*overview_rows(summary), table_id="summary")
        + f"<p class=\"note\">{html.escape(note)}</p>"
        + f"<h2>Per-class {'IoU' if summary['metric'] == 'miou' else 'accuracy'} (%)</h2>" + _per_class_tables(summary)
        + "<h2>Acquisition diagnostics</h2>" + _diagnostics_tables(summary)
        + f"<h2>Runs</h2><ul>{runs}</ul><script>{_SCRIPT}</script></body></html>"
    )


def _print(summary: dict[str, Any], console) -> None:
    from rich.table import Table

    for (header, rows), title in ((results_rows(summary), f"{_metric_label(summary)} (%) · {_title(summary)}"),
                                  (overview_rows(summary), "summary")):
        table = Table(title=title)
        for h in header:
            table.add_column(h, justify="right")
        for r in rows:
            table.add_row(*r)
        console.print(table)


def default_out(run_dirs: list[Path]) -> Path:
    parents = [str(p.resolve().parent) for p in run_dirs]
    return Path(os.path.commonpath(parents)) / "report"


def report(run_dirs: list[Path], out: Path | None = None, console=None, target: float = 0.95) -> Path:
    """Write curves.png, table.md, table.csv, summary.json and report.html; return the output folder."""
    if not 0 < target <= 1:
        raise UserError(f"target {target} is not in (0, 1]", fix="e.g. --target 0.95")
    dirs = find_runs([Path(p) for p in run_dirs])
    runs = [load_run(d) for d in dirs]
    summary = summarize(runs, target)
    out = Path(out) if out is not None else default_out(dirs)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_curves(summary)
    atomic_write_bytes(out / "curves.png", png)
    md = (f"# {_title(summary)}\n\n{_metric_label(summary)} (%), mean ± std over seeds\n\n"
          + _markdown(*results_rows(summary)) + "\n" + _markdown(*overview_rows(summary)))
    atomic_write_bytes(out / "table.md", md.encode())
    write_csv(summary, out / "table.csv")
    atomic_write_json(out / "summary.json", summary)
    atomic_write_bytes(out / "report.html", render_html(summary, png).encode())
    if console is not None:
        _print(summary, console)
        console.print(f"report written to {out}")
    return out
