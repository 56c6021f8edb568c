"""`fedcredit bench hfl`: seconds and bytes per horizontal round, with SecAgg+ and without."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fedcredit.hfl.federation import Federation, Progress
from fedcredit.hfl.job import BankSpec, HflJob, give_credit_job
from fedcredit.hfl.run import load_bank_tables, mean, workdir_or_temp
from fedcredit.synth import synthesize


def run_hfl_benchmark(*, rounds: int = 3, data: Path | None = None, enterprises: int = 20000,
                      workdir: Path | None = None, progress: Progress | None = None,
                      timeout: float = 1800.0) -> dict[str, Any]:
    """Seconds and bytes per round over three banks, with SecAgg+ and without, on one federation.

    ``data``: a CSV (id, y, features) split by rows among the banks; default synthetic banks.
    Both runs use the same SuperLink and SuperNodes (started allowing plain updates, for the
    comparison). A round is its fit stages plus the evaluation stage.
    """
    with workdir_or_temp(workdir) as root:
        if data is not None:
            job = give_credit_job(data, root / "data", rounds=rounds, stage_timeout=120.0)
        else:
            made = synthesize(root / "data", enterprises=enterprises, seed=7, banks=3)
            job = HflJob(rounds=rounds, stage_timeout=120.0, banks=[
                BankSpec(name=f"bank-{k}", table=made.parties[f"bank_{k}"].path)
                for k in (1, 2, 3)])
        tables = load_bank_tables(job.banks)
        features, max_weight = tables[0][0].shape[1], float(max(len(y) for _, y in tables))
        runs: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        with Federation(root, job.banks, require_secagg=False) as fed:
            for name, secagg in (("secagg", True), ("plain", False)):
                variant = job.model_copy(update={"secagg": secagg, "job_id": f"bench-{name}"})
                run_dir = fed.submit(variant, features=features, max_weight=max_weight,
                                     run_dir=root / "runs" / name).parent
                runs[name] = round_costs(fed.follow(run_dir, deadline=deadline,
                                                    progress=progress))
        secure, plain = runs["secagg"], runs["plain"]
        return {
            "banks": len(job.banks),
            "rows": int(sum(len(y) for _, y in tables)),
            "rounds": rounds,
            "secagg": secure,
            "plain": plain,
            "secagg_over_plain": secure["seconds_per_round"] / plain["seconds_per_round"],
            "bytes_secagg_over_plain": secure["bytes_per_round"] / plain["bytes_per_round"],
        }


def round_costs(result: dict[str, Any]) -> dict[str, Any]:
    """Per-round means of a run: seconds, bytes, and where the time went."""
    rounds = result["rounds"]
    total = sum(r["seconds"] for r in rounds) or 1.0
    startup = sum(r["clientapp_startup_s"] for r in rounds)
    waiting = sum(r["waiting_s"] for r in rounds)
    return {
        "seconds_per_round": mean([r["seconds"] for r in rounds]),
        "fit_seconds_per_round": mean([r["fit_seconds"] for r in rounds]),
        "bytes_per_round": mean([r["bytes_sent"] + r["bytes_received"] for r in rounds]),
        "messages_per_round": mean([sum(s["sent"] for s in r["stages"]) for r in rounds]),
        "stages_per_round": mean([len(r["stages"]) for r in rounds]),
        "client_compute_share": sum(r["client_compute_s"] for r in rounds) / total,
        "server_compute_share": sum(r["server_compute_s"] for r in rounds) / total,
        "clientapp_startup_share": startup / total,
        "polling_share": max(0.0, waiting - startup) / total,
        "auc": result["auc"],
    }
