"""`ab`: the cases of a perf sweep timed on both sides in the same rounds, then judged case by case
on their paired per-round ratios (compare.compare with paired=True), failing closed.

Each side has K workers (`--processes`), because two processes of the same code can differ by 20%
(paired.py). A group's cases are prepared in every worker of both sides first: built and timed cold,
and checked against the oracle in each side's first worker (a case that fails its check, is refused,
raises or kills a worker gets no time on that side, and its row says why). Then round r times every
case and the floor on the (r mod K)-th worker of each side. A round's sample on a side is the
fastest of up to PARTS parts (as many as fit in the preset's sample time: a case whose one call is
longer takes one), taken X X Y Y Y Y X X, so a drift within the round falls on both alike; which side
is X alternates from case to case and round to round. Each side's rows go to a run of its own,
`ab-base-<family>` and `ab-head-<family>`, stamped with that side's commit."""
import math
import time
from dataclasses import asdict, dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..results.case_key import CaseKey
from ..run.cases import floor_family
from ..results.compare import CompareError, compare
from ..run.perf import check_rows, failed_check_note, floor_names, perf_row, timing_rows
from ..results.records import open_run
from ..measure.timing import Rounds, Timing
from .sides import SideUnmeasurable, WorkerGone


# Before timing another worker: the one that just ran leaves its thread pools (torch's OpenMP, numba's
# TBB) spinning for a while after their last parallel region, on the same two cores. Measured here:
# without the pause, A/A runs called 10 of 44 cases changed, the side timed second always the slower.
SWITCH_PAUSE_S = 0.005
# Measured here (A/A, L = 4096, 2.5 ms parts): the fastest of 4 parts took the sd of the paired per-round
# log-ratios of `native` from 0.64 to 0.20 and of `assoc` from 0.52 to 0.19, at the same time per round;
# the noise of this machine only ever adds time
PARTS = 4


@dataclass
class Prepared:
    """A case on one side after `prepare`: timed from then on, or the reason it is not."""
    name: str
    key: CaseKey
    answer: dict = None
    failure: str = ""  # why this side gives it no time

    @property
    def timed(self):
        return not self.failure


def _prepare(worker, name, key, rows, unit_id, floor=False, check=True):
    """`key` as recorded; a floor is built as the floor family and recorded under its group's family."""
    try:
        answer = worker.prepare(name, (key.replace(family=floor_family(key.family)) if floor else key).as_row(), check)
    except WorkerGone as gone:
        return Prepared(name, key, failure=f"crashed: {gone}")
    except SideUnmeasurable as error:  # its restarted worker no longer starts
        return Prepared(name, key, failure=f"side not measurable: {error}")
    if not answer["ok"]:
        return Prepared(name, key, failure=f"raised: {answer['error']}")
    if "refusal" in answer:
        return Prepared(name, key, failure=f"cannot take these inputs: {answer['refusal']}")
    verdicts = [SimpleNamespace(**v) for v in answer["verdicts"]]
    if verdicts and not floor:
        rows += check_rows(key, unit_id, verdicts, answer["outside_domain"])
        if not all(v.passed for v in verdicts):
            worst = max(verdicts, key=lambda v: v.worst_ratio)
            worker.drop(name)
            return Prepared(name, key, answer, failed_check_note(worst.quantity, worst.worst_ratio, answer["outside_domain"]))
    return Prepared(name, key, answer)


def _prepare_side(pool, name, key, rows, unit_id, floor=False):
    """The case in every worker of a side: checked in the first, built and warmed in the others."""
    case = _prepare(pool[0], name, key, rows, unit_id, floor)
    for number, worker in enumerate(pool[1:], 2):
        if not case.timed:
            break
        other = _prepare(worker, name, key, [], unit_id, floor, check=False)
        if not other.timed:
            case.failure = f"in worker {number} of {len(pool)}: {other.failure}"
    if not case.timed:
        for worker in pool:
            worker.drop(name)
    return case


def _within_pairs(log_ratios, count):
    """Each round's log-ratio less its worker pair's median."""
    pair = np.arange(len(log_ratios)) % count
    return log_ratios - np.array([np.median(log_ratios[pair == p]) for p in range(count)])[pair]


def _round_order(names, round_index):
    shift = round_index % len(names)
    return names[shift:] + names[:shift]


