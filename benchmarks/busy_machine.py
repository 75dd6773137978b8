"""Training on a busy machine: CPU time and wall time of a CPU training, quiet and loaded.

Runs one command (default: ``sei demo``, the cpu-demo preset on the bundled sample data) on
this machine as it is ("quiet"), then again while ``--load`` extra CPU-bound processes
(``while True: pass``) run beside it ("loaded"), and prints, for each, the wall time, the CPU
time (user + system) of the training process and everything it started, and the ratios
loaded / quiet. A CPU time that grows under load is work wasted by threads that spin while
they wait for one another (see ``sei_core.threads``).

    PYTHONPATH=. python benchmarks/busy_machine.py                      # sei demo, 1 extra process
    PYTHONPATH=. python benchmarks/busy_machine.py --env OMP_WAIT_POLICY=  # libgomp's own default
    PYTHONPATH=. python benchmarks/busy_machine.py --train DATA.csv --preset cpu

``--env KEY=VALUE`` (repeatable) sets a variable of the measured process; an empty value
(``OMP_WAIT_POLICY=``) leaves OpenMP's own default, as before ``sei_core.threads``.
``--only quiet|loaded`` measures one of the two. CPU time is read from a cgroup (v1
``cpuacct`` or v2) holding the process tree where one can be made, else from the
process's resource usage (which misses grand-children that outlive their parent). The
load average (1 minute) is printed at the start and end of every measurement.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class CpuMeter:
    """CPU seconds (user, system) of a process tree, from a cgroup where possible."""

    def __init__(self) -> None:
        self.group: Path | None = None
        self.kind = "rusage"
        name = f"sei-busy-{os.getpid()}-{time.monotonic_ns()}"
        for base, kind in ((Path("/sys/fs/cgroup/cpuacct"), "v1"), (Path("/sys/fs/cgroup/unified"), "v2"),
                           (Path("/sys/fs/cgroup"), "v2")):
            probe = "cpuacct.stat" if kind == "v1" else "cgroup.procs"
            if not (base / probe).exists():
                continue
            try:
                (base / name).mkdir()
            except OSError:
                continue
            if kind == "v2" and not (base / name / "cpu.stat").exists():
                (base / name).rmdir()
                continue
            self.group, self.kind = base / name, "cgroup " + kind
            break

    def enter(self, pid: int) -> None:
        if self.group is not None:
            (self.group / "cgroup.procs").write_text(str(pid))

    def read(self) -> tuple[float, float] | None:
        if self.group is None:
            return None
        if self.kind == "cgroup v1":
            tick = os.sysconf("SC_CLK_TCK")
            stat = dict(line.split() for line in (self.group / "cpuacct.stat").read_text().splitlines())
            return int(stat["user"]) / tick, int(stat["system"]) / tick
        stat = dict(line.split() for line in (self.group / "cpu.stat").read_text().splitlines())
        return int(stat["user_usec"]) / 1e6, int(stat["system_usec"]) / 1e6

    def close(self) -> None:
        """Remove the cgroup once the last process of the tree has left it (a few seconds)."""
        if self.group is None:
            return
        deadline = time.monotonic() + 10
        while True:
            try:
                self.group.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    print(f"note: {self.group} still holds processes; remove it with rmdir", file=sys.stderr)
                    return
                time.sleep(0.2)


def measure(cmd: list[str], env: dict, load: int, pin: int | None) -> dict:
    burners = []
    for _ in range(load):
        burn = [sys.executable, "-c", "while True: pass"]
        if pin is not None and shutil.which("taskset"):
            burn = ["taskset", "-c", str(pin)] + burn
        burners.append(subprocess.Popen(burn))
    if burners:
        time.sleep(1.0)  # the extra load is running before training starts
    meter = CpuMeter()
    load_start = os.getloadavg()[0]
    t0 = time.monotonic()
    proc = None
    try:
        # the child waits for a line on stdin, so it is in the cgroup before it starts
        proc = subprocess.Popen(["sh", "-c", 'read _ ; exec "$@"', "sh", *cmd], env=env, cwd=ROOT,
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        meter.enter(proc.pid)
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        cpu = meter.read() or (usage.ru_utime, usage.ru_stime)
    finally:
        meter.close()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        for b in burners:
            b.kill()
            b.wait()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.decode(errors='replace')[-3000:]}")
    return dict(wall=wall, user=cpu[0], sys=cpu[1], cpu=cpu[0] + cpu[1], load_start=load_start,
                load_end=os.getloadavg()[0], meter=meter.kind)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", metavar="DATA", help="time `sei train DATA` instead of `sei demo`")
    ap.add_argument("--preset", default="cpu", help="preset of --train (default cpu)")
    ap.add_argument("--epochs", type=int, help="override the preset's epochs (a shorter check)")
    ap.add_argument("--load", type=int, default=1, help="extra CPU-bound processes in the loaded run (default 1)")
    ap.add_argument("--pin", type=int, default=None, help="pin the extra processes to this CPU (taskset)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment of the measured process (empty value: leave the library default)")
    ap.add_argument("--only", choices=["quiet", "loaded"], help="measure only one of the two")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the extra load and the cgroup

    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    for kv in a.env:
        key, _, value = kv.partition("=")
        env[key] = value
    with tempfile.TemporaryDirectory(prefix="sei-busy-") as tmp:
        results = {}
        for name in ("quiet", "loaded"):
            if a.only and a.only != name:
                continue
            out = Path(tmp) / name
            if a.train:
                cmd = [sys.executable, "-m", "sei_core.cli", "train", a.train, "--out", str(out),
                       "--preset", a.preset, "--no-progress", "--device", "cpu"]
                if a.epochs:
                    cmd += ["--epochs", str(a.epochs)]
            else:
                cmd = [sys.executable, "-m", "sei_core.cli", "demo", "--out", str(out), "--no-progress"]
                if a.epochs:
                    sys.exit("--epochs applies to --train (sei demo trains its preset)")
            results[name] = r = measure(cmd, env, a.load if name == "loaded" else 0, a.pin)
            print(f"{name:7s} wall {r['wall']:7.1f} s   cpu {r['cpu']:7.1f} s (user {r['user']:.1f}, "
                  f"sys {r['sys']:.1f})   load avg {r['load_start']:.2f} -> {r['load_end']:.2f}   "
                  f"[{r['meter']}]", flush=True)
    what = f"sei train {a.train} --preset {a.preset}" if a.train else "sei demo"
    extra = " ".join(a.env) or "library defaults"
    print(f"{what}; {os.cpu_count()} CPUs; {extra}; loaded = +{a.load} CPU-bound process(es)"
          + (f" pinned to CPU {a.pin}" if a.pin is not None else ""))
    if len(results) == 2:
        q, l = results["quiet"], results["loaded"]
        print(f"loaded / quiet: wall {l['wall'] / q['wall']:.2f}x, cpu {l['cpu'] / q['cpu']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
