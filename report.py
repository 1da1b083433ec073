"""Turn TensorBoard runs into a report to paste: markdown tables and plots of the curves.

    python report.py boardlog/sweep-20261122-101500        # every run of a sweep
    python report.py boardlog/run-a boardlog/run-b --out report/lr

Writes into --out (default: report/) and prints the tables:
  report.md   one row per run: what differs between the runs, parameters, seconds per epoch, best
              validation accuracy and its epoch, test accuracy of that best model, steps to reach 98%
              and 99%; then, where runs differ only by --seed, each group's mean ± standard deviation;
              then validation and test accuracy per epoch;
  curves.png  every run (or group of seeds: mean and ± sd band) overlaid: training against validation
              loss per epoch (overfitting shows as the two parting), validation and test accuracy per
              epoch, and accuracy and training loss step by step (train.py --log-every, --eval-every).

A run is any folder with TensorBoard event files in it (its steps/ subfolder holds its per-step
curves). The numbers come from the scalars train.py logs. The settings come from the run's last.pt,
which train.py saves every epoch, so a run that crashed half way still has them; if last.pt is gone,
from the hparams TensorBoard logged at the end of the run.
"""

import logging
import os
import re
import statistics
import sys
import time
from pathlib import Path

# matplotlib, kept here alone: these are plotted curves (axes, ticks, a legend), which it draws well; every
# picture of digits is drawn with Pillow (lab/figures.py), which needs no plotting library's import
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from lab import settings
from lab.board import STEPS
from lab.cli import UserError, make_parser, markdown_table, run_script
from lab.files import make_folder, save_png, write_text
from lab.runs import STATE_FILE, read_state
from net import build_model, count_parameters

# Quiet: TensorBoard warns when it drops the events a resumed run logged past its saved state, which is right.
logging.getLogger("tensorboard").setLevel(logging.ERROR)

TAGS = ("loss/train", "loss/val", "accuracy/val", "accuracy/test", "time/epoch_seconds")
STEP_TAGS = ("loss/train_step", "accuracy/train_step", "accuracy/val_step")
TARGETS = (0.98, 0.99)  # "how many steps to reach 98%, 99%?"


def parser():
    p = make_parser(__doc__)
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="run folders, or folders holding runs (a sweep, or all of boardlog)"
    )
    p.add_argument(
        "--out", default="report", metavar="DIR", help="folder for report.md and curves.png (default: report)"
    )
    return p


def find_runs(paths):
    """Every folder under `paths` that holds an events file, each once (a run's steps/ is part of the run)."""
    runs = []
    for path in map(Path, paths):
        if not path.is_dir():
            note(f"{path}: no such folder, skipped")
            continue
        found = sorted(
            {
                f.parent
                for f in path.rglob("events.out.tfevents.*")
                if not (f.parent.name == STEPS and any(f.parent.parent.glob("events.out.tfevents.*")))
            }
        )
        if not found:
            note(f"{path}: no TensorBoard event files in it (no runs yet?), skipped")
        runs += found
    return list(dict.fromkeys(runs))


def note(text):
    print(text, file=sys.stderr)  # notes go to stderr, so stdout stays the tables alone


def clean(values):
    """Plain values: 'None' back to None, TensorBoard's 0/1 back to booleans."""
    out = {k: (None if v == "None" else v) for k, v in values.items()}
    return {k: (bool(v) if k in settings.SWITCHES and v is not None else v) for k, v in out.items()}


def read_settings(run_dir, events):
    """The run's train.py settings: from last.pt, else from the hparams in the events, else {}."""
    if (run_dir / STATE_FILE).is_file():
        try:
            return clean(read_state(run_dir / STATE_FILE)["settings"][0])
        except UserError:
            pass  # unreadable: try the events
    try:
        content = events.PluginTagToContent("hparams")
    except KeyError:  # a run that did not finish logs no hparams
        return {}
    for blob in content.values():
        data = plugin_data_pb2.HParamsPluginData.FromString(blob)
        if data.HasField("session_start_info"):
            logged = data.session_start_info.hparams
            order = settings.TRAINING + sorted(logged)  # train.py's order, not the file's
            kinds = {k: logged[k].WhichOneof("kind") for k in logged}  # number, string, bool or null
            return clean(
                {
                    k: getattr(logged[k], kinds[k]) if kinds[k] not in (None, "null_value") else None
                    for k in dict.fromkeys(order)
                    if k in logged
                }
            )
    return {}


