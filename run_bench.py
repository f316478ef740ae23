#!/usr/bin/env python
"""scanlab: which scan backend is right, which is fastest, and did a change break or slow either.

    python run_bench.py                   quick accuracy + perf sweeps on the best device, then the report
    python run_bench.py list              backends, availability (and why not), dtypes, devices
    python run_bench.py accuracy          every backend against the double-double oracle
    python run_bench.py perf              time, GB/s, x floor and peak memory per case
    python run_bench.py report            tables and plots from stored records (shards merged)
    python run_bench.py submit perf --shards 4 --partitions a100,h100
                                          the sweep's shards as jobs: SLURM, or subprocesses here
    python run_bench.py compare BASE NEW  verdicts per case: exit 1 on a broken or slower case, 2 on bad input
    python run_bench.py import-benchmark FILE.json   pytest-benchmark results into the records
"""
import argparse
import math
import os
import re
import sys
from pathlib import Path

if __name__ == "__main__":
    # run as a script, this checkout's folder comes first on the path, where its folders would import
    # under their own generic names (impls, harness) too: only `scanlab` names them
    HERE = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    import scanlab

    if Path(scanlab.__file__).resolve().parent != HERE:
        sys.exit(f"run_bench.py: scanlab is installed from {Path(scanlab.__file__).parent}, not this checkout "
                 f"{HERE}: run `pip install -e .` here (or run `scanlab` for the installed one)")

from scanlab.harness.run import sweeps  # noqa: E402
from scanlab.harness.run.isolation import CASE_TIMEOUT_S, SweepInterrupted  # noqa: E402
from scanlab.harness.results.records import RunLocked  # noqa: E402
from scanlab.harness.run.cases import DTYPES  # noqa: E402
from scanlab.harness.run.shard import WHOLE, Shard  # noqa: E402

ROOT = Path(__file__).resolve().parent
# where records go and revisions come from by default: this checkout, or the working folder when
# scanlab is installed from a wheel (its folder is site-packages)
HOME = ROOT if (ROOT / "pyproject.toml").is_file() else Path.cwd()
# ab's defaults, chosen from tests/ab_power.py's measurement on this 2-core machine (README: CI): the
# factor a paired ratio must pass, the workers per side, the rounds (least, most), and the round budget
# over the preset's (both sides are timed in each round)
AB_FACTOR = 1.1
AB_PROCESSES = 8
AB_ROUNDS = (96, 96)
AB_BUDGET_SCALE = 2.0


class UserError(SystemExit):
    """A user's mistake: one line on stderr and exit status 2, argparse's convention (never 1, which
    `compare` keeps for "regression")."""

    def __init__(self, message):
        super().__init__(2)
        self.message = message

    def __str__(self):
        return f"error: {self.message}"


def _list_of(kind, check=None):
    def parse(text):
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list, got an empty one")
        values = []
        for item in items:
            try:
                value = kind(item)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{item!r} is not a valid {kind.__name__}") from None
            if check:
                problem = check(value)
                if problem:
                    raise argparse.ArgumentTypeError(problem)
            values.append(value)
        return values
    return parse


def _positive(value):
    return None if value > 0 else f"{value} must be positive"


def _known(options, what):
    return lambda value: None if value in options else f"unknown {what} {value!r}; choose from {', '.join(options)}"


def _shard(text):
    try:
        return Shard.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{value} must be a positive number of seconds")
    return value


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be positive")
    return value


def _defaults(after_command):
    """Flags after the subcommand default to SUPPRESS: argparse would otherwise overwrite a flag given
    before the subcommand (`run_bench.py --lengths 64 perf`) with the subcommand's default."""
    return (lambda value: argparse.SUPPRESS) if after_command else (lambda value: value)


