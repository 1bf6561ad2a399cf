"""The playbook against a fresh Debian sid rootfs (debootstrap, chroot connection): it converges,
a second run changes nothing, ansible-lint passes, and the installed units verify and stay under
the exposure limit inside the provisioned box."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.provisioning import SERVICES, exposure, playbook, run_testbed

# Two playbook runs on a fresh rootfs; a clean checkout first builds its wheelhouse.
pytestmark = pytest.mark.timeout(1800)
REPO = Path(__file__).resolve().parents[2]
# One rootfs per test process: two checkouts (a developer's and CI's) may provision at once.
ROOTFS = Path(f"/var/cache/callvault/provision-rootfs-{os.getpid()}")


@pytest.fixture(scope="module")
def provisioned() -> Iterator[tuple[Path, str, int]]:
    if os.geteuid() != 0:
        pytest.fail("provisioning tests need root (debootstrap, chroot)")
    if shutil.which("debootstrap") is None:
        pytest.fail("debootstrap is missing: apt-get install debootstrap (make install does)")
    run_testbed("fresh", ROOTFS)
    try:
        _, first_changed, first = playbook(ROOTFS)
        _, second_changed, second = playbook(ROOTFS)
        assert first_changed > 0, first[-3000:]
        yield ROOTFS, second, second_changed
    finally:
        run_testbed("destroy", ROOTFS)


def test_second_run_changes_nothing(provisioned: tuple[Path, str, int]) -> None:
    _, output, changed = provisioned
    # Name the tasks that changed: "TASK [...]" headers followed by a "changed:" line.
    tasks, current = [], ""
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            current = line
        elif line.startswith("changed:"):
            tasks.append(current)
    assert changed == 0, "changed on the second run:\n" + "\n".join(tasks)


def test_asterisk_from_the_distribution_with_ami_on_loopback(
    provisioned: tuple[Path, str, int],
) -> None:
    root, _, _ = provisioned
    version = subprocess.run(["chroot", str(root), "/usr/sbin/asterisk", "-V"],
                             capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    assert version.stdout.startswith("Asterisk ")
    assert "bindaddr = 127.0.0.1" in (root / "etc/asterisk/manager.conf").read_text()


def test_secrets_are_generated_on_the_box(provisioned: tuple[Path, str, int]) -> None:
    root, output, _ = provisioned
    state = root / "var/lib/callvault"
    for name in (
        "keys/master.key", "secrets/admin_initial_password", "secrets/ami_secret",
        "secrets/agent_password",
    ):  # fmt: skip
        st = (state / name).stat()
        assert oct(st.st_mode & 0o777) == "0o600", name
        assert st.st_size >= 16, name
        value = (state / name).read_bytes().strip()
        assert value not in output.encode(), f"{name} leaked into the playbook output"
    defaults = "".join(p.read_text() for p in (REPO / "ansible").rglob("*.yml"))
    assert "password:" not in defaults.replace('password: "!"', "")


def test_installed_units_under_the_limit(provisioned: tuple[Path, str, int]) -> None:
    root, _, _ = provisioned
    for unit in (*SERVICES, "asterisk.service"):
        assert exposure(root, unit) <= 2.0, unit
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert (wants / "callvault.service").is_symlink()
    assert (root / "etc/systemd/system/timers.target.wants/callvault-backup.timer").is_symlink()


def test_ansible_lint_passes() -> None:
    lint = REPO / ".venv/bin/ansible-lint"
    if not lint.exists():
        pytest.fail("ansible-lint missing in .venv: make install")
    out = subprocess.run([str(lint), "--nocolor"], cwd=REPO / "ansible", capture_output=True,
                         text=True, timeout=300, check=False)  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