def count_params(values):
    """Rebuilt from the model's name and options: exact, and needs no checkpoint."""
    try:
        return count_parameters(build_model(values["model"], **settings.model_options(values)))
    except (KeyError, UserError, TypeError, ValueError):  # no settings, or a model this net.py lacks
        return None


def scalars(folder, tags):
    """{tag: {step: value}} of a folder's events; a step logged twice (a resumed run) keeps its last value."""
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    found = events.Tags()["scalars"]
    return events, {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in tags if tag in found}


def steps_to(curves):
    """{target: the first step whose accuracy reached it, or None}, and the curve it was read from:
    the validation accuracy measured every --eval-every steps, else the training accuracy of each
    --log-every window."""
    tag = "accuracy/val_step" if curves.get("accuracy/val_step") else "accuracy/train_step"
    points = sorted(curves.get(tag, {}).items())
    return {t: next((s for s, v in points if v >= t), None) for t in TARGETS}, tag


def read_run(run_dir):
    """One run's curves and summary, or a string saying why there is nothing to report."""
    events, curves = scalars(run_dir, TAGS)
    if "accuracy/val" not in curves:
        return "no epoch finished (crashed or stopped in its first epoch?)"
    if (run_dir / STEPS).is_dir():
        curves.update(scalars(run_dir / STEPS, STEP_TAGS)[1])
    val, test = curves["accuracy/val"], curves.get("accuracy/test", {})
    epochs = sorted(val)
    best = max(epochs, key=lambda e: (val[e], -e))  # the first best epoch, as train.py keeps it
    if "time/epoch_seconds" in curves:
        secs = f"{statistics.mean(curves['time/epoch_seconds'].values()):.1f}"
    else:  # logged before train.py wrote the time: estimate from the event times, evaluation included
        times = {e.step: e.wall_time for e in events.Scalars("accuracy/val")}
        gaps = [times[e] - times[e - 1] for e in epochs if e - 1 in times]
        secs = f"~{statistics.median(gaps):.1f}" if gaps else None
    values = read_settings(run_dir, events)
    total = values.get("epochs")
    reached, steps_tag = steps_to(curves)
    return {
        "dir": run_dir,
        "curves": curves,
        "settings": values,
        "params": count_params(values),
        "secs": secs,
        "best_val": val[best],
        "best_epoch": best,
        "test": test.get(best),
        "epochs": epochs[-1],
        "total": int(total) if total is not None else None,
        "reached": reached,
        "steps_tag": steps_tag,
        "started": events.FirstEventTimestamp(),
    }


def fmt(value):
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):  # --channels, as it is typed: 32,64,64
        return ",".join(map(fmt, value))
    return str(value)


def mean_sd(values, scale=100, decimals=2):
    """'99.12 ± 0.05' over seeds (sample standard deviation), or the one value alone; "(k of n)" after it
    when only k of the n runs have a value (e.g. reached 99%)."""
    values = list(values)
    known = [scale * v for v in values if v is not None]
    if not known:
        return "–"
    text = (
        f"{known[0]:.{decimals}f}"
        if len(known) == 1
        else f"{statistics.mean(known):.{decimals}f} ± {statistics.stdev(known):.{decimals}f}"
    )
    return text if len(known) == len(values) else f"{text} ({len(known)} of {len(values)})"


def group_by_seed(runs):
    """Runs that differ only by --seed, together, in the order they ran: [[run, ...], ...]."""
    groups = {}
    for r in runs:
        key = tuple(sorted((k, fmt(v)) for k, v in r["settings"].items() if k != "seed")) or str(r["dir"])
        groups.setdefault(key, []).append(r)
    return list(groups.values())


