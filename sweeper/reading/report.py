"""`anpyc-sweep report`: figures and a markdown summary of a study's Parquet results."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullLocator  # noqa: E402
from matplotlib.transforms import offset_copy  # noqa: E402

from sweeper.reading.colours import colours_for  # noqa: E402
from sweeper.reading.figure_text import set_fitted_title  # noqa: E402
from sweeper.reading.generative_report import generative_section  # noqa: E402
from sweeper.storage import results  # noqa: E402
from sweeper.study.spec import QueryError, StudySpec  # noqa: E402


def _numeric(series: pd.Series) -> pd.Series:
    converted = pd.to_numeric(series, errors="coerce")
    return converted if converted.notna().all() else series.astype(str)


def natural_order(values: pd.Series) -> pd.Series:
    """Sort key: numbers by value, and text such as '[32, 32]' by the numbers in it."""
    if pd.api.types.is_numeric_dtype(values):
        return values
    return values.map(lambda v: (tuple(float(n) for n in re.findall(r"-?\d+\.?\d*(?:e-?\d+)?", str(v))), str(v)))


def summary_table(frame: pd.DataFrame, column: str, metrics: list[str]) -> pd.DataFrame:
    """Mean, std and count over seeds of `metrics`, per (ablation, value of `column`)."""
    data = frame.assign(value=_numeric(frame[column]))
    grouped = data.groupby(["ablation", "value"])[metrics]
    table = grouped.agg(["mean", "std", "count"])
    table.columns = [f"{m}_{s}" for m, s in table.columns]
    table = table.reset_index()
    order = table.assign(_key=natural_order(table["value"])).sort_values(["ablation", "_key"], kind="stable").index
    return table.loc[order].reset_index(drop=True)


#: at most this many labelled ticks on a parameter axis
MAX_VALUE_TICKS = 12
DIVERGED_STEP_PT = 20  # points between the diverged marks of two ablations at one value (room for a count between)


def plot_against(
    table: pd.DataFrame,
    column: str,
    metric: str,
    path: Path,
    title: str,
    diverged: pd.DataFrame | None = None,
    order: list[str] | None = None,
) -> None:
    """Metric (mean ± std over seeds) against one parameter, one line per ablation in its own colour (the
    same in every figure); the grid values are the ticks (a categorical axis in `order`, e.g. the study's
    ablations); a point over fewer seeds than the most any point has is hollow and says n; configurations
    with diverged trials are marked (an x at the axis bottom when no seed finished)."""
    numeric = pd.api.types.is_numeric_dtype(table["value"])
    pool = pd.Series(list(set(table["value"]) | set(diverged["value"] if diverged is not None else [])))
    # a categorical axis names every method (no legend there): wider when there are many
    fig, ax = plt.subplots(figsize=(6.4 if numeric else max(6.4, 2.4 + 0.45 * len(pool)), 4.2))
    rank = {v: i for i, v in enumerate(order or [])}
    keys = dict(zip(pool, natural_order(pool), strict=True))  # one key pass, not one per value
    values = sorted(pool, key=lambda v: (rank.get(v, len(rank)), keys[v]) if rank and not numeric else keys[v])
    position = {v: (v if numeric else i) for i, v in enumerate(values)}
    colours = colours_for(list(table["ablation"]) + (list(diverged["ablation"]) if diverged is not None else []))
    full = int(table[f"{metric}_count"].max()) if len(table) else 0
    for ablation in sorted(set(table["ablation"]), key=lambda a: (rank.get(a, len(rank)), a)):
        part = table[table["ablation"] == ablation].sort_values("value", key=natural_order)
        x = [position[v] for v in part["value"]]
        colour = colours[ablation]
        ax.errorbar(
            x,
            part[f"{metric}_mean"],
            yerr=part[f"{metric}_std"].fillna(0),
            marker="o",
            capsize=3,
            label=None if column == "ablation" else ablation,  # on an ablation axis the ticks name them
            color=colour,
        )
        partial = part[part[f"{metric}_count"] < full]
        for r in partial.itertuples():  # fewer seeds than the others: hollow, with its n
            y = getattr(r, f"{metric}_mean")
            ax.plot(position[r.value], y, "o", mfc="white", mec=colour, mew=1.5, ms=8, zorder=3)
            n = int(getattr(r, f"{metric}_count"))
            ax.annotate(
                f"n={n}", (position[r.value], y), textcoords="offset points", xytext=(6, 6), fontsize=7, color=colour
            )
    if diverged is not None and len(diverged):
        bottom = ax.get_ylim()[0]
        stacked: dict[Any, int] = {}  # ablations diverged at one value: their marks one above the other
        for i, r in enumerate(diverged.itertuples()):
            colour = colours.get(r.ablation, "red")
            level = stacked[r.value] = stacked.get(r.value, -1) + 1
            at = offset_copy(ax.transData, fig=fig, y=DIVERGED_STEP_PT * level, units="points")
            ax.plot(
                position[r.value],
                bottom,
                "x",
                color=colour,
                markersize=10,
                mew=2,
                clip_on=False,
                transform=at,
                label="diverged" if i == 0 else None,
            )
            ax.annotate(
                f"{r.n} div.",
                (position[r.value], bottom),
                xycoords=at,
                textcoords="offset points",
                xytext=(0, 6),  # above its own mark, below the next one: beside it, it reached a close neighbour's
                ha="center",
                va="bottom",
                fontsize=7,
                color=colour,
            )
    if numeric and min(values) > 0 and max(values) / min(values) >= 20:
        ax.set_xscale("log")
    if not numeric or len(values) <= MAX_VALUE_TICKS:  # a grid's values are the ticks
        ax.set_xticks(
            [position[v] for v in values],
            [f"{v:g}" if numeric else str(v) for v in values],
            rotation=0 if numeric else 35,
            ha="center" if numeric else "right",
            rotation_mode="anchor",
        )
        ax.xaxis.set_minor_locator(NullLocator())
    # else a sampled numeric range: matplotlib's own ticks (one per value would cost seconds per figure)
    _finish(fig, ax, column, metric, title, path)


def _finish(fig, ax, column: str, metric: str, title: str, path: Path) -> None:
    """Labels, title, grid and legend of a metric-against-parameter figure; save it and close it."""
    ax.set_xlabel(column.removeprefix("cfg."))
    ax.set_ylabel(f"{metric} ({'%' if metric.endswith('acc') else 'points'})")
    set_fitted_title(ax, title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # never over the data
        ax.legend(
            title=None if column == "ablation" else "ablation", fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left"
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def diverged_table(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Diverged trials per (ablation, value of `column`): columns ablation, value, n."""
    part = frame[frame["status"] == "DIVERGED"]
    if part.empty:
        return pd.DataFrame(columns=["ablation", "value", "n"])
    data = part.assign(value=_numeric(frame[column]).loc[part.index])
    return data.groupby(["ablation", "value"]).size().rename("n").reset_index()


