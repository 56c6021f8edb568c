"""A model report as one self-contained HTML page: tables, and plotly plots with plotly.js inlined
(so the page opens offline, from a file, with no request anywhere)."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from fedcredit.report.scorecard import scorecard_html

TEMPLATE = "plotly_white"
BAD, GOOD, GREY = "#c0392b", "#2e86c1", "#7f8c8d"
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def plot_ids(report: dict[str, Any]) -> list[str]:
    """The plots the page holds for this report, in page order (stability only when asked)."""
    return ["roc", "ks", "lift", "gains", "distribution",
            *(["stability"] if report.get("stability") else [])]


def render_html(report: dict[str, Any]) -> str:
    """The whole page for a report of `models.report.validation_report` (plus its `about`)."""
    figures: dict[str, Callable[[dict[str, Any]], go.Figure]] = {
        "roc": _roc, "ks": _ks, "lift": _lift, "gains": _gains,
        "distribution": _distribution, "stability": _stability}
    plots = "\n".join(
        f'<section class="plot">{_figure_html(figures[name](report), name)}</section>'
        for name in plot_ids(report))
    title = f"Model report: {report.get('model_id') or 'model'}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head>
<body>
<h1>{html.escape(title)}</h1>
{_summary(report)}
<div class="plots">
{plots}
</div>
<h2>Equal-frequency table (riskiest first)</h2>
{_deciles(report)}
{_segments(report)}
{_stability_table(report)}
{scorecard_html(report.get("scorecard"))}
</body>
</html>
"""


def _figure_html(figure: go.Figure, name: str) -> str:
    figure.update_layout(template=TEMPLATE, height=380, margin={"l": 60, "r": 20, "t": 50,
                                                               "b": 50},
                         legend={"orientation": "h", "y": -0.2})
    out: str = figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"plot-{name}",
                              config=PLOT_CONFIG, default_height="380px")
    return out


def _diagonal(figure: go.Figure, name: str = "random") -> None:
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name=name,
                                line={"dash": "dash", "color": GREY}))


def _roc(report: dict[str, Any]) -> go.Figure:
    roc = report["curves"]["roc"]
    figure = go.Figure(go.Scatter(x=roc["fpr"], y=roc["tpr"], mode="lines",
                                  name=f"model (AUC {report['auc']:.3f})",
                                  line={"color": BAD}))
    _diagonal(figure)
    figure.update_layout(title="ROC curve", xaxis_title="false positive rate (goods called bad)",
                         yaxis_title="true positive rate (bads caught)")
    return figure


def _ks(report: dict[str, Any]) -> go.Figure:
    curve = report["curves"]["ks"]
    share, bads, goods = curve["population"], curve["bads"], curve["goods"]
    gaps = [abs(b - g) for b, g in zip(bads, goods, strict=True)]
    at = max(range(len(gaps)), key=gaps.__getitem__)
    figure = go.Figure([
        go.Scatter(x=share, y=bads, mode="lines", name="cumulative bads", line={"color": BAD}),
        go.Scatter(x=share, y=goods, mode="lines", name="cumulative goods",
                   line={"color": GOOD}),
        go.Scatter(x=[share[at], share[at]], y=[goods[at], bads[at]], mode="lines+markers",
                   name=f"KS {report['ks']:.3f}", line={"color": GREY, "dash": "dot"})])
    figure.update_layout(title="KS curve", xaxis_title="share of rows, riskiest first",
                         yaxis_title="cumulative share")
    return figure


def _lift(report: dict[str, Any]) -> go.Figure:
    rows = report["deciles"]
    bins = [str(r["bin"]) for r in rows]
    figure = go.Figure([
        go.Bar(x=bins, y=[r["lift"] for r in rows], name="lift", marker_color=BAD),
        go.Scatter(x=bins, y=[r["cum_lift"] for r in rows], mode="lines+markers",
                   name="cumulative lift", line={"color": GREY})])
    figure.add_hline(y=1.0, line_dash="dash", line_color=GREY)
    figure.update_layout(title="Lift by bin", xaxis_title="bin (1 = riskiest)",
                         yaxis_title="bad rate / overall bad rate")
    return figure


def _gains(report: dict[str, Any]) -> go.Figure:
    rows = report["deciles"]
    figure = go.Figure(go.Scatter(x=[0.0] + [r["cum_rows"] for r in rows],
                                  y=[0.0] + [r["cum_bads"] for r in rows],
                                  mode="lines+markers", name="model", line={"color": BAD}))
    _diagonal(figure)
    figure.update_layout(title="Cumulative gains", xaxis_title="share of rows, riskiest first",
                         yaxis_title="share of bads caught")
    return figure


