"""Turn TensorBoard runs into a report to paste: markdown tables and a plot of the curves.

    python report.py boardlog/sweep-20261122-101500        # every run of a sweep
    python report.py boardlog/run-a boardlog/run-b --out report/lr

Writes into --out (default: report/) and prints the tables:
  report.md   one row per run (what differs between the runs, parameters, seconds
              per epoch, best validation accuracy and its epoch, test accuracy of
              that best model), then validation accuracy per epoch per run;
  curves.png  training loss and validation accuracy per epoch, every run overlaid.

A run is any folder with TensorBoard event files in it. The numbers come from the
scalars train.py logs every epoch. The settings come from the run's last.pt,
which train.py saves every epoch, so a run that crashed half way still has them;
if last.pt is gone, from the hparams TensorBoard logged at the end of the run.
"""
import logging
import os
import statistics
import sys
import time
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from lab import settings
from lab.cli import UserError, make_parser, markdown_table, run_script
from lab.files import make_folder, save_png, write_text
from lab.runs import STATE_FILE, read_state
from net import build_model, count_parameters

# Quiet: TensorBoard warns when it drops the events a resumed run logged past its saved state, which is right.
logging.getLogger("tensorboard").setLevel(logging.ERROR)

TAGS = ("loss/train", "accuracy/val", "accuracy/test", "time/epoch_seconds")


def parser():
    p = make_parser(__doc__)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="run folders, or folders holding runs (a sweep, or all of boardlog)")
    p.add_argument("--out", default="report", metavar="DIR",
                   help="folder for report.md and curves.png (default: report)")
    return p


def find_runs(paths):
    """Every folder under `paths` that holds an events file, each once."""
    runs = []
    for path in map(Path, paths):
        if not path.is_dir():
            note(f"{path}: no such folder, skipped")
            continue
        found = sorted({f.parent for f in path.rglob("events.out.tfevents.*")})
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
            return clean({k: getattr(logged[k], kinds[k]) if kinds[k] not in (None, "null_value") else None
                          for k in dict.fromkeys(order) if k in logged})
    return {}


def count_params(values):
    """Rebuilt from the model's name and options: exact, and needs no checkpoint."""
    try:
        return count_parameters(build_model(values["model"], **settings.model_options(values)))
    except (KeyError, UserError, TypeError, ValueError):  # no settings, or a model this net.py lacks
        return None