def _time_part(pool, worker, case, name, number):
    """Seconds per call of one part, or None with `case.failure` saying why it has no time now."""
    try:
        answer = worker.request("time", name=name, number=number)
        if name in worker.lost:  # its worker restarted, and this case did not come back
            case.failure = worker.lost.pop(name)
        elif not answer["ok"]:
            case.failure = f"raised while timed: {answer['error']}"
    except WorkerGone as gone:
        case.failure = f"crashed while timed: {gone}"
    except SideUnmeasurable as error:
        case.failure = f"side not measurable: {error}"
    if case.failure:
        for each in pool:
            each.drop(name)
        return None
    return answer["seconds"]


def measure_group(workers, unit_id, keys_by_side, device, rounds: Rounds, min_sample_s, parts=PARTS):
    """side -> rows for one group: every case each side has, prepared in each of the side's workers
    (`workers`: side -> its K workers) and timed in shared rounds, round r on worker r mod K."""
    rows = {side: [] for side in workers}
    count = len(next(iter(workers.values())))
    if rounds.least % count or rounds.most % count:
        raise ValueError(f"rounds ({rounds.least} to {rounds.most}) must be whole cycles of the {count} workers")
    first = next(keys[0] for keys in keys_by_side.values() if keys)
    floors = [first.replace(backend=name) for name in floor_names(device)]
    prepared = {side: {} for side in workers}
    names = list(dict.fromkeys(k.backend for side in workers for k in keys_by_side[side]))
    for name in names:
        for side, pool in workers.items():
            key = next((k for k in keys_by_side[side] if k.backend == name), None)
            if key is not None:
                prepared[side][name] = _prepare_side(pool, name, key, rows[side], unit_id)
    if any(p.timed for side in workers for p in prepared[side].values()):
        for floor in floors:
            for side, pool in workers.items():
                prepared[side][floor.backend] = _prepare_side(pool, floor.backend, floor, rows[side], unit_id, floor=True)
    timed = [name for name in names + [f.backend for f in floors]
             if any(name in prepared[s] and prepared[s][name].timed for s in workers)]
    steady = {name: max(1e-9, min(prepared[s][name].answer["steady_s"] for s in workers
                                  if name in prepared[s] and prepared[s][name].timed)) for name in timed}
    # parts only where a call is short: a round's sample stays about min_sample_s (or one call) a side
    parts_of = {name: max(1, min(parts, math.floor(min_sample_s / steady[name]))) for name in timed}
    number = {name: max(1, math.ceil(min_sample_s / parts_of[name] / steady[name])) for name in timed}
    samples = {side: {name: [] for name in timed if name in prepared[side]} for side in workers}
    sides = list(workers)
    started = time.perf_counter()
    last = None
    for round_index in range(rounds.most if timed else 0):
        pair, cycle = round_index % count, round_index // count
        # the order of the cases and the side that goes first change from one cycle of the K pairs to the
        # next, so within each pair's rounds too (at even K, round_index alone would tie them to the pair)
        for name in _round_order(timed, cycle):
            # X X Y Y Y Y X X: a drift within the round falls on both sides alike; X alternates
            x, *y = sides if (cycle + timed.index(name)) % 2 == 0 else sides[::-1]
            split = parts_of[name]
            order = [x] * (split // 2) + [side for side in y for _ in range(split)] + [x] * (split - split // 2)
            fastest = {}
            for side in order:
                case = prepared[side].get(name)
                if case is None or not case.timed:
                    continue
                worker = workers[side][pair]
                if last is not None and last is not worker:
                    time.sleep(SWITCH_PAUSE_S)
                last = worker
                seconds = _time_part(workers[side], worker, case, name, number[name])
                if seconds is not None:
                    fastest[side] = min(fastest.get(side, math.inf), seconds)
            for side, seconds in fastest.items():
                if prepared[side][name].timed:
                    samples[side][name].append(seconds)
        if round_index + 1 >= rounds.least and (round_index + 1) % count == 0:
            # what the verdict rests on: the spread of each case's paired log-ratios within its worker pairs
            # (a steady difference between pairs is for the verdict to weigh; more rounds cannot shrink it)
            paired = [_within_pairs(np.log(np.array(samples[sides[-1]][name]) / np.array(samples[sides[0]][name])), count)
                      for name in timed
                      if len(sides) == 2 and all(name in prepared[s] and prepared[s][name].timed for s in sides)]
            settled = all(np.subtract(*np.percentile(r, [75, 25])) < rounds.iqr_threshold for r in paired)
            if settled or time.perf_counter() - started > rounds.budget_s:
                break
    for side, pool in workers.items():
        floor_timings = {f.backend: (SimpleNamespace(bytes_moved=prepared[side][f.backend].answer["bytes_moved"]),
                                     Timing(samples[side][f.backend], prepared[side][f.backend].answer["cold_s"], 1))
                         for f in floors if f.backend in prepared[side] and prepared[side][f.backend].timed}
        for name, case in prepared[side].items():
            if not case.timed:
                rows[side].append(perf_row(case.key, unit_id, "time_s", None, "s", note=case.failure))
                continue
            answer = case.answer
            timing = Timing(samples[side][name], answer["cold_s"], number[name])
            shape = SimpleNamespace(bytes_moved=answer["bytes_moved"], tokens=answer["tokens"])
            rows[side] += timing_rows(case.key, unit_id, shape, timing, floor_timings)
        for worker in pool:
            worker.forget()
    return rows


def run_ab(plan, device, reports_dir, sides, workers, rounds: Rounds, min_sample_s, factor, allow_missing=(),
           resume=True, progress=True):
    """Both sides of every family in `plan` (family -> perf config), `workers`: side -> its K workers:
    (Comparison, {side: [Run]}, {side: why it could not be measured})."""
    runs, unmeasurable_sides = {name: [] for name in workers}, {}
    count = len(workers["head"])
    for family, config in plan.items():
        settings = {**config, "device": device, "rounds": asdict(rounds), "min_sample_s": min_sample_s,
                    "processes": count, "parts": PARTS,
                    "base": sides["base"].commit, "head": sides["head"].commit,
                    "head_tree": sides["head"].tree_digest}
        opened = {name: open_run(reports_dir, f"ab-{name}-{family}", {**settings, "side": name}, resume=resume)
                  for name in workers}
        for name, run in opened.items():
            run.code = {"commit": sides[name].commit[:12], "dirty": sides[name].dirty}
        _keep_units_on_both_sides(opened)
        groups, unmeasurable = {}, {}
        for name, pool in workers.items():
            try:
                answer = pool[0].request("groups", family=family, config=config, device=device)
            except SideUnmeasurable as error:
                unmeasurable[name] = str(error)
                continue
            except WorkerGone as gone:
                unmeasurable[name] = f"crashed listing its cases: {gone}"
                continue
            if not answer["ok"]:
                unmeasurable[name] = f"cannot list its cases: {answer['error']}"
                continue
            groups[name] = {unit: [CaseKey.from_row(k) for k in keys] for unit, keys in answer["groups"]}
            done = opened[name].done_units()
            skipped = [r for r in answer["skipped"] if r["unit_id"] not in done]
            if skipped:
                opened[name].add_unit(skipped)
        order = list(dict.fromkeys(unit for name in workers for unit in groups.get(name, {})))
        done = opened["head"].done_units()
        for unit_id in tqdm(order, desc=f"ab {family}", disable=not progress):
            if unit_id in done:
                continue
            measured = {name: workers[name] for name in workers if name not in unmeasurable}
            keys = {name: groups[name].get(unit_id, []) for name in measured}
            rows = measure_group(measured, unit_id, keys, device, rounds, min_sample_s) if measured else {}
            for name, why in unmeasurable.items():
                other = next(iter(groups.values()), {}).get(unit_id, [])
                rows[name] = [perf_row(k, unit_id, "time_s", None, "s", note=f"side not measurable: {why}") for k in other]
            for name in workers:  # BASE first: a unit in HEAD's run is complete on both sides
                opened[name].add_unit(rows.get(name, []))
        unmeasurable_sides.update(unmeasurable)
        for name, run in opened.items():
            run.finish()
            runs[name].append(run)
    frames = {name: pd.DataFrame([r for run in runs[name] for r in run.rows]) for name in workers}
    try:
        comparison = compare(frames["base"], frames["head"], factor, on="time", allow_missing=allow_missing,
                             paired=True, blocks=count)
    except CompareError as error:  # nothing to compare: say why each side that could not be measured could not
        why = "; ".join(f"{name.upper()} ({sides[name].label}) could not be measured: {reason}"
                        for name, reason in unmeasurable_sides.items())
        raise CompareError(f"{error}" + (f"; {why}" if why else "")) from None
    return comparison, runs, unmeasurable_sides


def _keep_units_on_both_sides(opened):
    """A kill between the two sides' appends (or finishes) leaves a unit on one side alone: it is
    measured again on both, so the lone copy goes (that run's file rewritten once, atomically)."""
    done = {name: {u for u in run.done_units() if not u.startswith("skipped|")} for name, run in opened.items()}
    both = set.intersection(*done.values())
    for name, run in opened.items():
        if done[name] - both:
            run.retry(lambda row: row["unit_id"] not in both and not row["unit_id"].startswith("skipped|"))
