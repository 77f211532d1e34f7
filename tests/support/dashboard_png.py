"""The dashboard drawn from a real Prometheus into a PNG, for the docs (there is no Grafana here).

Each panel is placed on Grafana's 24-column grid as the dashboard lays it out; a time series
panel plots its queries over the run (``query_range``), a stat panel shows its query's last
value, named as the panel's ``legendFormat`` names it. Refuses to imitate Grafana further
(units, thresholds, colours): the picture shows what the queries return, nothing more.
Needs matplotlib (``pip install matplotlib``), imported only by the test that draws.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from tests.support.monitoring import filled
from tests.support.prometheus_server import Prometheus

COLUMNS = 24
UNIT_HEIGHT = 0.42
"""Inches per grid row."""
WIDTH = 22.0
LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
POINTS = 120


def legend(template: str, labels: dict[str, str]) -> str:
    return LEGEND.sub(lambda m: labels.get(m[1], ""), template) or "value"


@dataclass(frozen=True)
class Run:
    """Where the panels' data comes from: the server, the operator's job, the run's span."""

    prom: Prometheus
    job: str
    start: float
    end: float

    def query(self, target: dict[str, Any]) -> str:
        return filled(target["expr"], job=self.job, namespace=".*")


def draw(
    prom: Prometheus, board: dict[str, Any], job: str, start: float, end: float, path: Path
) -> None:
    """Draw ``board``'s panels for ``job`` over ``start``..``end`` into ``path``."""
    plt.switch_backend("Agg")
    run = Run(prom, job, start, end)
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
    figure = plt.figure(figsize=(WIDTH, rows * UNIT_HEIGHT), facecolor="#111217")
    for panel in board["panels"]:
        grid = panel["gridPos"]
        box = (  # room for the tick labels on the left and below, the title above
            grid["x"] / COLUMNS + 0.025,
            1 - (grid["y"] + grid["h"]) / rows + 0.012,
            grid["w"] / COLUMNS - 0.032,
            grid["h"] / rows - 0.03,
        )
        if panel["type"] == "row":
            figure.text(box[0], box[1] + box[3], panel["title"], color="white", size=13)
            continue
        axes = figure.add_axes(box, facecolor="#181b1f")
        axes.set_title(panel["title"], color="#ccccdc", size=9, loc="left")
        axes.tick_params(colors="#8e8e9e", labelsize=7)
        for side in axes.spines.values():
            side.set_color("#2f3138")
        if panel["type"] == "stat":
            stat(axes, run, panel["targets"][0])
        else:
            timeseries(axes, run, panel["targets"])
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=72, facecolor=figure.get_facecolor())
    plt.close(figure)


def stat(axes: Axes, run: Run, target: dict[str, Any]) -> None:
    result = run.prom.query(run.query(target))
    value = float(result[0]["value"][1]) if result else float("nan")
    axes.text(0.5, 0.4, f"{value:g}", color="#73bf69", size=26, ha="center")
    axes.set_axis_off()


def timeseries(axes: Axes, run: Run, targets: list[dict[str, Any]]) -> None:
    step = f"{max(1, round((run.end - run.start) / POINTS))}s"
    for target in targets:
        for series in run.prom.query_range(run.query(target), run.start, run.end, step):
            values = [float(v) for _, v in series["values"]]
            axes.plot(
                [datetime.fromtimestamp(float(t)) for t, _ in series["values"]],
                values,
                linewidth=1.2,
                marker="." if len(values) < 3 else None,  # a series just begun
                label=legend(target["legendFormat"], series["metric"]),
            )
    if not axes.lines:
        axes.text(0.5, 0.5, "No data", color="#8e8e9e", ha="center", transform=axes.transAxes)
        return
    axes.set_xlim(datetime.fromtimestamp(run.start), datetime.fromtimestamp(run.end))
    axes.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    axes.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=4))
    axes.legend(fontsize=6, loc="upper left", facecolor="#181b1f", labelcolor="#ccccdc")
