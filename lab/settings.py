"""train.py's flags: the one list of a run's settings. Everything else is derived from this parser.

The flags fall in three groups, and the group decides what happens to a setting:

    training   what the network learns with: recorded in net.pth and last.pt, shown in TensorBoard's
               HParams and as report.py's columns, and each one a flag of sweep.py
    run        how this run is kept: a resumed run keeps its own
    machine    where it runs now: a resumed run takes these from the command line

A setting's default is written once: in RECIPE_TABLE for the settings a recipe chooses, else in its
add_argument; weight decay and batch norm follow from other settings (with_defaults).

To add a training setting, add one flag to the training group below with a default that keeps
the old behaviour, and use it where it acts (train.py, or net.py for a model option). The record
in checkpoints, HParams, sweep.py and report.py follow by themselves.
"""

import argparse
import inspect

from lab.cli import (
    UserError,
    add_checkpoint_flag,
    add_data_flags,
    add_device_flag,
    add_precision_flag,
    fraction,
    int_between,
    make_parser,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    share,
)
from net import ACTIVATIONS, MODELS

# The recipes, a column each: the defaults of the settings they choose (a flag given on the command line wins).
#   robust  the default: ours on harder images for its 6 epochs; it reads handwriting that is not MNIST's as well as
#           best does (docs/lab-questions.md), for a little more time per epoch
#   ours    MNIST's images as they are: the default until 2026-12; the quickest to 99.2% and 99.5%
#   plain   the lab reports' textbook setup: sgd with a constant lr, no label smoothing, no augmentation
#   best    robust, trained five times longer: the lab's most accurate single net
# The harder images (--augment to --lowres) are each measured on its own in docs/results.md; --ema averages the
# weights. Columns, so that a recipe is read down and a setting across; the formatter would undo them.
RECIPE_NAMES = ("robust", "ours", "plain", "best")
# fmt: off
RECIPE_TABLE = {
    # setting           robust      ours        plain       best
    "epochs":          (6,          6,          6,          30),
    "optimizer":       ("adamw",    "adamw",    "sgd",      "adamw"),
    "lr":              (0.006,      0.006,      0.01,       0.006),
    "scheduler":       ("onecycle", "onecycle", "none",     "onecycle"),
    "label_smoothing": (0.1,        0.1,        0.0,        0.1),
    "nesterov":        (True,       True,       False,      True),
    "augment":         (True,       False,      False,      True),
    "rotate":          (12.0,       10.0,       10.0,       12.0),
    "scale":           (0.12,       0.1,        0.1,        0.12),
    "shift":           (2.5,        2.0,        2.0,        2.5),
    "thickness":       (0.3,        0.0,        0.0,        0.3),
    "lowres":          (0.2,        0.0,        0.0,        0.2),
    "ema":             (0.999,      0.0,        0.0,        0.999),
}
# fmt: on
RECIPES = {name: {dest: row[i] for dest, row in RECIPE_TABLE.items()} for i, name in enumerate(RECIPE_NAMES)}
DEFAULT_RECIPE = "robust"
# A record written before a setting existed, or before robust was the default, means the recipe of its day.
OLD_RECIPE = "ours"
VERSION = 2  # of the settings record in net.pth and last.pt; version 1 stored the whole argparse Namespace
# The settings whose default came with a change of what a run does: a record written before one existed ran without it.
BEFORE_IT_EXISTED = {"norm_after_pool": None}  # None: the net's own default, batch norm before the pooling
GROUPS = {
    "training": "training settings (recorded with the run; each is also a sweep.py flag)",
    "run": "how the run is kept (a resumed run keeps its own)",
    "machine": "where it runs (a resumed run takes these from the command line)",
}


def widths(text):
    """argparse type for --channels: 1 to 4 positive whole numbers separated by commas, e.g. 32,64,64."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not 1 <= len(values) <= 4 or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected 1 to 4 widths of at least 1 separated by commas, e.g. 32,64,64, got {text!r}"
        )
    return values


def default_text(dest):
    """A --help text's default of a setting that recipes change: '6; --recipe best: 30'."""
    shown = lambda v: ("on" if v else "off") if isinstance(v, bool) else f"{v:g}"  # noqa: E731
    default = RECIPES[DEFAULT_RECIPE][dest]
    others = [f"--recipe {name}: {shown(recipe[dest])}" for name, recipe in RECIPES.items() if recipe[dest] != default]
    return "; ".join([shown(default)] + others)