def read_run(run_dir):
    """One run's curves and summary, or a string saying why there is nothing to report."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    tags = events.Tags()["scalars"]
    if "accuracy/val" not in tags:
        return "no epoch finished (crashed or stopped in its first epoch?)"
    # {step: event}: a step logged twice (a resumed run) keeps its last value.
    curves = {tag: {e.step: e for e in events.Scalars(tag)} for tag in TAGS if tag in tags}
    val, test = curves["accuracy/val"], curves.get("accuracy/test", {})
    epochs = sorted(val)
    best = max(epochs, key=lambda e: (val[e].value, -e))  # the first best epoch, as train.py keeps it
    if "time/epoch_seconds" in curves:
        secs = f"{statistics.mean(e.value for e in curves['time/epoch_seconds'].values()):.1f}"
    else:  # logged before train.py wrote the time: estimate from the event times, evaluation included
        gaps = [val[e].wall_time - val[e - 1].wall_time for e in epochs if e - 1 in val]
        secs = f"~{statistics.median(gaps):.1f}" if gaps else None
    values = read_settings(run_dir, events)
    total = values.get("epochs")
    return {"dir": run_dir, "curves": curves, "settings": values, "params": count_params(values),
            "secs": secs, "best_val": val[best].value, "best_epoch": best,
            "test": test[best].value if best in test else None, "epochs": epochs[-1],
            "total": int(total) if total is not None else None, "started": events.FirstEventTimestamp()}


def fmt(value):
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def plot(runs, path):
    fig = Figure(figsize=(12, 5), layout="constrained")  # a figure alone, no window: pyplot is not needed
    axes = fig.subplots(1, 2)
    colors = colormaps["tab10"].colors if len(runs) <= 10 else colormaps["tab20"].colors
    for i, run in enumerate(runs):
        style = {"color": colors[i % len(colors)], "linestyle": "-" if i < len(colors) else "--",
                 "marker": "o", "markersize": 3}
        for ax, tag, scale in ((axes[0], "loss/train", 1), (axes[1], "accuracy/val", 100)):
            points = sorted(run["curves"].get(tag, {}).items())
            ax.plot([s for s, _ in points], [scale * e.value for _, e in points], label=run["label"], **style)
    axes[0].set(xlabel="epoch", ylabel="training loss", title="Training loss")
    axes[1].set(xlabel="epoch", ylabel="validation accuracy (%)", title="Validation accuracy")
    last = max(run["epochs"] for run in runs)
    for ax in axes:
        if last <= 20:  # every epoch a tick; one epoch alone would otherwise get ticks like 0.995
            ax.set_xticks(range(1, last + 1))
            ax.set_xlim(0.5, last + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    # Below both plots, where it hides no curve; one legend serves both since the colours match.
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(runs) if len(runs) <= 4 else 3, fontsize=8)
    save_png(path, fig, dpi=120)


def main(argv=None):
    args = parser().parse_args(argv)
    runs = []
    for run_dir in find_runs(args.paths):
        try:
            run = read_run(run_dir)
        except Exception as e:  # a damaged events file: one line, and the other runs still count
            run = f"its event files cannot be read ({type(e).__name__}: {str(e)[:80]})"
        if isinstance(run, str):
            note(f"{run_dir}: {run}, skipped")
        else:
            runs.append(run)
    if not runs:
        raise UserError(f"no runs with a finished epoch in {' '.join(args.paths)}: "
                        "train some with python sweep.py or python train.py")
    runs.sort(key=lambda r: r["started"])  # the order they were run in: a sweep's grid order

    # Names relative to what the runs share, e.g. "model=cnn_lr=0.01" rather than boardlog/sweep-.../...
    common = Path(os.path.commonpath([r["dir"].absolute() for r in runs]))
    if any(r["dir"].absolute() == common for r in runs):  # one run alone, or a run inside another
        common = common.parent
    for r in runs:
        r["name"] = str(r["dir"].absolute().relative_to(common))

    keys = list(dict.fromkeys(k for r in runs for k in r["settings"]))
    # A setting differs when the runs that record it disagree; a run that lost its settings differs in none.
    known = {k: [fmt(r["settings"][k]) for r in runs if r["settings"].get(k) is not None] for k in keys}
    differs = [k for k in keys if len(set(known[k])) > 1]
    shared = [f"{k} {known[k][0]}" for k in keys if k not in differs and known[k]]
    for r in runs:
        r["label"] = ", ".join(f"{k}={fmt(r['settings'].get(k))}" for k in differs)
        if len(r["label"]) > 50 and len(r["name"]) < len(r["label"]):  # unrelated runs: the folder says it shorter
            r["label"] = r["name"]
    if len({r["label"] for r in runs}) < len(runs) or not runs[0]["label"]:  # nothing tells runs apart
        for r in runs:
            r["label"] = r["name"]

    columns = [k for k in differs if k != "epochs"]  # the epochs column below shows the run's length
    table = markdown_table(
        ["run", *columns, "params", "s/epoch", "best val (%)", "best epoch", "test (%)", "epochs"],
        [[r["name"], *(fmt(r["settings"].get(k)) for k in columns),
          f"{r['params']:,}" if r["params"] is not None else "–", r["secs"] or "–",
          f"{100 * r['best_val']:.2f}", r["best_epoch"],
          f"{100 * r['test']:.2f}" if r["test"] is not None else "–",
          r["epochs"] if not r["total"] or r["epochs"] >= r["total"] else f"{r['epochs']} of {r['total']}"]
         for r in runs])
    last = max(r["epochs"] for r in runs)
    per_epoch = markdown_table(
        ["epoch", *(r["label"] for r in runs)],
        [[e, *(f"{100 * r['curves']['accuracy/val'][e].value:.2f}" if e in r["curves"]["accuracy/val"] else "–"
               for r in runs)] for e in range(1, last + 1)])

    stopped = [r for r in runs if r["total"] and r["epochs"] < r["total"]]
    for r in stopped:
        note(f"{r['dir']}: only {r['epochs']} of its {r['total']} epochs are logged "
             "(crashed, interrupted or still running); its row covers those")
    for r in runs:
        if not r["settings"]:
            note(f"{r['dir']}: no last.pt and no hparams, so its settings are unknown")

    shared_line = f"Shared by all runs: {', '.join(shared)}." if shared else ""
    sources = [p for p in args.paths if any(r["dir"].absolute().is_relative_to(Path(p).absolute()) for r in runs)]
    text = "\n\n".join(filter(None, [
        "# Experiment report",
        " ".join(filter(None, [f"{len(runs)} run{'s' * (len(runs) != 1)} from {', '.join(sources)}, "
                               f"{time.strftime('%Y-%m-%d %H:%M')}.", shared_line])),
        "## Runs", table,
        "*s/epoch*: seconds to train one epoch, evaluation excluded (mean over the epochs logged; "
        "~ marks an estimate from the event times). *best val*: the best validation accuracy, whose "
        "epoch's weights are the run's saved checkpoint; *test (%)*: that checkpoint's test accuracy."
        + (" *epochs* \"k of n\": the run stopped early." if stopped else ""),
        "## Validation accuracy (%) per epoch", per_epoch,
        "## Curves", "![Training loss and validation accuracy per epoch](curves.png)"])) + "\n"

    out = Path(args.out)
    make_folder(out, "--out")
    plot(runs, out / "curves.png")  # the larger file first: on a full disk, nothing has changed when it fails
    write_text(out / "report.md", text)
    print("\n\n".join(filter(None, [shared_line, table, "Validation accuracy (%) per epoch:", per_epoch])))
    print(f"\nWrote {out / 'report.md'} and {out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    run_script(main)