def _sweep_flags(parser, after_command=False):
    default = _defaults(after_command)
    add = parser.add_argument
    add("--preset", default=default("quick"), choices=list(sweeps.PRESETS), help="sweep preset (default quick)")
    add("--device", default=default("auto"), choices=["auto", "cpu", "cuda"], help="auto: cuda when available, else cpu")
    add("--backends", default=default(None), type=_list_of(str), help="comma-separated backend names (default: all)")
    add("--lengths", default=default(None), type=_list_of(int, _positive), help="comma-separated sequence lengths")
    add("--dtypes", default=default(None), type=_list_of(str, _known(list(DTYPES), "dtype")), help="e.g. float32,float64")
    add("--batch", default=default(None), type=_positive_int, help="batch size B")
    add("--channels", default=default(None), type=_positive_int, help="channels D (H for DSS)")
    add("--reports", default=default(str(HOME / "reports")), help="records and reports folder")
    add("--fresh", action="store_true", default=default(False), help="start a new run, not resume an unfinished one")
    add("--backend-module", default=default(None), type=_list_of(str), metavar="MODULES",
        help="comma-separated modules (pkg.module or path/to/file.py) whose backends join the sweep (impls/plugins.py)")
    add("--shard", default=default(WHOLE), type=_shard, metavar="I/N",
        help="run the I-th of N shares of the sweep's units (every N-th unit): N machines, one share each, add up "
             "to exactly the whole sweep; `report` merges them")
    add("--skip-complete", action="store_true", default=default(False),
        help="do nothing for a sweep (or shard) whose run on this machine is already complete: resubmitting a "
             "sweep redoes only the shards that did not finish (submit passes it)")
    add("--no-progress", action="store_true", default=default(False), help="no progress bar")
    add("--allow-failures", action="store_true", default=default(False),
        help="exit 0 even when in-domain cases fail their checks or crash (an exploratory sweep); they are still listed")
    add("--case-timeout", default=default(None), type=_positive_float, metavar="S",
        help=f"seconds a case may run before it is recorded as hung and its worker killed (default {CASE_TIMEOUT_S:g})")
    add("--retry-crashed", action="store_true", default=default(False),
        help="run again the cases that raised, crashed or were quarantined in this sweep's run")


def _perf_flags(parser, after_command=False):
    default = _defaults(after_command)
    add = parser.add_argument
    add("--family", default=default(list(sweeps.FAMILIES)), type=_list_of(str, _known(sweeps.FAMILIES, "family")),
        help="scan,conv,dss,layer,varlen,decode (default all)")
    add("--modes", default=default(None), type=_list_of(str, _known(sweeps.MODES, "mode")),
        help="forward,forward+backward")
    add("--rounds", default=default(None), type=_positive_int,
        help="interleaved timing rounds (exactly this many unless --max-rounds is given; ab rounds both up "
             "to whole cycles of its --processes)")
    add("--max-rounds", default=default(None), type=_positive_int,
        help="more rounds, up to this many, while a case's IQR is 10%% of its median or more")
    add("--no-memory", action="store_true", default=default(False), help="skip peak-memory measurement")
    add("--threads", default=default(None), type=_positive_int,
        help="intra-op threads for torch and numba (default: torch's, all cores); recorded in every row and in the "
             "machine folder's name")