def options_of(model):
    """The option names a net of net.MODELS takes (none for the fixed lab nets)."""
    return inspect.signature(MODELS[model]).parameters


def conv_blocks(model, channels):
    """How many conv blocks a net with a `channels` option has: one a width given (--channels), else its default's."""
    return len(channels or options_of(model)["channels"].default)


class Recorded:
    """An argparse group that also keeps, for each setting added to it, the Action that add_argument()
    returns: which group a setting is in, its flag and its type are read from there, through argparse's
    public interface."""

    def __init__(self, group, name, actions):
        self.group = group
        self.name = name
        self.actions = actions

    def add_argument(self, *flags, **options):
        action = self.group.add_argument(*flags, **options)
        self.actions[action.dest] = (self.name, action)
        return action


def parser(description=None, actions=None):
    """train.py's parser. `actions`, a dict, is filled with {setting: (its group, its argparse Action)}.

    A setting's default is its add_argument's, but for those in RECIPE_TABLE (the recipe's) and weight decay and
    batch norm (worked out from others): those are filled in by with_defaults()."""
    p = make_parser(description)
    actions = {} if actions is None else actions
    g = {name: Recorded(p.add_argument_group(title), name, actions) for name, title in GROUPS.items()}
    a = g["training"].add_argument
    a("--model", choices=list(MODELS), default="cnn", help="a network of net.py (default: cnn)")
    a(
        "--channels",
        metavar="C,C,...",
        type=widths,
        help="cnn's conv blocks, one width each, 1 to 4 blocks: 32,64 (two), 32,64,64,128 (four) (default: 32,64,64)",
    )
    a("--hidden", metavar="N", type=positive_int, help="the width of cnn's dense layer (default: 128)")
    a(
        "--activation",
        choices=list(ACTIVATIONS),
        help="the activation of cnn, mlp, cnn2 and cnn4bn (default: each net's own: sigmoid for mlp, else relu)",
    )
    a("--dropout", metavar="P", type=fraction, help="dropout in the dense head of cnn (default: none)")
    a(
        "--batchnorm",
        action=argparse.BooleanOptionalAction,
        help="batch norm in the conv blocks of cnn (default: on with --augment) and cnn4bn (default: on)",
    )
    a(
        "--norm-after-pool",
        metavar="N",
        type=int_between(0, 4, "a number of conv blocks"),
        help="cnn's batch norm after the pooling in its first N blocks, on a quarter of the values; 0: before it "
        "in every block, as nets trained before 2026-12-07 have it (default with --batchnorm: every block but the "
        "last)",
    )
    a(
        "--recipe",
        choices=list(RECIPES),
        default=DEFAULT_RECIPE,
        help="the defaults of the settings below that say 'recipe': robust (the default) is ours on harder images "
        "(--augment, --thickness, --lowres) judged by its averaged weights (--ema), and reads handwriting that is "
        "not MNIST's; ours (adamw, 0.006, onecycle, label smoothing 0.1) on MNIST's images as they are, the "
        "quickest; plain is the lab reports' textbook setup (sgd with momentum 0.9, no nesterov, a constant lr "
        "of 0.01, no label smoothing, no augmentation); best is robust for 30 epochs, the lab's most accurate "
        "single net. A flag given wins (default: robust)",
    )
    a(
        "--epochs",
        metavar="N",
        type=positive_int,
        help=f"passes over the training images (default: {default_text('epochs')})",
    )
    a("--batch-size", metavar="N", type=positive_int, default=128, help="images per training step (default: 128)")
    a("--lr", metavar="X", type=positive_float, help="(peak) learning rate (default: the recipe's)")
    a("--optimizer", choices=["adam", "adamw", "sgd", "rmsprop", "adadelta"], help="optimiser (default: the recipe's)")
    a(
        "--momentum",
        metavar="X",
        type=non_negative_float,
        default=0.9,
        help="momentum for sgd and rmsprop (default: 0.9)",
    )
    a(
        "--nesterov",
        action=argparse.BooleanOptionalAction,
        help="Nesterov momentum for sgd, else plain momentum (default: the recipe's)",
    )
    a(
        "--weight-decay",
        metavar="X",
        type=non_negative_float,
        help="decoupled decay for adamw, an L2 penalty for the others (default: 0.05 for adamw, else 0)",
    )
    a(
        "--scheduler",
        choices=["onecycle", "step", "cosine", "none"],
        help="learning-rate schedule: onecycle warms up for 25%% of the steps, then anneals to ~0; step "
        "multiplies by --gamma every --step-size epochs; cosine anneals from --lr; none keeps --lr "
        "(default: the recipe's)",
    )
    a(
        "--step-size",
        metavar="N",
        type=positive_int,
        default=3,
        help="epochs between lr drops for --scheduler step (default: 3)",
    )
    a(
        "--gamma",
        metavar="X",
        type=positive_float,
        default=0.1,
        help="lr factor at each drop for --scheduler step (default: 0.1)",
    )
    a(
        "--loss",
        choices=["cross-entropy", "mse"],
        default="cross-entropy",
        help="the training loss: cross-entropy, or mse between the softmax probabilities and the one-hot label "
        "(validation and test always report cross-entropy) (default: cross-entropy)",
    )
    a(
        "--label-smoothing",
        metavar="X",
        type=fraction,
        help="label smoothing of the training targets: the training loss then never reaches 0 (default: the recipe's)",
    )
    a(
        "--augment",
        action=argparse.BooleanOptionalAction,
        help="random shifts, rotations and scaling of every batch (--shift, --rotate, --scale), made on the device; "
        f"use with ~20 epochs (default: {default_text('augment')})",
    )
    a(
        "--shift",
        metavar="PX",
        type=non_negative_float,
        help=f"with --augment: shifts of up to ±PX pixels (default: {default_text('shift')})",
    )
    a(
        "--rotate",
        metavar="DEG",
        type=non_negative_float,
        help=f"with --augment: rotations of up to ±DEG degrees (default: {default_text('rotate')})",
    )
    a(
        "--scale",
        metavar="X",
        type=fraction,
        help=f"with --augment: sizes from 1-X to 1+X times (default: {default_text('scale')})",
    )
    a(
        "--elastic",
        metavar="PX",
        type=non_negative_float,
        default=0.0,
        help="with --augment: elastic distortion, a smooth random field moving each pixel by PX pixels on average "
        "(Simard et al.'s sigma 4, alpha 34 is about 1.4); 0: none (default: 0)",
    )
    a(
        "--thickness",
        metavar="P",
        type=share,
        help="with --augment: a thicker or thinner pen, by up to a pixel on each side of the stroke, for a share P "
        f"of the images (default: {default_text('thickness')})",
    )
    a(
        "--lowres",
        metavar="P",
        type=share,
        help="with --augment: for a share P of the images, the digit drawn on a coarser grid (9 to 16 pixels) and "
        f"enlarged again, as a small or blurred photo gives it (default: {default_text('lowres')})",
    )
    a(
        "--ema",
        metavar="DECAY",
        type=fraction,
        help="validate, test and save an exponential moving average of the weights (and of batch norm's "
        "statistics), updated after every step: each step moves it 1-DECAY of the way to the weights. "
        f"0: the weights themselves (default: {default_text('ema')})",
    )
    a(
        "--seed",
        metavar="N",
        type=non_negative_int,
        default=1,
        help="seed for initialisation, shuffling and augmentation (default: 1)",
    )
    a(
        "--val-size",
        metavar="N",
        type=positive_int,
        default=5000,
        help="training images held out to validate on: they pick the best epoch (default: 5000)",
    )
    a("--limit", metavar="N", type=positive_int, help="train on the first N training images only (quick checks)")
    a(
        "--test-limit",
        metavar="N",
        type=positive_int,
        help="test on the first N of the 10,000 test images only, each epoch and at the end (quick checks: on a "
        "small run, testing takes longer than training; test.py always reads all 10,000)",
    )

    a = g["run"].add_argument
    add_precision_flag(g["run"])
    a("--compile", action="store_true", help="torch.compile the model (slower start; see docs/results.md)")
    a(
        "--log-every",
        metavar="N",
        type=positive_int,
        default=100,
        help="every N steps, the mean training loss and accuracy of those steps to TensorBoard (tags loss/train_step "
        "and accuracy/train_step, in the run's steps/ folder), and a line on the screen where there is no "
        "progress bar (an IDE, a notebook, a pipe) (default: 100)",
    )
    a(
        "--eval-every",
        metavar="N",
        type=positive_int,
        help="also measure the validation accuracy every N steps (accuracy/val_step): how many steps to 99%%? "
        "(default: once an epoch only)",
    )
    a("--logdir", default="boardlog", metavar="DIR", help="TensorBoard folder (default: boardlog)")
    a("--run-name", metavar="NAME", help="this run's subfolder of --logdir (default: date, time and settings)")
    add_checkpoint_flag(g["run"], help="where the best model is saved (default: net.pth)")

    a = g["machine"].add_argument
    add_device_flag(g["machine"], "train")
    add_data_flags(g["machine"])
    a(
        "--resume",
        nargs="?",
        const="latest",
        metavar="RUN",
        help="continue an interrupted run: its folder or name (alone: the latest run in --logdir); "
        "it keeps its own training and run settings (typed ones that differ are refused)",
    )
    return p


