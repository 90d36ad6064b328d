"""A real single-node SLURM for tests: munged, slurmctld and slurmd on loopback, in a tmp folder.

Debian's ``munge``, ``slurmctld`` and ``slurmd`` (installed by ``.ci/deps/slurm.sh``) run as
root in the foreground, each a child of the test process, with every file (key, socket,
state, spool, logs, ``slurm.conf``) under the given folder and free TCP ports, so nothing
outside it is touched and every daemon is stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

__all__ = ["slurm_unavailable", "single_node_slurm"]

_DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo")


def slurm_unavailable() -> str:
    """Why SLURM cannot run here ("" when it can)."""
    missing = [d for d in _DAEMONS if shutil.which(d) is None and not Path("/usr/sbin", d).exists()]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing; run .ci/deps/slurm.sh as root)"
    if os.geteuid() != 0:
        return "SLURM's slurmd must run as root to start jobs, and this test runs as a user"
    return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _slurm_conf(root: Path, munge_socket: Path, cpus: int, memory_mb: int) -> str:
    return f"""\
ClusterName=cellsifttest
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _start(stack: ExitStack, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    out = stack.enter_context(log.open("ab"))
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)

    stack.callback(stop)
    return proc


def _wait_idle(env: dict[str, str], procs: list[subprocess.Popen], root: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        dead = [p.args[0] for p in procs if p.poll() is not None]
        if dead:
            break
        state = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=30
        ).stdout.strip()
        if state == "idle":
            return
        time.sleep(0.5)
    logs = "\n".join(p.read_text()[-2000:] for p in sorted((root / "log").glob("*.log")))
    raise RuntimeError(f"SLURM did not come up (node state {state!r}):\n{logs}")


@contextmanager
def single_node_slurm(root: Path, *, cpus: int = 2) -> Iterator[dict[str, str]]:
    """Start munged, slurmctld and slurmd under ``root``; yield the environment for ``sbatch``
    (``SLURM_CONF`` set); stop them all on exit."""
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "munge").chmod(0o711)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    munge_socket = root / "munge" / "munge.sock"
    memory_mb = max(1024, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2)
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, munge_socket, cpus, memory_mb))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    with ExitStack() as stack:
        munged = _start(
            stack,
            [_binary("munged"), "-F", "-f", f"--key-file={key}", f"--socket={munge_socket}"]
            + [f"--pid-file={root}/munge/munged.pid", f"--log-file={root}/log/munged.log"]
            + [f"--seed-file={root}/munge/seed"],
            env,
            root / "log" / "munged.out",
        )
        deadline = time.monotonic() + 30
        while not munge_socket.exists() and munged.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        ctld = _start(
            stack, [_binary("slurmctld"), "-D", "-i", "-f", str(conf)], env, root / "log" / "ctld.out"
        )
        slurmd = _start(
            stack,
            [_binary("slurmd"), "-D", "-N", "localhost", "-f", str(conf)],
            env,
            root / "log" / "slurmd.out",
        )
        _wait_idle(env, [munged, ctld, slurmd], root)
        try:
            yield env
        finally:
            subprocess.run(["scancel", "--full", "--user", "root"], env=env, capture_output=True, timeout=30)
