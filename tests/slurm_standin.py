"""Stand-ins for SLURM's `sbatch`, `srun`, `sacct`, `scancel` and `scontrol` that run each job on this machine, so
the SLURM launcher can be tested without a cluster. `install(bin_dir, state_dir)` writes the commands.

As much of SLURM as submitit and the launcher use, done the way SLURM does it:
- `sbatch SCRIPT` prints `Submitted batch job N` and runs the script in the background, in the submitting folder,
  with SLURM's job variables; the job is PENDING, then RUNNING, then COMPLETED, FAILED or CANCELLED.
- `srun [options] CMD` runs CMD as the job's one task (SLURM_PROCID 0), its output appended to `--output`/`--error`
  (`%j` and `%t` expanded), in a process group of its own: the job step.
- `sacct -X --parsable2 --noheader -o JobID,State -j ID,ID` lists the jobs' states.
- `scancel [--signal SIG] ID` sends SIG to the job step (what SLURM's `--signal` does at a time limit), or cancels.
- `scontrol requeue ID` marks the job to run again, with the same id, once its script has ended.
Every sbatch call is logged in STATE/sbatch.log, so a test can count submissions.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

COMMANDS = ("sbatch", "srun", "sacct", "scancel", "scontrol")
STATE_ENV = "SLURM_STANDIN_STATE"


def install(bin_dir: Path, state_dir: Path) -> None:
    """Write the commands into `bin_dir` (to be put first on PATH, with STATE_ENV set to `state_dir`)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                        f"from slurm_standin import main\nmain({name!r}, sys.argv[1:])\n")
        path.chmod(0o755)


def state_dir() -> Path:
    return Path(os.environ[STATE_ENV])


@contextmanager
def job(job_id: str):
    """The job's record, read and written under a lock (the job's runner and the commands change it)."""
    with open(state_dir() / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = state_dir() / f"{job_id}.json"
        record = json.loads(path.read_text())
        yield record
        _write(path, record)


def _write(path: Path, record: dict) -> None:
    """Atomically, so that a reader without the lock (sacct, a test) never sees half a record."""
    path.with_suffix(".tmp").write_text(json.dumps(record))
    os.replace(path.with_suffix(".tmp"), path)


def read_job(job_id: str) -> dict:
    return json.loads((state_dir() / f"{job_id}.json").read_text())


def sbatch(args: list[str]) -> None:
    script = Path(args[-1]).read_text()
    with open(state_dir() / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        job_id = str(len(list(state_dir().glob("*.sh"))) + 1)
        (state_dir() / f"{job_id}.sh").write_text(script)
        name = re.search(r"^#SBATCH --job-name=(\S+)", script, re.M)
        _write(state_dir() / f"{job_id}.json",
               {"state": "PENDING", "cwd": os.getcwd(), "name": name.group(1) if name else "sbatch", "restarts": 0})
        with open(state_dir() / "sbatch.log", "a") as log:
            log.write(f"{job_id}\n")
    subprocess.Popen([sys.executable, __file__, "_run", job_id], start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"Submitted batch job {job_id}")


def run_job(job_id: str) -> None:
    """The job's life: run its script, again after a requeue, and record how it ended."""
    while True:
        with job(job_id) as record:
            record.update(state="RUNNING", runner_pid=os.getpid())  # its own session: the process group of that id
            restarts, cwd, name = record["restarts"], record["cwd"], record["name"]
        env = {**os.environ, "SLURM_JOB_ID": job_id, "SLURM_JOB_NAME": name, "SLURM_NTASKS": "1",
               "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0",
               "SLURM_JOB_NODELIST": "localhost", "SLURM_RESTART_COUNT": str(restarts)}
        script = subprocess.Popen(["bash", str(state_dir() / f"{job_id}.sh")], cwd=cwd, env=env, process_group=0)
        with job(job_id) as record:
            record["batch_pgid"] = script.pid
        code = script.wait()
        with job(job_id) as record:
            _kill(record.get("step_pgid"), signal.SIGKILL)  # what is left of the step ends with the job
            if record.pop("requeue", False):
                record.update(state="PENDING", restarts=record["restarts"] + 1)
                continue
            if record["state"] != "CANCELLED":
                record["state"] = "COMPLETED" if code == 0 else "FAILED"
            return


def srun(args: list[str]) -> None:
    files = {"--output": None, "--error": None}
    while args and args[0].startswith("--"):
        option = args.pop(0)
        if option in files:
            files[option] = args.pop(0).replace("%j", os.environ["SLURM_JOB_ID"]).replace("%t", "0")
    out = open(files["--output"], "a") if files["--output"] else None
    err = open(files["--error"], "a") if files["--error"] else None
    step = subprocess.Popen(args, stdout=out, stderr=err, process_group=0,
                            env={**os.environ, "SLURM_PROCID": "0", "SLURM_LOCALID": "0"})
    with job(os.environ["SLURM_JOB_ID"]) as record:
        record["step_pgid"] = step.pid
    sys.exit(step.wait())


def sacct(args: list[str]) -> None:
    ids = args[args.index("-j") + 1].split(",")
    for job_id in ids:
        if (state_dir() / f"{job_id}.json").is_file():
            print(f"{job_id}|{read_job(job_id)['state']}")


def scancel(args: list[str]) -> None:
    sig = None
    if "--signal" in args:
        i = args.index("--signal")
        sig = args.pop(i + 1)
        args.pop(i)
    [job_id] = args
    if sig is not None:
        _kill(read_job(job_id).get("step_pgid"), getattr(signal, "SIG" + sig.removeprefix("SIG")))
        return
    with job(job_id) as record:
        record["state"] = "CANCELLED"
        groups = record.get("step_pgid"), record.get("batch_pgid")
    for pgid in groups:
        _kill(pgid, signal.SIGTERM)


def scontrol(args: list[str]) -> None:
    assert args[0] == "requeue", args
    with job(args[1]) as record:
        record["requeue"] = True


def _kill(pgid: int | None, sig: int) -> None:
    if pgid:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass


def main(command: str, args: list[str]) -> None:
    {"sbatch": sbatch, "srun": srun, "sacct": sacct, "scancel": scancel, "scontrol": scontrol,
     "_run": lambda a: run_job(a[0])}[command](list(args))


def cleanup() -> None:
    """Kill whatever the jobs left running (a test that failed midway): their runners, scripts and steps."""
    for path in state_dir().glob("*.json"):
        record = json.loads(path.read_text())
        if record["state"] not in ("PENDING", "RUNNING"):
            continue  # ended: its ids may belong to other processes by now
        for pgid in (record.get("step_pgid"), record.get("batch_pgid"), record.get("runner_pid")):
            _kill(pgid, signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
