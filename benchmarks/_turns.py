"""bench_mnist.py --turns: minicnn checkouts compared in short alternating turns.

Why: on a shared virtual machine the speed of the whole machine drifts by 10-25 % over tens
of seconds (one process's epochs range from 10 to 20 s). One fresh process per (checkout,
seed) of ~50 s each samples that drift, so a 5-seed median ratio between two checkouts moves
by several per cent from one run to the next, with the same code. Turns of a few seconds,
alternating, see the same drift on both sides, and the per-round ratio cancels it.

How: one persistent process per checkout (benchmarks/_turn_worker.py, the checkout first on
its PYTHONPATH, as the per-seed workers), each loaded and warmed up before the first turn. Then
`rounds` rounds; in each, every checkout in turn trains `steps` batches of real MNIST and
predicts the test set once, while the others wait idle on their stdin; the order alternates
(A B, then B A) so neither side always runs first. Per round and checkout after the first:
ratio = its ms/step over the first's (and predict throughput the same way); the figures are the
medians of those per-round ratios, with their range.
"""

import json
import statistics
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
TURN_WORKER = HERE / "_turn_worker.py"
READY_PREFIX = "TURN_READY "
RESULT_PREFIX = "TURN_RESULT "


class TurnWorkerError(RuntimeError):
    """A turn worker exited or answered something else than a result line."""


class _Worker:
    def __init__(self, name, cmd, env):
        self.name = name
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def read(self, prefix):
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return json.loads(line[len(prefix):])
        self.proc.wait()
        raise TurnWorkerError(f"turn worker {self.name} exited with code "
                              f"{self.proc.returncode} before answering; last stderr lines:\n"
                              + "\n".join(self.proc.stderr.read().splitlines()[-15:]))

    def turn(self, steps):
        self.proc.stdin.write(json.dumps({"steps": steps}) + "\n")
        self.proc.stdin.flush()
        return self.read(RESULT_PREFIX)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("\n")
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_turns(envs, rounds, steps, python, worker_args=(), log=print):
    """envs: {checkout column: worker environment}, the first being the baseline. Returns
    {"rounds": [{column: {"step_ms", "predict_images_per_s"}}, ...], "steps": steps}."""
    workers = []
    try:
        # Loaded one after the other: a loading worker must not slow another's warm-up turn.
        for name, env in envs.items():
            log(f"turns: starting {name} ...")
            worker = _Worker(name, [python, str(TURN_WORKER), *worker_args], env)
            workers.append(worker)
            worker.read(READY_PREFIX)
        results = []
        for r in range(rounds):
            order = workers if r % 2 == 0 else workers[::-1]
            results.append({w.name: w.turn(steps) for w in order})
            line = ", ".join(f"{w.name} {results[-1][w.name]['step_ms']:.2f} ms/step"
                             for w in workers)
            log(f"turns: round {r + 1}/{rounds}: {line}")
        return {"rounds": results, "steps": steps}
    finally:
        for worker in workers:
            worker.close()


def summarize_turns(turns):
    """Per column: median ms/step and images/s; per later column: the median, min and max of
    its per-round ratios to the first column (s/step: theirs / first's; predict: the same)."""
    rounds = turns["rounds"]
    names = list(rounds[0])
    first = names[0]
    out = {"steps": turns["steps"], "n_rounds": len(rounds), "columns": {}, "ratios": {}}
    for name in names:
        steps = [r[name]["step_ms"] for r in rounds]
        images = [r[name]["predict_images_per_s"] for r in rounds]
        out["columns"][name] = {"step_ms": statistics.median(steps),
                                "predict_images_per_s": statistics.median(images)}
    for name in names[1:]:
        step = [r[name]["step_ms"] / r[first]["step_ms"] for r in rounds]
        predict = [r[name]["predict_images_per_s"] / r[first]["predict_images_per_s"]
                   for r in rounds]
        out["ratios"][name] = {
            "step": {"median": statistics.median(step), "min": min(step), "max": max(step)},
            "predict": {"median": statistics.median(predict), "min": min(predict),
                        "max": max(predict)}}
    return out


def turn_ratios(summary, tolerance):
    """The issue-9 rows of the ratio table from summarize_turns: each later checkout's ms/step
    over the first's (<= 1 + tolerance) and predict throughput (>= 1 - tolerance)."""
    names = list(summary["columns"])
    rows = []
    for name in names[1:]:
        ratio = summary["ratios"][name]
        note = (f"median of {summary['n_rounds']} alternating turns of {summary['steps']} "
                "steps; range {:.3f}-{:.3f}")
        step = ratio["step"]
        rows.append({"name": f"s/step, interleaved turns: {name} / {names[0]}",
                     "value": step["median"], "target": f"<= {1 + tolerance:.2f}",
                     "met": step["median"] <= 1 + tolerance,
                     "note": note.format(step["min"], step["max"])})
        predict = ratio["predict"]
        rows.append({"name": f"predict() throughput, interleaved turns: {name} / {names[0]}",
                     "value": predict["median"], "target": f">= {1 - tolerance:.2f}",
                     "met": predict["median"] >= 1 - tolerance,
                     "note": note.format(predict["min"], predict["max"])})
    return rows


def markdown(summary):
    """The turns' table: per column the median ms/step and predict images/s."""
    names = list(summary["columns"])
    lines = [f"Interleaved turns ({summary['n_rounds']} rounds of {summary['steps']} training "
             "steps and one predict() of the test set per checkout, one persistent process "
             "each, order alternating): medians",
             "",
             "| | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names),
             "| ms per training step | " + " | ".join(
                 f"{summary['columns'][n]['step_ms']:.2f}" for n in names) + " |",
             "| predict() images/s | " + " | ".join(
                 f"{summary['columns'][n]['predict_images_per_s']:,.0f}" for n in names) + " |"]
    return "\n".join(lines)
