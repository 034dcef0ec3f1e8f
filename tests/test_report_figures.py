"""Report figures: titled, grid values as ticks, diverged configurations marked (not dropped), a BWT
figure beside ACC, and continuous Optuna searches scattered and binned (issue 14, items 4 and 8)."""

from __future__ import annotations

import pandas as pd

from sweeper.reading import report
from sweeper.running.launch import spec_text
from sweeper.study.spec import parse_study


def make_study(tmp_path, rows: list[dict], **extra):
    raw = {"name": "figs", "search": {"strategy.lam": {"grid": [0.5, 4.0, 32.0]}}, "seeds": [0, 1]}
    raw.update({"storage": str(tmp_path), **extra})
    spec = parse_study(raw)
    spec.study_dir.mkdir(parents=True)
    (spec.study_dir / "study.yaml").write_text(spec_text(spec))
    frame = pd.DataFrame(rows)
    for metric in ("val_bwt", "test_bwt"):
        frame[metric] = frame.get(metric, -1.0)
    frame.to_parquet(spec.study_dir / "trials.parquet")
    return spec


def trial(i, lam, status="FINISHED", acc=80.0):
    finished = status == "FINISHED"
    return {
        "trial_id": f"t{i}",
        "status": status,
        "ablation": "full",
        "seed": i % 2,
        "error": None if finished else "TrainingDiverged: task 2 epoch 1: training loss became nan",
        "val_acc": acc if finished else None,
        "test_acc": acc - 1 if finished else None,
        "cfg.strategy.lam": lam,
    }


def capture(monkeypatch) -> list:
    figures = []
    real_close = report.plt.close
    monkeypatch.setattr(report.plt, "close", lambda fig: (figures.append(fig), real_close(fig)))
    return figures


def test_grid_figures_are_titled_ticked_at_grid_values_and_mark_diverged_points(tmp_path, monkeypatch):
    rows = [trial(0, 0.5, acc=80), trial(1, 0.5, acc=82), trial(2, 4.0), trial(3, 4.0)]
    rows += [trial(4, 32.0, "DIVERGED"), trial(5, 32.0, "DIVERGED")]
    spec = make_study(tmp_path, rows)
    figures = capture(monkeypatch)
    path = report.write_report(spec)
    names = {p.name for p in path.parent.glob("*.png")}
    assert {f"{m}_vs_strategy_lam.png" for m in ("val_acc", "test_acc", "val_bwt", "test_bwt")} <= names
    ax = figures[0].axes[0]
    assert ax.get_title() == "figs: val_acc against strategy.lam (mean ± std over seeds)"
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "4", "32"]
    marks = [line for line in ax.get_lines() if line.get_marker() == "x"]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [32.0]  # the diverged configuration, kept
    text = path.read_text()
    assert "| full | 32.0 | 0 | - | - | - | - | 2 |" in text
    assert "| full | 0.5 | 2 | 81.00 ± 1.41 |" in text


def test_continuous_optuna_search_is_scattered_and_binned_not_averaged(tmp_path, monkeypatch):
    lams = [0.1, 0.2, 0.9, 3.0, 7.5, 9.0]
    rows = [trial(i, lam, acc=70 + i) for i, lam in enumerate(lams)]
    spec = make_study(
        tmp_path,
        rows,
        searcher="optuna",
        search={"strategy.lam": {"loguniform": [0.1, 10.0]}},
        seeds=[0],
    )
    figures = capture(monkeypatch)
    text = report.write_report(spec).read_text()
    assert "## Against strategy.lam (binned: mean ± std over the trials in each bin)" in text
    assert "n=1 ± 0.00" not in text and "mean ± std over seeds)" not in text.split("## Against")[1]
    scatter = figures[0].axes[0]
    assert scatter.get_title() == "figs: val_acc of each trial against strategy.lam"
    assert len(scatter.collections[0].get_offsets()) == 6 and not scatter.get_lines()  # points, no connecting line
    bins = [line for line in text.splitlines() if line.startswith("| full | [")]
    assert sum(int(b.split("|")[3]) for b in bins) == 6