def _distribution(report: dict[str, Any]) -> go.Figure:
    dist = report["score_distribution"]
    edges = dist["edges"]
    centres = [(a + b) / 2 for a, b in zip(edges, edges[1:], strict=False)]
    width = (edges[-1] - edges[0]) / max(len(centres), 1) or 1.0
    label = "policy score (points)" if dist["score"] == "points" else "probability of default"
    figure = go.Figure([
        go.Bar(x=centres, y=dist["goods"], width=width, name="goods", marker_color=GOOD,
               opacity=0.7),
        go.Bar(x=centres, y=dist["bads"], width=width, name="bads", marker_color=BAD,
               opacity=0.7)])
    figure.update_layout(title="Score distribution", barmode="overlay", xaxis_title=label,
                         yaxis_title="rows")
    return figure


def _stability(report: dict[str, Any]) -> go.Figure:
    stability = report["stability"]
    bins = [str(r["bin"]) for r in stability["bins"]]
    figure = go.Figure([
        go.Bar(x=bins, y=[r["expected"] for r in stability["bins"]],
               name="validation rows", marker_color=GREY),
        go.Bar(x=bins, y=[r["actual"] for r in stability["bins"]],
               name="scoring population", marker_color=BAD)])
    figure.update_layout(title=f"Population stability (PSI {stability['psi']:.3f}, "
                         f"{stability['reading']})", barmode="group",
                         xaxis_title="PD bin of the validation rows (1 = lowest PD)",
                         yaxis_title="share of rows")
    return figure


def _fmt(value: Any, spec: str = ".4f") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return format(value, spec)
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


def _summary(report: dict[str, Any]) -> str:
    facts = [("model", report.get("model_id")), ("algorithm", report.get("algorithm")),
             ("training job", report.get("job")), ("validated on", report.get("rows_note")),
             ("rows scored", report["rows"]), ("bads", report["bads"]),
             ("bad rate", report["bad_rate"]), ("AUC", report["auc"]), ("KS", report["ks"]),
             ("Gini", report["gini"]), ("written", report.get("created"))]
    rows = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>"
                     for k, v in facts if v is not None)
    return f'<table class="summary"><tbody>\n{rows}\n</tbody></table>'



def _deciles(report: dict[str, Any]) -> str:
    with_points = "min_points" in report["deciles"][0]
    header = ["bin", "rows", "bads", "bad rate", "PD from", "PD to",
              *(["points from", "points to"] if with_points else []),
              "lift", "cum. rows", "cum. bads (gains)", "cum. goods", "cum. lift", "KS"]
    rows = [[str(r["bin"]), str(r["rows"]), str(r["bads"]), _fmt(r["bad_rate"]),
             _fmt(r["min_score"]), _fmt(r["max_score"]),
             *([_fmt(r["min_points"], ".0f"), _fmt(r["max_points"], ".0f")]
               if with_points else []),
             _fmt(r["lift"], ".2f"), _fmt(r["cum_rows"], ".1%"), _fmt(r["cum_bads"], ".1%"),
             _fmt(r["cum_goods"], ".1%"), _fmt(r["cum_lift"], ".2f"), _fmt(r["ks"])]
            for r in report["deciles"]]
    return _table(header, rows)


def _segments(report: dict[str, Any]) -> str:
    if not report["segments"]:
        return ""
    rows = [[html.escape(name), html.escape(value), str(s["rows"]), str(s["bads"]),
             _fmt(s["bad_rate"]), _fmt(s["mean_pd"]), _fmt(s["auc"]), _fmt(s["ks"]),
             _fmt(s["gini"])]
            for name, groups in report["segments"].items() for value, s in groups.items()]
    return "<h2>Segments</h2>" + _table(
        ["segment", "value", "rows", "bads", "bad rate", "mean PD", "AUC", "KS", "Gini"], rows)


def _stability_table(report: dict[str, Any]) -> str:
    stability = report.get("stability")
    if not stability:
        note = report.get("stability_note")
        return f"<h2>Population stability</h2><p>{html.escape(note)}</p>" if note else ""
    rows = [[str(r["bin"]), _fmt(r["lower"]), _fmt(r["upper"]), _fmt(r["expected"], ".1%"),
             _fmt(r["actual"], ".1%"), _fmt(r["psi"])] for r in stability["bins"]]
    return (f"<h2>Population stability</h2><p>PSI {stability['psi']:.4f} "
            f"({html.escape(stability['reading'])}) over {stability['population_rows']} rows of "
            f"{html.escape(str(report.get('population_source', 'the scoring population')))}."
            "</p>" + _table(["bin", "PD above", "PD up to", "validation rows",
                             "scoring population", "PSI term"], rows))


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th { background: #f4f6f7; } table.summary th { text-align: left; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 1em; }
.plot { border: 1px solid #eee; }
"""
