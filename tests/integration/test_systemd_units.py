"""The units in systemd/ as systemd itself judges them: `systemd-analyze verify` and
`systemd-analyze security --offline=yes` (exposure <= 2.0 for every service)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.cli import build_parser
from bench.provisioning import SERVICES, UNITS, exposure, unit_root

REPO = Path(__file__).resolve().parents[2]
# The distribution's asterisk.service our drop-in amends, read from the sid rootfs
# (make install builds it); only read here.
DISTRO_ASTERISK = Path("/var/cache/callvault/sid-rootfs/usr/lib/systemd/system/asterisk.service")
MAX_EXPOSURE = 2.0


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd")
    if not DISTRO_ASTERISK.exists():
        pytest.fail(f"{DISTRO_ASTERISK} missing: run `make install` (builds the sid rootfs)")
    r = unit_root(DISTRO_ASTERISK)
    yield r
    shutil.rmtree(r)


@pytest.mark.parametrize("unit", [*SERVICES, "asterisk.service"])
def test_exposure_is_at_most_two(root: Path, unit: str) -> None:
    assert exposure(root, unit) <= MAX_EXPOSURE


def test_units_verify(tmp_path: Path) -> None:
    # verify needs the ExecStart binary: point the install prefix at this checkout's venv,
    # which holds the same `callvault` console script the role installs.
    venv_bin = REPO / ".venv" / "bin"
    if not (venv_bin / "callvault").exists():
        pytest.fail(f"{venv_bin}/callvault missing: run `make install`")
    units = []
    for unit in sorted(UNITS.glob("*.service")) + sorted(UNITS.glob("*.timer")):
        text = unit.read_text().replace("/opt/callvault/venv/bin", str(venv_bin))
        (tmp_path / unit.name).write_text(text)
        units.append(str(tmp_path / unit.name))
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stderr.strip() == "", out.stderr


def test_every_service_is_hardened_the_same_way() -> None:
    must = (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=",
    )
    files = [*(UNITS / s for s in SERVICES), UNITS / "asterisk.service.d" / "callvault.conf"]
    for f in files:
        text = f.read_text()
        missing = [m.strip() for m in must if m not in text]
        assert not missing, f"{f.name} lacks {missing}"
        assert "User=" in text, f"{f.name} has no dedicated user"
    # Only the agent may reach the GPU; everything else gets no devices at all.
    assert "DeviceAllow=/dev/nvidia0 rw" in (UNITS / "callvault.service").read_text()
    for f in files[1:]:
        assert "PrivateDevices=yes" in f.read_text(), f.name


@pytest.mark.parametrize("unit", SERVICES)
def test_exec_start_is_a_real_callvault_command(unit: str) -> None:
    # systemd-analyze verify only checks that the binary exists: parse the arguments with the
    # CLI's own parser so a renamed or missing subcommand or flag fails here, not on the box.
    lines = [ln for ln in (UNITS / unit).read_text().splitlines() if ln.startswith("ExecStart=")]
    assert len(lines) == 1, lines
    argv = shlex.split(lines[0].removeprefix("ExecStart="))
    assert argv[0] == "/opt/callvault/venv/bin/callvault", argv
    args = build_parser().parse_args(argv[1:])  # argparse exits (SystemExit) on a bad argv
    assert callable(args.fn), argv