def test_a_grid_of_many_values_gets_a_readable_axis_in_well_under_a_second_per_figure(tmp_path, monkeypatch):
    """400 grid values (a large study's lr grid): not one tick label per value (it cost ~4 s a figure at
    1,000 values and the labels overlapped), and the curve keeps every configuration."""
    import time

    lams = [round(0.01 + 0.001 * i, 4) for i in range(400)]
    spec = make_study(tmp_path, [trial(i, lam) for i, lam in enumerate(lams)], search={"strategy.lam": {"grid": lams}})
    figures = capture(monkeypatch)
    start = time.perf_counter()
    report.write_report(spec)
    per_figure = (time.perf_counter() - start) / len(figures)
    ax = figures[0].axes[0]
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    assert 2 <= len(labels) <= report.MAX_VALUE_TICKS, len(labels)
    assert len(ax.get_lines()[0].get_xdata()) == 400  # every configuration is still a point
    assert per_figure < 1.0, per_figure  # 0.15 s here; with a label per value, 1.25 s


def test_each_method_keeps_its_colour_and_the_ablation_axis_keeps_the_study_order(tmp_path, monkeypatch):
    """Issue 26: methods on the x axis in the study's order, one colour per method in every figure,
    and a point over fewer seeds than the others hollow with its n."""
    from matplotlib.colors import to_hex

    from sweeper.reading.colours import FIXED, colours_for

    order = ["anpyc_free", "ewc", "si", "finetune", "joint"]
    rows = []
    for k, name in enumerate(order):
        for seed in (0, 1) if name != "si" else (0,):  # si: one seed finished of two
            row = trial(10 * k + seed, 1.0, acc=70.0 + k)
            rows.append({**row, "ablation": name, "seed": seed})
    spec = make_study(tmp_path, rows, search={}, ablations={n: {} for n in order})
    figures = capture(monkeypatch)
    report.write_report(spec)
    ax = next(f.axes[0] for f in figures if f.axes and "against ablation" in f.axes[0].get_title())
    assert [t.get_text() for t in ax.get_xticklabels()] == order  # the study's order, not alphabetical
    colours = colours_for(order)
    drawn = [to_hex(c.lines[0].get_color()) for c in ax.containers]  # one errorbar per method, in order
    assert drawn == [colours[n] for n in order]
    assert all(colours[n] == FIXED[n] for n in order)  # fixed colours: the same in every study's figures
    hollow = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "white"]
    assert len(hollow) == 1 and list(hollow[0].get_xdata()) == [order.index("si")]
    assert any(t.get_text() == "n=1" for t in ax.texts)


def test_colours_are_distinct_within_a_figure_and_stable_across_sets():
    from sweeper.reading.colours import colours_for

    names = [f"variant_{i}" for i in range(18)] + ["ewc", "mas"]
    got = colours_for(names)
    assert len(set(got.values())) == len(names)
    assert colours_for(["ewc", "variant_3"])["ewc"] == got["ewc"] == colours_for(["mas", "ewc"])["ewc"]


def test_every_method_is_named_on_a_long_ablation_axis(tmp_path, monkeypatch):
    """13 methods (section5_analyses): the ablation axis has no legend, so every tick is labelled (it used to
    label every other one, leaving half the points without a name)."""
    order = [f"method_{k:02d}" for k in range(13)]
    rows = [
        {**trial(10 * k + s, 1.0, acc=60.0 + k), "ablation": n, "seed": s} for k, n in enumerate(order) for s in (0, 1)
    ]
    spec = make_study(tmp_path, rows, search={}, ablations={n: {} for n in order})
    figures = capture(monkeypatch)
    report.write_report(spec)
    ax = next(f.axes[0] for f in figures if f.axes and "test_acc against ablation" in f.axes[0].get_title())
    assert [t.get_text() for t in ax.get_xticklabels()] == order