def build_parser():
    parser = argparse.ArgumentParser(prog="run_bench.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _sweep_flags(parser)
    _perf_flags(parser)
    commands = parser.add_subparsers(dest="command")
    listing = commands.add_parser("list", help="backends, where each comes from, and why any is unavailable")
    listing.add_argument("--backend-module", default=argparse.SUPPRESS, type=_list_of(str), metavar="MODULES",
                         help="also the backends of these modules (pkg.module or path/to/file.py)")
    for name in ("accuracy", "perf"):
        sub = commands.add_parser(name, help=f"run the {name} sweep")
        _sweep_flags(sub, after_command=True)
        if name == "perf":
            _perf_flags(sub, after_command=True)
    submit = commands.add_parser("submit", help="run a sweep's shards as jobs: SLURM on a cluster, subprocesses here",
                                 description="One job per (partition, shard), each running `run_bench.py SWEEP ... "
                                             "--shard I/N --skip-complete`. Submitting again redoes no finished shard.")
    submit.add_argument("sweep", choices=["accuracy", "perf"])
    _sweep_flags(submit, after_command=True)
    _perf_flags(submit, after_command=True)
    submit.add_argument("--shards", type=_positive_int, default=2, help="shares per machine kind (default 2)")
    submit.add_argument("--executor", choices=["auto", "local", "slurm"], default="auto",
                        help="auto: SLURM where sbatch is found, else subprocesses on this machine")
    submit.add_argument("--partitions", type=_list_of(str), default=None,
                        help="SLURM partitions, one per machine kind: every shard runs on each")
    submit.add_argument("--gpus-per-node", type=int, default=None, help="GPUs per job (SLURM --gpus-per-node)")
    submit.add_argument("--cpus-per-task", type=_positive_int, default=None, help="CPUs per job (SLURM --cpus-per-task)")
    submit.add_argument("--timeout-min", type=_positive_int, default=None, help="time limit per job, minutes")
    submit.add_argument("--mem-gb", type=float, default=None, help="memory per job, GB")
    submit.add_argument("--logs", default="submitit-logs", help="submitit's job folder: logs, states (default submitit-logs)")
    submit.add_argument("--wait", action="store_true", help="on SLURM, wait for the jobs and list how each ended "
                                                            "(the local executor always waits)")
    ab = commands.add_parser("ab", help="time two revisions in one interleaved run; exit 1 on a broken or slower case",
                             description="BASE and HEAD are git revisions; HEAD defaults to the working tree, "
                                         "uncommitted changes included. HEAD's harness measures each side's impls/ in K "
                                         "workers of its own, the sides alternating round by round on the same cases; "
                                         "each case's verdict comes from its paired per-round ratios, judged over "
                                         "the K worker pairs.")
    ab.add_argument("base_revision", metavar="BASE", help="git revision measured as BASE")
    ab.add_argument("head_revision", metavar="HEAD", nargs="?", default=None,
                    help="git revision measured as HEAD (default: the working tree as it is)")
    _sweep_flags(ab, after_command=True)
    _perf_flags(ab, after_command=True)
    ab.add_argument("--factor", type=float, default=None,
                    help=f"paired ratio above which a clear slowdown is a regression (default {AB_FACTOR})")
    ab.add_argument("--allow-missing", type=_list_of(str), default=[], metavar="NAMES",
                    help="backends whose cases may be missing from HEAD (a deliberate removal); listed as accepted")
    ab.add_argument("--processes", type=_positive_int, default=AB_PROCESSES, metavar="K",
                    help=f"workers per side; round r runs on the (r mod K)-th of each, and each case is judged over "
                         f"the K worker pairs, since two processes of the same code can differ by 20%% (default "
                         f"{AB_PROCESSES}; rounds are rounded up to whole cycles of K; 1: judged over rounds, "
                         f"assuming the two processes run alike)")
    ab.add_argument("--out", help="also write the markdown summary here")
    ab.add_argument("--repo", default=str(HOME), help="the git checkout whose revisions are measured (default: this one)")
    report = commands.add_parser("report", help="render tables and plots from stored records")
    report.add_argument("--reports", default=str(HOME / "reports"))
    compare = commands.add_parser("compare", help="compare two result sets; exit 1 on a broken or slower case, 2 on bad input")
    compare.add_argument("base", help="a run file (.jsonl) or a machine folder under reports/")
    compare.add_argument("new", help="a run file (.jsonl) or a machine folder under reports/")
    compare.add_argument("--factor", type=float, default=1.1, help="ratio above which a slowdown can count (default 1.1)")
    compare.add_argument("--on", choices=["auto", "time", "floor"], default="auto",
                         help="time, x floor, or auto: time on one machine, x floor across two (default)")
    compare.add_argument("--out", help="also write the markdown summary here")
    compare.add_argument("--allow-missing", type=_list_of(str), default=[], metavar="NAMES",
                         help="backends whose BASE cases may be missing from NEW (a deliberate removal): accepted and "
                              "listed, not broken")
    imported = commands.add_parser("import-benchmark", help="add pytest-benchmark JSON to the records")
    imported.add_argument("json_file")
    imported.add_argument("--reports", default=str(HOME / "reports"))
    return parser


def resolve_device(choice):
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: torch sees no CUDA device here")
    return ("cuda" if torch.cuda.is_available() else "cpu") if choice == "auto" else choice


def _check_backends(names, family, here=True):
    """Every name a backend of the family; with `here`, one that runs on this machine (a submitted
    sweep runs elsewhere: a GPU backend is not available on the node that submits it)."""
    from scanlab.impls import all_conv_backends, all_scan_backends
    from scanlab.harness.run.perf import default_backends

    if not names:
        return
    scan_backends = (lambda: {n: b for n, b in all_scan_backends().items() if b.available}) if here else all_scan_backends
    if family == "accuracy":
        known = {**all_scan_backends(), **all_conv_backends()}
        for name in names:
            if name not in known:
                raise UserError(f"--backends: unknown backend {name!r}; known: {', '.join(known)}")
            if here and not known[name].available:
                raise UserError(f"--backends: {name!r} is unavailable: {known[name].unavailable_reason}")
        return
    if family in ("scan", "varlen", "decode"):  # decode: the scan backends its paths run over
        valid = list(scan_backends())
    elif family == "conv":
        valid = list(all_conv_backends())
    elif family == "layer":
        valid = default_backends("layer") + ["gss:conv:direct", "gss:conv:fft_fast"] + \
            [f"gss:recurrent:{n}" for n in scan_backends()]
    else:
        valid = ["conv:direct", "conv:fft", "conv:fft_fast"] + [f"recurrent:{n}" for n in scan_backends()]
    for name in names:
        if name not in valid:
            raise UserError(f"--backends: {name!r} is not a {family} backend here; choose from {', '.join(valid)}")


def cmd_list():
    from scanlab.impls import all_conv_backends, all_scan_backends

    for kind, backends in (("scan", all_scan_backends()), ("conv", all_conv_backends())):
        print(f"{kind} backends:")
        width = max(map(len, backends))
        for name, b in backends.items():
            status = "available" if b.available else f"UNAVAILABLE: {b.unavailable_reason}"
            dtypes = ",".join(str(d).removeprefix("torch.") for d in b.dtypes)
            layouts = "" if kind != "scan" else "; " + ", ".join(
                f"{layout}: {'native' if layout in b.native_layouts else 'adapted'}" for layout in ("reverse", "varlen"))
            print(f"  {name:{width}s} {status}\n    dtypes: {dtypes}; devices: {','.join(b.devices)}; "
                  f"differentiable: {b.differentiable}{layouts}; from: {b.origin}\n    {b.description}")
    return 0


def accuracy_config(args, here=True):
    """The accuracy sweep the flags ask for, checked before anything runs."""
    config = sweeps.override(sweeps.preset(args.preset)["accuracy"], lengths=args.lengths, dtypes=args.dtypes,
                             batch=args.batch, channels=args.channels, backends=args.backends,
                             # reverse and packed cases at the longest length asked for (the most boundaries)
                             layout_lengths=[max(args.lengths)] if args.lengths else None)
    _check_backends(config["backends"], "accuracy", here)
    return config


def perf_plan(args, here=True, ab=False):
    """(family -> config, Rounds) for the perf sweeps the flags ask for, all checked before any runs:
    a bad flag must not leave a run file behind, nor stop the sweep after its first family. `ab`
    takes at least AB_ROUNDS paired rounds (README: CI)."""
    from scanlab.harness.run.cases import family_dtypes
    from scanlab.harness.measure.timing import Rounds

    chosen = sweeps.preset(args.preset)
    least = args.rounds or (max(chosen["rounds"], AB_ROUNDS[0]) if ab else chosen["rounds"])
    most = args.max_rounds or (args.rounds or (max(chosen["max_rounds"], AB_ROUNDS[1]) if ab else chosen["max_rounds"]))
    if most < least:
        raise UserError(f"--max-rounds {most} is below the {least} rounds every case gets (--rounds or the preset's)")
    configs = {}
    for family in args.family:
        config = sweeps.override(chosen["perf"][family], lengths=args.lengths, dtypes=args.dtypes, batch=args.batch,
                                 channels=args.channels, backends=args.backends, modes=args.modes)
        _check_backends(config["backends"], family, here)
        taken = family_dtypes(family)
        wrong = [d for d in config["dtypes"] if d not in taken]
        if wrong:
            raise UserError(f"--dtypes: the {family} family takes {', '.join(taken)}; got {', '.join(wrong)}")
        configs[family] = config
    budget = chosen["round_budget_s"] * (AB_BUDGET_SCALE if ab else 1)
    return configs, Rounds(least, most, budget)


def isolated(args):
    """The worker each sweep's cases run in: a crash or a hang is recorded and the sweep goes on."""
    from scanlab.harness.run.isolation import Isolated

    return Isolated(args.threads if hasattr(args, "threads") else None, args.case_timeout or CASE_TIMEOUT_S)


def cmd_accuracy(args, device, config, executor=None):
    from scanlab.harness.run.accuracy import run_accuracy

    run = run_accuracy(config, device, args.reports, resume=not args.fresh, progress=not args.no_progress,
                       shard=args.shard, keep_complete=args.skip_complete, executor=executor,
                       retry_crashed=args.retry_crashed)
    print(f"accuracy: {len(run.rows)} rows in {run.rows_path}")
    return run


def cmd_perf(args, device, plan, executor=None):
    from scanlab.harness.run.perf import perf_groups, run_perf

    configs, rounds = plan
    chosen = sweeps.preset(args.preset)
    runs, offset = [], 0
    for family, config in configs.items():
        run = run_perf(family, config, device, args.reports, rounds=rounds,
                       min_sample_s=chosen["min_sample_s"], memory=chosen["memory"] and not args.no_memory,
                       resume=not args.fresh, progress=not args.no_progress, shard=args.shard, shard_offset=offset,
                       keep_complete=args.skip_complete, executor=executor, retry_crashed=args.retry_crashed)
        offset += len(perf_groups(family, config, device))
        print(f"perf {family}: {len(run.rows)} rows in {run.rows_path}")
        runs.append(run)
    return runs


def _job_argv(args):
    """run_bench.py's arguments for one shard of the sweep `args` describes, every flag spelled out."""
    # a shard whose cases fail their checks or crash has still done its job: its records say so and
    # `report` shows them; exiting 1 would have submit call the job failed and resubmit it forever
    argv = [args.sweep, "--preset", args.preset, "--device", args.device, "--reports", str(Path(args.reports).resolve()),
            "--allow-failures"]
    argv += ["--case-timeout", str(args.case_timeout)] if args.case_timeout else []
    modules = [str(Path(m).resolve()) if m.endswith(".py") else m for m in args.backend_module or ()]
    listed = {"--backends": args.backends, "--lengths": args.lengths, "--dtypes": args.dtypes, "--backend-module": modules}
    counts = {"--batch": args.batch, "--channels": args.channels}
    if args.sweep == "perf":
        listed.update({"--family": args.family, "--modes": args.modes})
        counts.update({"--rounds": args.rounds, "--max-rounds": args.max_rounds, "--threads": args.threads})
        argv += ["--no-memory"] if args.no_memory else []
    argv += [part for flag, value in listed.items() if value for part in (flag, ",".join(map(str, value)))]
    argv += [part for flag, value in counts.items() if value for part in (flag, str(value))]
    return argv


def cmd_submit(args):
    from scanlab.harness.run.submit import cluster_of, executor, submit_shards, summary

    if args.fresh:
        raise UserError("submit: --fresh would restart every shard each time it is submitted; submitting again "
                        "resumes unfinished shards (use another --reports for a fresh sweep)")
    if not args.shard.whole:
        raise UserError("submit: --shard picks one share by hand; submit makes the shares itself (--shards N)")
    if args.sweep == "accuracy":
        accuracy_config(args, here=False)
    else:
        perf_plan(args, here=False)
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise UserError('submit needs submitit, an optional extra: pip install -e ".[cluster]"') from None
    try:
        pool = executor(args.logs, cluster_of(args.executor))
    except ValueError as error:
        raise UserError(f"submit: --executor {args.executor}: {error}") from None
    if args.partitions and pool.cluster != "slurm":
        raise UserError(f"submit: --partitions names SLURM partitions; the {pool.cluster} executor has one kind of "
                        "machine, this one")
    if pool.cluster == "slurm" and not args.timeout_min:
        raise UserError("submit: on SLURM give --timeout-min: the cluster's default limit (often minutes) kills a "
                        "sweep; the full preset's accuracy sweep took 36 min on 2 cores here, its scan perf sweep hours. "
                        "A job that reaches its limit is listed as timed out and resumes when submitted again")
    gpus = args.gpus_per_node
    if gpus is None and pool.cluster == "slurm" and args.sweep == "perf" and args.device == "cuda":
        gpus = 1  # a GPU perf job asks for the GPU it measures
    jobs = submit_shards(pool, _job_argv(args), args.sweep, args.shards, partitions=args.partitions or (None,),
                         gpus_per_node=gpus, cpus_per_task=args.cpus_per_task, timeout_min=args.timeout_min, mem_gb=args.mem_gb,
                         cwd=HOME, wait=args.wait)
    print(summary(jobs))
    failed_jobs = any(j.outcome().startswith("failed") for j in jobs)
    if any(j.outcome() == "running" for j in jobs):
        return 1 if failed_jobs else 0
    # the shards ran with --allow-failures (a failing case is a record, not a job to resubmit): the
    # verdict on their cases is given here, from what they recorded
    from scanlab.harness.results.records import load_rows

    machines = [p for p in Path(args.reports).iterdir() if (p / "runs").is_dir()] if Path(args.reports).is_dir() else []
    suites = ["accuracy"] if args.sweep == "accuracy" else [f"perf-{family}" for family in args.family]
    rows = [row for machine in machines for row in load_rows(machine).to_dict("records")
            if any(str(row.get("run_id", "")).startswith(f"{suite}-") for suite in suites)]
    return max(1 if failed_jobs else 0, sweep_status(rows, args.allow_failures))


def cmd_report(reports):
    from scanlab.harness.render.report import render_all

    if not Path(reports).is_dir():
        raise UserError(f"report: --reports {reports} is not a folder (expected the folder sweeps write records to)")
    try:
        written = render_all(reports)
    except ValueError as error:  # a corrupt records file: read_complete_units and pandas name it
        raise UserError(f"report: records under {reports} are not readable ({str(error).splitlines()[0]})") from None
    for path in written:
        print(f"wrote {path}")
    return 0


def _compare_rows(path, side):
    from scanlab.harness.results.records import load_rows

    if not Path(path).exists():
        raise UserError(f"compare: {side} {path} does not exist (expected a .jsonl run file or a machine folder)")
    try:
        rows = load_rows(path)
    except ValueError as error:
        raise UserError(f"compare: {side} {path} is not readable records ({str(error).splitlines()[0]})") from None
    if rows.empty or "metric" not in rows:
        raise UserError(f"compare: {side} {path} holds no records")
    return rows


def cmd_compare(args):
    from scanlab.harness.results.compare import CompareError, compare, summary_markdown
    from scanlab.harness.results.records import atomic_write_text

    base, new = _compare_rows(args.base, "BASE"), _compare_rows(args.new, "NEW")
    try:
        comparison = compare(base, new, args.factor, args.on, allow_missing=args.allow_missing)
    except CompareError as error:
        flag = "--factor: " if "factor" in str(error) else ""
        raise UserError(f"compare: {flag}{error}") from None
    text = summary_markdown(comparison)
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 1 if comparison.regressions else 0


def cmd_ab(args, device):
    from dataclasses import replace

    from scanlab.harness.ab.revisions import WORKING_TREE, RevisionError, resolve
    from scanlab.harness.ab.runner import run_ab
    from scanlab.harness.ab.sides import Worker
    from scanlab.harness.ab.paired import ALPHA, MIN_PAIRED_ROUNDS
    from scanlab.harness.results.compare import REFERENCES, CompareError, summary_markdown
    from scanlab.harness.results.records import atomic_write_text

    if not args.shard.whole or args.skip_complete:
        raise UserError("ab: --shard and --skip-complete split or skip a sweep; ab measures both sides of every case "
                        "in one run (narrow it with --backends, --lengths, --family)")
    factor = AB_FACTOR if args.factor is None else args.factor
    if not (math.isfinite(factor) and factor > 1):
        raise UserError(f"ab: --factor must be a finite number > 1, got {factor}")
    plan, rounds = perf_plan(args, ab=True)
    count = args.processes
    asked, rounds = rounds, replace(rounds, least=math.ceil(rounds.least / count) * count,
                                    most=math.ceil(rounds.most / count) * count)
    if rounds != asked:
        print(f"ab: {rounds.least} to {rounds.most} rounds: whole cycles of the {count} worker pairs")
    if count == 2:
        print("ab: with 2 workers a side the test over worker pairs has 1 degree of freedom: only a change "
              "that every round agrees on closely can be called (3 or more a side is the useful least)")
    if count == 1 and rounds.least < MIN_PAIRED_ROUNDS:
        raise UserError(f"ab: --rounds {rounds.least} with --processes 1: below {MIN_PAIRED_ROUNDS} paired rounds the signed-rank test "
                        f"cannot reach p < {ALPHA} even when every round is slower, so no regression could be called")
    try:
        sides = {"base": resolve("base", args.base_revision, args.repo),
                 "head": resolve("head", args.head_revision or WORKING_TREE, args.repo)}
    except RevisionError as error:
        raise UserError(f"ab: {error}") from None
    print(f"ab: BASE = {sides['base'].label}\n    HEAD = {sides['head'].label}")
    modules = [str(Path(m).resolve()) if m.endswith(".py") else m for m in args.backend_module or ()]
    workers = {name: [Worker(side, side.impls, args.threads, modules, args.case_timeout or CASE_TIMEOUT_S)
                      for _ in range(count)] for name, side in sides.items()}
    try:
        chosen = sweeps.preset(args.preset)
        comparison, runs, unmeasurable = run_ab(plan, device, args.reports, sides, workers, rounds,
                                                chosen["min_sample_s"], factor, allow_missing=args.allow_missing,
                                                resume=not args.fresh, progress=not args.no_progress)
    except CompareError as error:  # nothing on BASE's side at all: nothing was compared
        print(f"ab FAILED: {error}", file=sys.stderr)
        return 1
    except RunLocked as held:
        raise UserError(f"ab: {held}") from None
    finally:
        for worker in (w for pool in workers.values() for w in pool):
            worker.close()
    text = summary_markdown(comparison)
    print(text)
    for name, side_runs in runs.items():
        print(f"{name} records: {', '.join(str(run.rows_path) for run in side_runs)}")
    if args.out:
        atomic_write_text(args.out, text)
    head_rows = [row for run in runs["head"] for row in run.rows]
    status = sweep_status(head_rows, args.allow_failures)
    crashed = sorted({f"{r['backend']} {r['mode']} L={r['L']}: {r['note'][:160]}" for r in head_rows
                      if r["metric"] == "time_s" and r["value"] is None and r["backend"] not in REFERENCES
                      and re.match(r"(in worker \d+ of \d+: )?(crashed|raised)", r["note"] or "")})
    for line in crashed:  # whatever BASE did: a kernel of HEAD's that raises or kills its worker fails the gate
        print(f"ab FAILED: HEAD raised or crashed on {line}")
    for name, why in unmeasurable.items():  # a gate that compared nothing must not pass
        print(f"ab FAILED: {name.upper()} ({sides[name].label}) could not be measured: {why}")
    if not comparison.compared:
        print("ab FAILED: no backend case was timed on both sides: nothing was compared")
    return 1 if comparison.regressions or unmeasurable or crashed or not comparison.compared else status


def cmd_import(args):
    from scanlab.harness.results.benchmark_import import benchmark_rows
    from scanlab.harness.results.records import open_run

    if not Path(args.json_file).is_file():
        raise UserError(f"import-benchmark: {args.json_file} is not a file")
    try:
        rows = benchmark_rows(args.json_file)
    except (ValueError, KeyError, TypeError) as error:  # json.JSONDecodeError is a ValueError
        raise UserError(f"import-benchmark: {args.json_file} is not pytest-benchmark JSON with scanlab cases "
                        f"({type(error).__name__}: {str(error).splitlines()[0]})") from None
    run = open_run(args.reports, "benchmark", {"source": Path(args.json_file).name}, resume=False)
    run.add_unit(rows)
    run.finish()
    print(f"imported {len(rows)} benchmarks into {run.rows_path}")
    return 0


def set_threads(count):
    """Before anything reads the machine info, so that every row and the folder name carry it. JAX's
    CPU backend keeps its own pool; at one thread its Eigen ops are kept single-threaded too."""
    import os

    import torch

    if count is None:
        return
    if count == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    torch.set_num_threads(count)


def load_backend_modules(specs):
    from scanlab.impls.plugins import load_module

    for spec in specs or ():
        try:
            load_module(spec)
        except Exception as error:  # the user named it: their mistake to see, in one line
            raise UserError(f"--backend-module {spec}: cannot load it ({type(error).__name__}: {error})") from None


def main(argv=None):
    args = build_parser().parse_args(argv)
    set_threads(getattr(args, "threads", None))
    load_backend_modules(getattr(args, "backend_module", None))
    if args.command == "list":
        return cmd_list()
    if args.command == "report":
        return cmd_report(args.reports)
    if args.command == "compare":
        return cmd_compare(args)
    if args.command == "import-benchmark":
        return cmd_import(args)
    if args.command == "submit":
        return cmd_submit(args)
    device = resolve_device(args.device)
    if args.command == "ab":
        return cmd_ab(args, device)
    accuracy = accuracy_config(args) if args.command in (None, "accuracy") else None
    plan = perf_plan(args) if args.command in (None, "perf") else None
    runs, executor = [], isolated(args)
    try:
        if accuracy is not None:
            runs.append(cmd_accuracy(args, device, accuracy, executor))
        if plan is not None:
            runs += cmd_perf(args, device, plan, executor)
    except SweepInterrupted as stop:
        print(f"interrupted ({stop}); run the same command again to resume", file=sys.stderr)
        return 143
    except RunLocked as held:
        raise UserError(str(held)) from None
    finally:
        executor.close()
    if args.command is None:
        cmd_report(args.reports)
    return sweep_status([row for run in runs for row in run.rows], args.allow_failures)


def sweep_status(rows, allow_failures):
    """1 when an in-domain case failed its check (listed, worst first), unless failures are allowed."""
    from scanlab.harness.results.failures import failures, summary

    found = failures(rows)
    if found:
        print(summary(found) + ("\n(--allow-failures: exit 0)" if allow_failures else ""))
    return 1 if found and not allow_failures else 0


def cli():
    """`python run_bench.py` and the `scanlab` command: main() with its exit statuses."""
    # a plugin module named by import path (--backend-module my_kernels) is found in the working folder,
    # as the workers find it; last on the path, so it shadows nothing installed
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        sys.exit(main())
    except UserError as error:
        print(error, file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C: an interruption, recorded as nothing; the next run resumes
        print("interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    cli()
