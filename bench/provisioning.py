"""Provisioning figures for `make bench` (issue 7), also used by the integration tests.

Keys:
  systemd_exposure_max        worst `systemd-analyze security --offline=yes` exposure among the
                              appliance's services and the hardened asterisk.service (lower is
                              better; the tests require <= 2.0)
  ansible_second_run_changed  tasks a second playbook run reports changed (must be 0)
  provision_seconds           first playbook run on a fresh debootstrap sid rootfs (chroot)

`egress_packets` (same group in bench/run.py) comes from bench/egress.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UNITS = REPO / "systemd"
TESTBED = REPO / "ansible" / "testbed"
CACHE = Path("/var/cache/callvault")
SERVICES = (
    "callvault.service",
    "callvault-admin.service",
    "callvault-retention.service",
    "callvault-backup.service",
)
_EXPOSURE = re.compile(r"Overall exposure level for (\S+): ([0-9.]+)")
_RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def unit_root(distro_asterisk_unit: Path) -> Path:
    """A scratch root holding our units, the distribution's asterisk.service and our drop-in."""
    root = Path(tempfile.mkdtemp(prefix="cv-units-"))
    etc = root / "etc/systemd/system"
    (etc / "asterisk.service.d").mkdir(parents=True)
    (root / "usr/lib/systemd/system").mkdir(parents=True)
    shutil.copy(distro_asterisk_unit, root / "usr/lib/systemd/system/asterisk.service")
    shutil.copy(UNITS / "asterisk.service.d/callvault.conf", etc / "asterisk.service.d/")
    for unit in UNITS.glob("*.service"):
        shutil.copy(unit, etc)
    for unit in UNITS.glob("*.timer"):
        shutil.copy(unit, etc)
    return root


def exposure(root: Path, unit: str) -> float:
    """`systemd-analyze security --offline=yes` overall exposure of `unit` under `root`."""
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", f"--root={root}", "--no-pager", unit],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    m = _EXPOSURE.search(out.stdout + out.stderr)
    if m is None:
        raise RuntimeError(f"systemd-analyze security {unit}: no exposure in output:\n{out.stderr}")
    return float(m.group(2))


def exposures(root: Path) -> dict[str, float]:
    return {u: exposure(root, u) for u in (*SERVICES, "asterisk.service")}


def playbook(rootfs: Path) -> tuple[float, int, str]:
    """One `ansible/testbed play` run: (seconds, changed count, output). Raises on failure."""
    t0 = time.monotonic()
    out = subprocess.run(
        [str(TESTBED), "play", str(rootfs)], capture_output=True, text=True, timeout=1200,
        check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - t0
    text = out.stdout + out.stderr
    m = _RECAP.search(text)
    if out.returncode != 0 or m is None or int(m.group(4)) or int(m.group(3)):
        raise RuntimeError(f"playbook failed (rc {out.returncode}):\n{text[-6000:]}")
    return elapsed, int(m.group(2)), text


def run_testbed(action: str, rootfs: Path) -> None:
    subprocess.run([str(TESTBED), action, str(rootfs)], check=True, timeout=600)


def run() -> dict[str, float]:
    distro_unit = CACHE / "sid-rootfs/usr/lib/systemd/system/asterisk.service"
    root = unit_root(distro_unit)
    try:
        worst = max(exposures(root).values())
    finally:
        shutil.rmtree(root)
    rootfs = CACHE / f"provision-bench-{os.getpid()}"
    run_testbed("fresh", rootfs)
    try:
        first, _, _ = playbook(rootfs)
        _, second_changed, _ = playbook(rootfs)
    finally:
        run_testbed("destroy", rootfs)
    return {
        "systemd_exposure_max": worst,
        "ansible_second_run_changed": float(second_changed),
        "provision_seconds": round(first, 1),
    }


if __name__ == "__main__":
    print(run())