def test_ablations_that_diverged_at_one_value_are_marked_one_above_the_other(tmp_path, monkeypatch):
    """Two ablations diverged at λ = 32 (table1_split_lambda: ANPyC and MAS at λ = 4, 10, 100): both marks and
    both counts are visible, not drawn on the same spot."""
    from matplotlib.colors import to_hex

    from sweeper.reading.colours import colours_for

    rows = []
    for k, name in enumerate(["anpyc", "mas"]):
        rows += [{**trial(10 * k + s, 0.5), "ablation": name, "seed": s} for s in (0, 1)]
        rows += [{**trial(10 * k + 2 + s, 32.0, status="DIVERGED"), "ablation": name, "seed": s} for s in (0, 1)]
    grid = {"strategy.lam": {"grid": [0.5, 32.0]}}
    spec = make_study(tmp_path, rows, ablations={"anpyc": {}, "mas": {}}, search=grid)
    figures = capture(monkeypatch)
    report.write_report(spec)
    ax = next(f.axes[0] for f in figures if f.axes and "test_acc against strategy.lam" in f.axes[0].get_title())
    figure = ax.figure
    figure.canvas.draw()
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "x"]
    colours = colours_for(["anpyc", "mas"])
    assert sorted(to_hex(m.get_color()) for m in marks) == sorted(colours.values())  # one mark per ablation
    where = [m.get_transform().transform((m.get_xdata()[0], m.get_ydata()[0])) for m in marks]
    assert abs(where[0][0] - where[1][0]) < 1e-6  # the same value ...
    gap_pt = abs(where[0][1] - where[1][1]) * 72 / figure.dpi
    assert abs(gap_pt - report.DIVERGED_STEP_PT) < 1e-6  # ... one step apart, not on one spot
    labels = [t for t in ax.texts if t.get_text() == "2 div."]
    assert len(labels) == 2


def test_a_diverged_count_never_covers_a_neighbouring_mark(tmp_path, monkeypatch):
    """fig8c_beta_cnn: one seed diverged at β = 15 and at β = 20 on a log axis from 1 to 30; the count of 15 sat
    beside its mark and ran into 20's. Each count now covers no diverged mark, and no other count."""
    rows = []
    for k, beta in enumerate([1.0, 5.0, 10.0, 15.0, 20.0, 30.0]):
        rows += [{**trial(10 * k + s, beta), "seed": s} for s in (0, 1)]
        if beta in (15.0, 20.0):
            rows.append({**trial(10 * k + 2, beta, status="DIVERGED"), "seed": 2})
    spec = make_study(tmp_path, rows, search={"strategy.lam": {"grid": [1.0, 5.0, 10.0, 15.0, 20.0, 30.0]}})
    figures = capture(monkeypatch)
    report.write_report(spec)
    ax = next(f.axes[0] for f in figures if f.axes and "test_acc against strategy.lam" in f.axes[0].get_title())
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(ax.figure)  # the saved figure was closed: a canvas that can measure text again
    canvas.draw()
    renderer = canvas.get_renderer()
    marks = [ln.get_window_extent(renderer) for ln in ax.get_lines() if ln.get_marker() == "x"]
    counts = [t.get_window_extent(renderer) for t in ax.texts if t.get_text().endswith(" div.")]
    assert len(marks) == 2 and len(counts) == 2
    for i, box in enumerate(counts):
        assert not any(box.overlaps(m) for m in marks), "a count covers a diverged mark"
        assert not any(box.overlaps(other) for j, other in enumerate(counts) if j != i), "two counts overlap"


def test_a_long_title_stays_inside_its_figure(tmp_path, monkeypatch):
    """fig7_ablation_tasks_tuned's title (study name, metric, axis and 'mean ± std over seeds', 83 characters)
    ran off the figure's left edge; every title of a report now lies inside its figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    rows = [{**trial(s, 1.0), "seed": s, "cfg.data.num_tasks": n} for n in (2, 5) for s in (0, 1)]
    grid = {"data.num_tasks": {"grid": [2, 5]}}
    spec = make_study(tmp_path, rows, search=grid, name="fig7_ablation_tasks_tuned_at_width_400")
    figures = capture(monkeypatch)
    report.write_report(spec)
    titled = [f for f in figures if f.axes and f.axes[0].get_title()]
    assert titled
    for figure in titled:
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        box = figure.axes[0].title.get_window_extent(canvas.get_renderer())
        assert box.x0 >= 0 and box.x1 <= figure.bbox.width, figure.axes[0].get_title()
