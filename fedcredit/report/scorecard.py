"""The scorecard part of a model report at the bank: its own points tables (on its policy's
scale), base points, the feature nodes' point ranges (model metadata) and the IV table of the
binning job. A feature node's bins and points never reach the bank; they stay at that node."""

from __future__ import annotations

import dataclasses
import html
import json
import math
from pathlib import Path
from typing import Any

from models.scorecard import JOINT
from models.scorecard.points import scale
from models.scorecard.scoring import SCORECARD_SCORING
from node.policy import ScoreScale

TOP_IV = 10


def scorecard_section(state_dir: Path, job: str, policy_scale: ScoreScale | None = None,
                      ) -> dict[str, Any] | None:
    """The bank's view of a scorecard job (None when the job trained no scorecard here)."""
    folder = state_dir / "models" / job
    if not (folder / SCORECARD_SCORING.model_file).is_file():
        return None
    card, raw = SCORECARD_SCORING.load(folder, job)
    if policy_scale is not None:
        factor, offset = scale(policy_scale.points_to_double_odds, policy_scale.base_points,
                               policy_scale.base_odds)
        card = dataclasses.replace(card, factor=factor, offset=offset)
    ranges = raw.get("feature_points", {})
    ratio = card.factor / float(raw["factor"])  # the nodes' ranges were made on the job's scale
    return {"binning_job": card.binning_job, "factor": card.factor, "offset": card.offset,
            "base_points": card.base_points,
            "points": card.tables(),
            "feature_nodes": {p: {"min_points": r["min"] * ratio, "max_points": r["max"] * ratio}
                              for p, r in sorted(ranges.items())},
            "reason_characteristics": [*card.names, JOINT],
            "iv_table": iv_table(state_dir, card.binning_job)}


def iv_table(state_dir: Path, binning_job: str, top: int = TOP_IV) -> list[dict[str, Any]]:
    """The binning job's characteristics by falling IV (the bank's summary), at most `top`."""
    path = state_dir / "models" / binning_job / "binning.json"
    if not path.is_file():
        return []
    rows = json.loads(path.read_text()).get("characteristics", [])
    return [{k: r[k] for k in ("party", "name", "iv", "bins", "selected")}
            for r in sorted(rows, key=lambda r: -float(r["iv"]))[:top]]


def scorecard_html(section: dict[str, Any] | None) -> str:
    """The scorecard's part of the HTML page ("" without one)."""
    if not section:
        return ""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "–" if not math.isfinite(v) else f"{v:.2f}"
        return html.escape(str(v))

    parts = [f"<h2>Scorecard (points; base {section['base_points']:.1f}, "
             f"factor {section['factor']:.3f})</h2>"]
    for table in section["points"]:
        rows = "".join(f"<tr><td>{cell(r['bin'])}</td><td>{r['woe']:.4f}</td>"
                       f"<td>{r['points']:.1f}</td></tr>" for r in table["bins"])
        parts.append(f"<h3>{html.escape(table['characteristic'])} (max "
                     f"{table['max_points']:.1f} points)</h3><table><thead><tr><th>bin</th>"
                     f"<th>WOE</th><th>points</th></tr></thead><tbody>{rows}</tbody></table>")
    nodes = "".join(f"<tr><td>{html.escape(p)}</td><td>{r['min_points']:.1f}</td>"
                    f"<td>{r['max_points']:.1f}</td></tr>"
                    for p, r in section["feature_nodes"].items())
    parts.append("<p>Feature nodes' characteristics and points stay at each node; the bank "
                 "knows each node's range of total points only.</p><table><thead><tr><th>node"
                 f"</th><th>min points</th><th>max points</th></tr></thead><tbody>{nodes}"
                 "</tbody></table>")
    if section["iv_table"]:
        rows = "".join(f"<tr><td>{html.escape(r['party'])}</td><td>{html.escape(r['name'])}"
                       f"</td><td>{r['iv']:.4f}</td><td>{r['bins']}</td>"
                       f"<td>{'yes' if r['selected'] else 'no'}</td></tr>"
                       for r in section["iv_table"])
        parts.append("<h3>Information value (top characteristics)</h3><table><thead><tr>"
                     "<th>party</th><th>characteristic</th><th>IV</th><th>bins</th>"
                     f"<th>selected</th></tr></thead><tbody>{rows}</tbody></table>")
    return "\n".join(parts)