# The one parser, built once; what each setting is (group, flag, on/off, model option) is read from it.
ACTIONS = {}  # {setting: (its group, its argparse Action)}
PARSER = parser(actions=ACTIONS)
GROUP_OF = {dest: group for dest, (group, _) in ACTIONS.items()}
TRAINING = [dest for dest, group in GROUP_OF.items() if group == "training"]
RUN = [dest for dest, group in GROUP_OF.items() if group == "run"]
FLAG = {dest: action.option_strings[0] for dest, (_, action) in ACTIONS.items()}
SWITCHES = [dest for dest, (_, action) in ACTIONS.items() if isinstance(action, argparse.BooleanOptionalAction)]
MODEL_OPTIONS = [dest for dest in TRAINING if any(dest in options_of(m) for m in MODELS)]
UNTYPED = object()  # what parse() finds in a setting that was not typed


def parse(argv=None, description=None):
    """train.py's settings from the command line: those typed, and every other its default (with_defaults)."""
    PARSER.description = description  # train.py's docstring heads its --help
    # Parsed into a namespace that holds UNTYPED for every setting, so that what was typed tells itself apart.
    args = PARSER.parse_args(argv, argparse.Namespace(**dict.fromkeys(ACTIONS, UNTYPED)))
    return with_defaults({dest: value for dest, value in vars(args).items() if value is not UNTYPED})