def mean_curves(members):
    """The members' curves averaged step by step: {tag: {step: (mean, sd)}} (sd 0 for one run)."""
    tags = {tag for r in members for tag in r["curves"]}
    out = {}
    for tag in tags:
        steps = sorted({s for r in members for s in r["curves"].get(tag, {})})
        out[tag] = {}
        for step in steps:
            values = [r["curves"][tag][step] for r in members if step in r["curves"].get(tag, {})]
            out[tag][step] = (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
    return out


def plot(series, path):
    """series: [(label, {tag: {step: (mean, sd)}})]. Four panels, one colour per series."""
    fig = Figure(figsize=(12, 9), layout="constrained")  # a figure alone, no window: pyplot is not needed
    axes = fig.subplots(2, 2)
    colors = colormaps["tab10"].colors if len(series) <= 10 else colormaps["tab20"].colors
    steps_tag = "accuracy/val_step" if any(c.get("accuracy/val_step") for _, c in series) else "accuracy/train_step"
    panels = [
        (
            axes[0, 0],
            [("loss/train", "-", 1, "training"), ("loss/val", "--", 1, "validation")],
            "loss",
            "Training (—) against validation (--) loss",
        ),
        (
            axes[0, 1],
            [("accuracy/val", "-", 100, "validation"), ("accuracy/test", ":", 100, "test")],
            "accuracy (%)",
            "Validation (—) and test (···) accuracy",
        ),
        (
            axes[1, 0],
            [(steps_tag, "-", 100, "")],
            "accuracy (%)",
            "Validation accuracy, step by step"
            if steps_tag == "accuracy/val_step"
            else "Training accuracy, mean of each --log-every steps",
        ),
        (axes[1, 1], [("loss/train_step", "-", 1, "")], "training loss", "Training loss, step by step"),
    ]
    for i, (label, curves) in enumerate(series):
        colour = colors[i % len(colors)]
        for ax, lines, _, _ in panels:
            for tag, style, scale, _ in lines:
                points = sorted(curves.get(tag, {}).items())
                if not points:
                    continue
                x = [s for s, _ in points]
                mean = [scale * m for _, (m, _) in points]
                sd = [scale * d for _, (_, d) in points]
                ax.plot(
                    x,
                    mean,
                    style,
                    color=colour,
                    label=label if (ax, tag) == (axes[0, 1], "accuracy/val") else None,
                    marker="o" if ax in (axes[0, 0], axes[0, 1]) else None,
                    markersize=3,
                )
                if any(sd):
                    ax.fill_between(
                        x,
                        [m - d for m, d in zip(mean, sd)],
                        [m + d for m, d in zip(mean, sd)],
                        color=colour,
                        alpha=0.15,
                        linewidth=0,
                    )
    last = max((max(c.get("accuracy/val", {0: 0})) for _, c in series), default=1)
    for ax, _, ylabel, title in panels:
        epochs = ax in (axes[0, 0], axes[0, 1])
        ax.set(xlabel="epoch" if epochs else "step", ylabel=ylabel, title=title)
        if epochs and last <= 20:  # every epoch a tick; one epoch alone would otherwise get ticks like 0.995
            ax.set_xticks(range(1, last + 1))
            ax.set_xlim(0.5, last + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, "not logged (train.py --log-every)", ha="center", va="center", transform=ax.transAxes)
    # Below the plots, where it hides no curve; one legend serves all since the colours match.
    handles, labels = axes[0, 1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(series) if len(series) <= 4 else 3, fontsize=8)
    save_png(path, fig, dpi=110)


def per_epoch_table(series, tag):
    last = max(max(curves.get("accuracy/val", {0: 0})) for _, curves in series)
    return markdown_table(
        ["epoch", *(label for label, _ in series)],
        [[e, *(mean_sd_point(curves.get(tag, {}).get(e)) for _, curves in series)] for e in range(1, last + 1)],
    )


def mean_sd_point(point):
    if point is None:
        return "–"
    mean, sd = point
    return f"{100 * mean:.2f}" + (f" ± {100 * sd:.2f}" if sd else "")


def read_runs(paths):
    """Every run under `paths` with a finished epoch, in the order they ran (a sweep's grid order)."""
    runs = []
    for run_dir in find_runs(paths):
        try:
            run = read_run(run_dir)
        except Exception as e:  # a damaged events file: one line, and the other runs still count
            run = f"its event files cannot be read ({type(e).__name__}: {str(e)[:80]})"
        if isinstance(run, str):
            note(f"{run_dir}: {run}, skipped")
        else:
            runs.append(run)
    if not runs:
        raise UserError(
            f"no runs with a finished epoch in {' '.join(paths)}: train some with python sweep.py or python train.py"
        )
    return sorted(runs, key=lambda r: r["started"])


def name_runs(runs):
    """Give each run a name (its folder, relative to what the runs share) and a label (the settings in
    which it differs from the others). Returns (the settings that differ, those all runs share)."""
    common = Path(os.path.commonpath([r["dir"].absolute() for r in runs]))
    if any(r["dir"].absolute() == common for r in runs):  # one run alone, or a run inside another
        common = common.parent
    for r in runs:
        r["name"] = str(r["dir"].absolute().relative_to(common))  # e.g. "model=cnn_lr=0.01"
    keys = list(dict.fromkeys(k for r in runs for k in r["settings"]))
    # A setting differs when the runs that record it disagree; a run that lost its settings differs in none.
    known = {k: [fmt(r["settings"][k]) for r in runs if r["settings"].get(k) is not None] for k in keys}
    differs = [k for k in keys if len(set(known[k])) > 1]
    for r in runs:
        r["label"] = ", ".join(f"{k}={fmt(r['settings'].get(k))}" for k in differs)
        if len(r["label"]) > 50 and len(r["name"]) < len(r["label"]):  # unrelated runs: the folder says it shorter
            r["label"] = r["name"]
    if len({r["label"] for r in runs}) < len(runs) or not runs[0]["label"]:  # nothing tells runs apart
        for r in runs:
            r["label"] = r["name"]
    return differs, [f"{k} {known[k][0]}" for k in keys if k not in differs and known[k]]


def runs_table(runs, columns):
    """One row per run."""

    def reached(r, target):
        if r["reached"][target] is None:
            return "–"
        return f"{'~' if r['steps_tag'] == 'accuracy/train_step' else ''}{r['reached'][target]:,}"

    return markdown_table(
        [
            "run",
            *columns,
            "params",
            "s/epoch",
            "best val (%)",
            "best epoch",
            "test (%)",
            "epochs",
            *(f"steps to {100 * t:g}%" for t in TARGETS),
        ],
        [
            [
                r["name"],
                *(fmt(r["settings"].get(k)) for k in columns),
                f"{r['params']:,}" if r["params"] is not None else "–",
                r["secs"] or "–",
                f"{100 * r['best_val']:.2f}",
                r["best_epoch"],
                f"{100 * r['test']:.2f}" if r["test"] is not None else "–",
                r["epochs"] if not r["total"] or r["epochs"] >= r["total"] else f"{r['epochs']} of {r['total']}",
                *(reached(r, t) for t in TARGETS),
            ]
            for r in runs
        ],
    )


def seeds_table(groups, columns):
    """One row per group of runs that differ only by seed: mean ± sd of each figure, and n."""
    return markdown_table(
        [
            *(columns or ["runs"]),
            "n",
            "seeds",
            "best val (%)",
            "best epoch",
            "test (%)",
            *(f"steps to {100 * t:g}%" for t in TARGETS),
        ],
        [
            [
                *((fmt(g[0]["settings"].get(k)) for k in columns) if columns else [g[0]["group"]]),
                len(g),
                " ".join(fmt(r["settings"].get("seed")) for r in g),
                mean_sd(r["best_val"] for r in g),
                mean_sd([r["best_epoch"] for r in g], scale=1, decimals=1),
                mean_sd(r["test"] for r in g),
                *(estimated(g, t) + mean_sd([r["reached"][t] for r in g], scale=1, decimals=0) for t in TARGETS),
            ]
            for g in groups
        ],
    )


def estimated(runs, target):
    """'~' where a step count comes from training accuracy (no --eval-every): see the footnote."""
    return "~" if any(r["steps_tag"] == "accuracy/train_step" and r["reached"][target] for r in runs) else ""


def main(argv=None):
    args = parser().parse_args(argv)
    runs = read_runs(args.paths)
    differs, shared = name_runs(runs)
    columns = [k for k in differs if k != "epochs"]  # the epochs column shows the run's length
    table = runs_table(runs, columns)

    # Runs that differ only by seed: chance alone tells them apart, so they are summed up as mean ± sd.
    groups = group_by_seed(runs)
    grouped = any(len(g) > 1 for g in groups)
    group_columns = [k for k in columns if k != "seed"]
    for g in groups:
        g_label = ", ".join(f"{k}={fmt(g[0]['settings'].get(k))}" for k in group_columns)
        folder = re.sub(r"_?seed=[^_]+", "", g[0]["name"]).strip("_")  # e.g. recipe=ours for recipe=ours_seed=1
        if len(g_label) > 50 and folder and len(folder) < len(g_label):  # a recipe sets several: say it shorter
            g_label = folder
        for r in g:
            r["group"] = g_label or (r["label"] if len(g) == 1 else "all runs")
    seeds = seeds_table(groups, group_columns) if grouped else ""
    series = (
        [(g[0]["group"], mean_curves(g)) for g in groups] if grouped else [(r["label"], mean_curves([r])) for r in runs]
    )
    val_table, test_table = per_epoch_table(series, "accuracy/val"), per_epoch_table(series, "accuracy/test")

    stopped = [r for r in runs if r["total"] and r["epochs"] < r["total"]]
    for r in stopped:
        note(
            f"{r['dir']}: only {r['epochs']} of its {r['total']} epochs are logged "
            "(crashed, interrupted or still running); its row covers those"
        )
    for r in runs:
        if not r["settings"]:
            note(f"{r['dir']}: no last.pt and no hparams, so its settings are unknown")

    shared_line = f"Shared by all runs: {', '.join(shared)}." if shared else ""
    per = " (mean ± sd over seeds)" if grouped else ""
    sources = [p for p in args.paths if any(r["dir"].absolute().is_relative_to(Path(p).absolute()) for r in runs)]
    text = (
        "\n\n".join(
            filter(
                None,
                [
                    "# Experiment report",
                    " ".join(
                        filter(
                            None,
                            [
                                f"{len(runs)} run{'s' * (len(runs) != 1)} from {', '.join(sources)}, "
                                f"{time.strftime('%Y-%m-%d %H:%M')}.",
                                shared_line,
                            ],
                        )
                    ),
                    "## Runs",
                    table,
                    "*s/epoch*: seconds to train one epoch, evaluation excluded (mean over the epochs logged; "
                    "~ marks an estimate from the event times). *best val*: the best validation accuracy, whose "
                    "epoch's weights are the run's saved checkpoint; *test (%)*: that checkpoint's test accuracy. "
                    "*steps to 98%, 99%*: the first step at which the validation accuracy, measured every --eval-every "
                    "steps, reached it; ~ marks the training accuracy of each --log-every window instead, where the "
                    "run measured no validation between epochs; – never reached."
                    + (' *epochs* "k of n": the run stopped early.' if stopped else ""),
                    grouped and "## Over seeds: mean ± standard deviation",
                    seeds,
                    grouped
                    and (
                        "Runs that differ only by `--seed` differ by chance alone: the spread over seeds says how "
                        "large a difference between settings must be before it means something. n: the runs."
                    ),
                    f"## Validation accuracy (%) per epoch{per}",
                    val_table,
                    f"## Test accuracy (%) per epoch{per}",
                    test_table,
                    "Watched, never used to choose: the best epoch is chosen on validation.",
                    "## Curves",
                    "![Loss and accuracy per epoch and per step](curves.png)",
                ],
            )
        )
        + "\n"
    )

    out = Path(args.out)
    make_folder(out, "--out")
    plot(series, out / "curves.png")  # the larger file first: on a full disk, nothing has changed when it fails
    write_text(out / "report.md", text)
    print(
        "\n\n".join(
            filter(
                None,
                [
                    shared_line,
                    table,
                    grouped and "Over seeds (mean ± sd):",
                    seeds,
                    f"Validation accuracy (%) per epoch{per}:",
                    val_table,
                    f"Test accuracy (%) per epoch{per}:",
                    test_table,
                ],
            )
        )
    )
    print(f"\nWrote {out / 'report.md'} and {out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    run_script(main)
