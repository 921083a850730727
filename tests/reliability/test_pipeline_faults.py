"""The pipeline killed (SIGKILL) and failed (an exception, a full disk) inside its stages,
as ``street2shop run`` child processes on the tiny demo: every re-run redoes only the stage
that failed and those after it, no half-written version is ever listed, and the store ends
with the very rows an uninterrupted run published.

The machinery is ``bench/reliability.py`` (its ``faults`` command runs the long plan: five
kills in every stage run and an exception in each); here a seeded plan of one kill in every
stage (one of them timed from outside), one exception and one full disk, over three stores
side by side, and the uninterrupted reference is two runs started at once on one store
(``conftest.py``).
"""

from __future__ import annotations

import json

import random

import pytest

pytestmark = pytest.mark.slow

SEED = 15


def test_two_runs_at_once_take_turns_and_publish_one_set_of_versions(reference, reliability) -> None:
    home, runs, worker, waiter = reference
    assert [r.stage for r in runs][:3] == ["crawl", "noise", "dedup"] and runs[-1].stage == "index"
    # the waiting run skipped exactly the stage runs the other one computed: the same versions
    skipped = {(s, v) for s, v, point, _ in waiter.trace if point == "skip"}
    assert skipped == {(r.stage, r.version) for r in runs}
    assert not reliability.half_written(home)
    versions = reliability.manifests(home)
    assert len(versions) == sum(r.outputs for r in runs)  # one version of each artifact, none twice


#: stores worked through side by side: a child run mostly waits (on Prefect's API and its
#: per-flow heartbeat thread), so three chains keep a 2-core machine busy
CHAINS = 3


def ci_plan(reliability, runs):
    """A kill in every stage (for ``train``, which runs once per round, in one seeded round;
    the longest stage's kill from outside, mid-work), one exception and one full disk."""
    rng = random.Random(SEED)
    by_stage: dict[str, list] = {}
    for run in runs:
        by_stage.setdefault(run.stage, []).append(run)
    chosen = {rng.choice(stage_runs) for stage_runs in by_stage.values()}
    plan = reliability.plan_faults([r for r in runs if r in chosen], SEED, per_stage=1, exceptions=2)
    longest = max(chosen, key=lambda r: r.duration_s)
    for i, fault in enumerate(plan):
        if (fault.stage, fault.version) == (longest.stage, longest.version) and fault.action == "kill":
            plan[i] = reliability.Fault(fault.stage, fault.version, "timed", fraction=0.3)
    return plan


def test_killed_and_failed_stages_rerun_alone_and_end_with_the_same_rows(pipeline_demo, reference, reliability) -> None:
    base, config, api_url = pipeline_demo
    home, runs, *_ = reference
    plan = ci_plan(reliability, runs)
    assert {f.stage for f in plan if f.action == "kill"} == {r.stage for r in runs}
    assert {f.action for f in plan} == {"kill", "raise", "enospc"} and any(f.point == "timed" for f in plan)
    report = reliability.run_fault_plan(base, config, api_url, plan, chains=CHAINS, reference=reference, log=print)
    assert sorted(report.faults) == sorted(f.label for f in plan) and report.skipped == []
    c = report.comparison
    assert c.differences == [] and report.lost == 0
    # every version of every store compared by content: tables, checkpoints, index, noise model
    assert c.versions == CHAINS * len(reliability.manifests(home))
    assert c.tables >= CHAINS * len(runs) and c.rows > 0 and c.checkpoints >= CHAINS * 3 and c.files > 0


def test_the_comparison_leaves_out_measured_times_only(reliability) -> None:
    """Two runs differ in the wall-clock times a stage records; in nothing else."""
    a = {"localisations": {"none": {"passes": 1, "ms_per_query": 4.6, "top1": 0.65}}, "meta": {"training_seconds": 27.0}}
    b = {"localisations": {"none": {"passes": 1, "ms_per_query": 9.1, "top1": 0.65}}, "meta": {"training_seconds": 75.0}}
    c = {"localisations": {"none": {"passes": 1, "ms_per_query": 4.6, "top1": 0.66}}, "meta": {"training_seconds": 27.0}}
    same = reliability._untimed_bytes("serving.json", json.dumps(a).encode())
    assert same == reliability._untimed_bytes("serving.json", json.dumps(b).encode())
    assert same != reliability._untimed_bytes("serving.json", json.dumps(c).encode())
    assert reliability._same(reliability._untimed(a), reliability._untimed(b))
    row = "<tr><td>none</td><td>1</td><td class='timing'>{}</td><td>{}</td></tr>"
    html = [reliability._untimed_bytes("report.html", row.format(ms, top).encode()) for ms, top in [(4.6, 0.65), (9.1, 0.65), (4.6, 0.66)]]
    assert html[0] == html[1] and html[0] != html[2]