def with_defaults(typed):
    """All the settings from those typed, {setting: value}: the others take the defaults of the typed recipe (or
    the default one), else of their flags; weight decay and batch norm, where not typed, follow from the others.

    args.given is the set of settings typed: --resume refuses those its run would overrule, and sweep.py passes
    them on to a run of its own.
    """
    recipe = typed.get("recipe", DEFAULT_RECIPE)
    flags = {dest: PARSER.get_default(dest) for dest in ACTIONS}
    args = argparse.Namespace(**{**flags, **RECIPES[recipe], **typed})
    args.given = set(typed)
    if args.weight_decay is None:
        # AdamW's decay is decoupled from the gradient and scaled by the lr: 0.05 is mild and helps
        # generalisation (measured: docs/results.md). As an L2 penalty in sgd or adam, 0.05 would be far too strong.
        args.weight_decay = 0.05 if args.optimizer == "adamw" else 0.0
    if args.batchnorm is None and args.augment and "batchnorm" in options_of(args.model):
        # Harder images are learnt better with batch norm: over the default's 6 epochs it lifted MNIST's
        # test accuracy from 99.49-99.61% to 99.59-99.64% (seeds 1-3, docs/results.md), for 3-7% of a step in
        # fp32 on an AVX2 CPU (bench.py --parts). Unaugmented runs meet their targets without it.
        args.batchnorm = True
    if args.norm_after_pool is None and args.batchnorm and "norm_after_pool" in options_of(args.model):
        # After the pooling, batch norm touches a quarter of the values: 6% of a step instead of a fifth, in bf16 on an
        # AVX-512 CPU (bench.py --parts). Not in the last block: its maps are small, and after its pool too the nets
        # read printed digits 0.3 points worse (docs/results.md).
        args.norm_after_pool = conv_blocks(args.model, args.channels) - 1
    return args


def changed(args, values):
    """`args` (from parse()) with some settings set as if typed too, {setting: value}, and those that depend
    on them worked out again: each of sweep.py's runs."""
    return with_defaults({**{dest: getattr(args, dest) for dest in args.given}, **values})