def plot_scatter(frame: pd.DataFrame, column: str, metric: str, path: Path, title: str, log: bool) -> None:
    """Each finished trial of a continuous search as a point (no averaging of unrelated samples)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = colours_for(frame["ablation"])
    for ablation, part in frame.groupby("ablation"):
        ax.scatter(pd.to_numeric(part[column]), part[metric], alpha=0.7, label=ablation, color=colours[str(ablation)])
    if log:
        ax.set_xscale("log")
    _finish(fig, ax, column, metric, title, path)


def binned_table(
    frame: pd.DataFrame, column: str, metrics: list[str], bins: int = 5, log: bool = False
) -> pd.DataFrame:
    """Mean, std and count of `metrics` per (ablation, bin of a continuous `column`), bins equal in (log) width."""
    x = pd.to_numeric(frame[column])
    lo, hi = x.min(), x.max()
    edges = np.geomspace(lo, hi, bins + 1) if log and lo > 0 else np.linspace(lo, hi, bins + 1)
    edges = np.unique(edges)
    labels = [f"[{a:.3g}, {b:.3g}]" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    data = frame.assign(value=pd.cut(x, edges, labels=labels, include_lowest=True))
    table = data.groupby(["ablation", "value"], observed=True)[metrics].agg(["mean", "std", "count"])
    table.columns = [f"{m}_{s}" for m, s in table.columns]
    return table.reset_index()


def plot_task_curves(
    done: pd.DataFrame, tasks: pd.DataFrame, path: Path, order: list[str] | None = None
) -> pd.DataFrame:
    """Mean test ACC over the tasks learned so far against tasks learned, one line per ablation in its own
    colour, legend in `order` (mean ± std over the finished seeds); returns the plotted table."""
    curve = results.acc_over_tasks(tasks[tasks["trial_id"].isin(done["trial_id"])])
    curve = curve.merge(done[["trial_id", "ablation"]], on="trial_id")
    table = curve.groupby(["ablation", "after_task"])["acc"].agg(["mean", "std", "count"]).reset_index()
    rank = {a: i for i, a in enumerate(order or [])}
    groups = sorted(table.groupby("ablation"), key=lambda g: (rank.get(g[0], len(rank)), g[0]))
    colours = colours_for(table["ablation"])
    fig, ax = plt.subplots(figsize=(8, 4))
    for ablation, part in groups:
        std, colour = part["std"].fillna(0), colours[str(ablation)]
        ax.plot(part["after_task"], part["mean"], marker=".", label=ablation, color=colour)
        ax.fill_between(part["after_task"], part["mean"] - std, part["mean"] + std, alpha=0.15, color=colour)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("tasks learned")
    ax.set_ylabel("mean test ACC over tasks learned (%)")
    ax.set_title("Accuracy as tasks are learned (mean ± std over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(title="ablation", fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return table


def pareto_mask(values: np.ndarray, modes: list[str]) -> np.ndarray:
    """Rows not dominated by any other row (objectives in `values`' columns, each max or min)."""
    signed = values * np.array([1.0 if m == "max" else -1.0 for m in modes])
    keep = np.ones(len(signed), dtype=bool)
    for i, row in enumerate(signed):
        dominated = np.all(signed >= row, axis=1) & np.any(signed > row, axis=1)
        keep[i] = not dominated.any()
    return keep


def plot_pareto(frame: pd.DataFrame, spec: StudySpec, path: Path) -> pd.DataFrame:
    """Scatter of the first two objectives with the Pareto front drawn; returns the front's rows."""
    a, b = (o.metric for o in spec.objectives[:2])
    modes = [o.mode for o in spec.objectives[:2]]
    values = frame[[a, b]].to_numpy(dtype=float)
    front = frame[pareto_mask(values, modes)].sort_values(a)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(frame[a], frame[b], alpha=0.5, label="trials")
    ax.plot(front[a], front[b], "r-o", label="Pareto front")
    ax.set_xlabel(f"{a} ({modes[0]})")
    ax.set_ylabel(f"{b} ({modes[1]})")
    set_fitted_title(ax, f"{spec.name}: trials and the Pareto front of {a} and {b}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return front


def optuna_importances(frame: pd.DataFrame, spec: StudySpec) -> dict[str, float]:
    """fANOVA-style parameter importances (Optuna) for the first objective, from finished trials."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    dists = {}
    for key, dim in spec.search.items():
        if dim.kind in ("grid", "choice"):
            dists[key] = CategoricalDistribution([str(v) for v in dim.values()])
        elif dim.kind == "int":
            dists[key] = IntDistribution(*dim.int)
        else:
            lo, hi = dim.uniform or dim.loguniform
            dists[key] = FloatDistribution(lo, hi, log=dim.kind == "loguniform")
    obj = spec.objectives[0]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if obj.mode == "max" else "minimize")
    for _, row in frame.iterrows():
        params = {}
        for key, dist in dists.items():
            raw = row[f"cfg.{key}"]
            if isinstance(dist, CategoricalDistribution):
                params[key] = str(_as_spec_value(raw, spec.search[key].values()))
            elif isinstance(dist, IntDistribution):
                params[key] = int(raw)
            else:
                params[key] = float(raw)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(row[obj.metric])))
    if len(study.trials) < 2 or len(dists) < 1:
        return {}
    return dict(optuna.importance.get_param_importances(study))


def _as_spec_value(raw, values: list):
    for v in values:
        if str(v) == str(raw) or (not isinstance(v, list) and str(raw) == str(float(v) if isinstance(v, int) else v)):
            return v
    return raw


def write_report(spec: StudySpec) -> Path:
    """Write report.md and PNG figures into <study>/report; returns the markdown path."""
    if not spec.store.exists("study.yaml"):
        raise QueryError(f"study {spec.name}: not found in {spec.tune_storage} (check --storage)")
    frame = results.read_trials(spec.store)
    if frame.empty:
        raise QueryError(f"study {spec.name}: no trial recorded in {spec.tune_storage} yet")
    out = spec.study_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    done = frame[frame["status"] == "FINISHED"]
    metrics = ["val_acc", "test_acc", "val_bwt", "test_bwt"]
    lines = [
        f"# Study {spec.name}",
        "",
        spec.description or "",
        "",
        f"Trials: {len(frame)} ({', '.join(f'{k} {v}' for k, v in frame['status'].value_counts().items())}). "
        "Selection uses validation metrics; test metrics are shown beside them. Mean ± std over seeds.",
        "",
    ]
    if frame["ablation"].nunique() > 1:  # every ablation against the reference on the objective's test metric
        from sweeper.reading.compare import compare, figure, report_metric, table_lines

        metric = report_metric(spec, frame.columns)
        rows = compare(spec, "ablation", metric, frame=frame)  # the trials read above, not read again
        if rows:
            name = f"compare_ablation_{metric}.png"
            figure(rows, out / name, f"{spec.name}: {metric} against {rows[0].reference}")
            picture = f"![each ablation against the reference]({name})"
            lines += ["## Against the reference", "", *table_lines(rows), "", picture, ""]
    errors = frame[frame["status"].isin(["ERROR", "DIVERGED"])]
    if len(errors):
        lines += (
            ["Diverged or errored trials:", ""]
            + [f"- {r.trial_id} ({r.ablation}, seed {r.seed}): {r.error}" for r in errors.itertuples()]
            + [""]
        )
    columns = [f"cfg.{k}" for k in spec.search] or ["ablation"]
    for column in columns:
        key = column.removeprefix("cfg.")
        name = key.replace(".", "_")
        continuous = column != "ablation" and spec.search[key].kind in ("uniform", "loguniform", "int")
        if continuous:  # samples of a continuous search: scatter and bins, never a "mean over seeds" of one sample
            log = spec.search[key].kind == "loguniform"
            for metric in ("val_acc", "test_acc", "val_bwt", "test_bwt"):
                png = out / f"{metric}_vs_{name}.png"
                plot_scatter(done, column, metric, png, f"{spec.name}: {metric} of each trial against {key}", log)
                lines.append(f"![{metric} against {name}]({png.name})")
            table = binned_table(done, column, metrics, log=log)
            caption = f"## Against {key} (binned: mean ± std over the trials in each bin)"
        else:
            use = column if column != "ablation" else "ablation_value"
            table = summary_table(done.assign(ablation_value=done["ablation"]), use, metrics)
            diverged = diverged_table(frame.assign(ablation_value=frame["ablation"]), use)
            for metric in ("val_acc", "test_acc", "val_bwt", "test_bwt"):
                png = out / f"{metric}_vs_{name}.png"
                title = f"{spec.name}: {metric} against {key} (mean ± std over seeds)"
                plot_against(table, column, metric, png, title, diverged, order=list(spec.ablations))
                lines.append(f"![{metric} against {name}]({png.name})")
            if len(diverged):
                div = diverged.rename(columns={"n": "diverged"})
                table = table.merge(div, on=["ablation", "value"], how="outer")
                table = table.assign(_k=natural_order(table["value"])).sort_values(["ablation", "_k"], kind="stable")
            caption = f"## Against {key} (mean ± std over seeds)"
        lines += [
            "",
            caption,
            "",
            "| ablation | value | n | val ACC | test ACC | val BWT | test BWT | diverged |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in table.to_dict("records"):
            n = int(r.get("val_acc_count", 0) or 0) if r.get("val_acc_count") == r.get("val_acc_count") else 0
            cells = [f"{r[f'{m}_mean']:.2f} ± {np.nan_to_num(r[f'{m}_std']):.2f}" if n else "-" for m in metrics]
            div = r.get("diverged")
            div_text = f"{int(div)}" if div == div and div is not None else "0"
            lines.append(f"| {r['ablation']} | {r['value']} | {n} | " + " | ".join(cells) + f" | {div_text} |")
        lines.append("")
    tasks = results.read_tasks(spec.store)
    if not spec.search and len(done) and not tasks.empty:
        table = plot_task_curves(done, tasks, out / "acc_over_tasks.png", order=list(spec.ablations))
        last = table.loc[table.groupby("ablation")["after_task"].idxmax()]
        lines += [
            "## Accuracy as tasks are learned",
            "",
            "![mean test ACC over the tasks learned so far](acc_over_tasks.png)",
            "",
            "| ablation | tasks | final ACC | ACC after half the tasks |",
            "|---|---|---|---|",
        ]
        for r in last.itertuples():
            part = table[table["ablation"] == r.ablation].set_index("after_task")["mean"]
            half = part.get(max(1, r.after_task // 2), float("nan"))
            lines.append(f"| {r.ablation} | {r.after_task} | {r.mean:.2f} | {half:.2f} |")
        lines.append("")
    lines += generative_section(spec, done, out)
    if len(spec.objectives) > 1 and len(done):
        front = plot_pareto(done, spec, out / "pareto.png")
        a, b = (o.metric for o in spec.objectives[:2])
        lines += ["## Pareto front", "", "![Pareto front](pareto.png)", "", f"| trial | {a} | {b} |", "|---|---|---|"]
        lines += [f"| {r['trial_id']} | {r[a]:.2f} | {r[b]:.2f} |" for _, r in front.iterrows()] + [""]
    if spec.searcher == "optuna" and len(done) >= 2:
        importances = optuna_importances(done, spec)
        if importances:
            lines += (
                ["## Parameter importances (Optuna, first objective)", "", "| parameter | importance |", "|---|---|"]
                + [f"| {k} | {v:.3f} |" for k, v in importances.items()]
                + [""]
            )
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