def overruled(args, trained, kept):
    """The flags typed with --resume whose values differ from the resumed run's own, as 'flag value (run: value)'.

    The run keeps its settings (a schedule is planned for its epochs and lr); a flag it would ignore
    in silence is a mistake to say. Where the run's files go (--logdir, --run-name, --checkpoint) is not
    compared: the same place can be spelt two ways.
    """
    own = {**trained, **kept}
    takes = options_of(own["model"])

    def plain(dest, value):  # None for a model option is the net's own default; --channels is a tuple or a list
        value = takes[dest].default if value is None and dest in takes else value
        return list(value) if isinstance(value, tuple) else value

    return [
        f"{FLAG[dest]} {getattr(args, dest)} (the run's: {own[dest]})"
        for dest in sorted(getattr(args, "given", ()))
        if dest in own
        and dest not in ("logdir", "run_name", "checkpoint")
        and plain(dest, getattr(args, dest)) != plain(dest, own[dest])
    ]


def training(args):
    """The training settings of `args` (a Namespace or a dict): TensorBoard's HParams, sweep.py's and report.py's
    keys."""
    values = vars(args) if isinstance(args, argparse.Namespace) else args
    return {dest: values.get(dest) for dest in TRAINING}


def model_options(settings):
    """The options that rebuild the net, from training settings (a Namespace or a dict): those given
    (not None) that differ from the net's own defaults, so that a checkpoint names what is special.

    A wrong pairing fails here, before any data is read: e.g. --dropout with --model mlp.
    """
    values = training(settings)
    takes = options_of(values["model"])
    opts = {}
    for name in MODEL_OPTIONS:
        if values[name] is None:
            continue
        if name not in takes:
            raise UserError(f"--model {values['model']} has no {name} option: leave out {FLAG[name]}")
        value, default = values[name], takes[name].default
        if isinstance(default, tuple):  # --channels: a list, as checkpoints keep it
            value, default = list(value), list(default)
        if value != default:
            opts[name] = value
    if opts.get("norm_after_pool") and not opts.get("batchnorm"):
        raise UserError("--norm-after-pool places batch norm, which this run has not: add --batchnorm, or leave it out")
    if "norm_after_pool" in opts:  # cnn's; True in the nets of 25936df (every block) is 1 here, never too many
        blocks = conv_blocks(values["model"], values["channels"])
        if opts["norm_after_pool"] > blocks:
            raise UserError(f"--norm-after-pool counts cnn's conv blocks, this net has {blocks}: give 0 to {blocks}")
    return opts


# ---------------------------------------------------------------- the record kept in net.pth and last.pt


def record(args, **resolved):
    """The versioned settings record of a run: its training settings, its run settings, and what was
    resolved when it ran (e.g. precision='bf16' for --precision auto), kept apart from what the user said."""
    return {
        "version": VERSION,
        "training": training(args),
        "run": {dest: getattr(args, dest) for dest in RUN},
        "resolved": resolved,
    }


def read_record(saved, where):
    """A record as record() made it (or version 1's whole Namespace) -> (training, run, resolved) dicts.

    Settings that did not exist when it was written take today's defaults, which keep the old behaviour, or, where
    today's default changed what a run does, the value of BEFORE_IT_EXISTED.
    A record from a newer version of the lab is refused with one line: it may mean something this code does not know.
    """
    if not isinstance(saved, dict):
        raise UserError(f"{where} holds no settings record: it was not written by this lab's train.py")
    if "version" not in saved:  # version 1: vars(args) after the run had changed it
        run = {k: saved[k] for k in RUN if k in saved}
        # Version 1 wrote False and 0 for the model options not given, where version 2 writes None.
        trained = {k: (None if k in MODEL_OPTIONS and not saved.get(k) else saved[k]) for k in TRAINING if k in saved}
        saved = {"version": 1, "training": trained, "run": run, "resolved": {"precision": saved.get("precision")}}
    if saved["version"] > VERSION:
        raise UserError(
            f"{where} was written by a newer version of this lab (settings version {saved['version']}; "
            f"this code reads up to {VERSION}): update the lab's code to use it"
        )
    recipe = saved["training"].get("recipe", OLD_RECIPE)
    if recipe not in RECIPES:
        raise UserError(
            f"{where} names a recipe this code does not know ({recipe!r}; it knows "
            f"{', '.join(RECIPES)}): update the lab's code to use it"
        )
    base = with_defaults({"recipe": recipe})
    return (
        {**training(base), **BEFORE_IT_EXISTED, **saved["training"]},
        {**{k: getattr(base, k) for k in RUN}, **saved["run"]},
        dict(saved.get("resolved") or {}),
    )
