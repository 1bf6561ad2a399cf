"""The egress run's pcap reading and classification (bench/egress.py), on frames built here;
the run itself is tests/integration/test_egress.py."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest

from appliance import config
from bench import egress

BOX_MAC = "02:00:00:00:00:10"
INET_MAC = "02:00:00:00:00:01"
TRUNK_MAC = "02:00:00:00:00:20"


def mac(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


def eth(src: str, dst: str, ethertype: int, body: bytes) -> bytes:
    return mac(dst) + mac(src) + struct.pack(">H", ethertype) + body


def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    head = struct.pack(">BBHHHBBH", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0)
    return head + ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def arp(sender_mac: str, sender_ip: str, target_ip: str) -> bytes:
    return (
        struct.pack(">HHBBH", 1, 0x0800, 6, 4, 1)
        + mac(sender_mac)
        + ipaddress.IPv4Address(sender_ip).packed
        + bytes(6)
        + ipaddress.IPv4Address(target_ip).packed
    )


def mld_report(src: str) -> bytes:
    # IPv6 with a hop-by-hop header (router alert) before ICMPv6 type 143, as the kernel sends.
    hbh = bytes([58, 0, 5, 2, 0, 0, 1, 0])
    icmp = bytes([143, 0, 0, 0, 0, 0, 0, 0])
    head = struct.pack(">IHBB", 6 << 28, len(hbh) + len(icmp), 0, 1)
    return (
        head
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address("ff02::16").packed
        + hbh
        + icmp
    )


def rtp(seq: int) -> bytes:
    return struct.pack(">BBHII", 0x80, 0, seq, seq * 160, 1234) + bytes(160)


def write_pcap(path: Path, frames: list[tuple[float, bytes]], *, nano: bool = False) -> Path:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 262144, 1)
    for ts, frame in frames:
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nano else 1e6))
        out += struct.pack("<IIII", sec, frac, len(frame), len(frame)) + frame
    path.write_bytes(out)
    return path


def test_frames_from_the_box_are_egress_whatever_the_protocol(tmp_path: Path) -> None:
    box_ip = egress.BOX_WAN_IP
    dns = ipv4(box_ip, egress.DNS_IP, 17, udp(40000, 53, b"\x12\x34dns"))
    frames = [
        (100.0, eth(BOX_MAC, "33:33:00:00:00:16", 0x86DD, mld_report("::"))),
        (101.5, eth(BOX_MAC, "ff:ff:ff:ff:ff:ff", 0x0806, arp(BOX_MAC, box_ip, egress.INET_IP))),
        (101.5, eth(BOX_MAC, INET_MAC, 0x0800, dns)),
        (101.6, eth(INET_MAC, BOX_MAC, 0x0800, ipv4(egress.INET_IP, box_ip, 1, bytes([3, 3])))),
    ]
    packets = egress.read_pcap(write_pcap(tmp_path / "inet.pcap", frames, nano=True))
    assert [(p.proto, p.icmp_type) for p in packets] == [
        ("icmpv6", 143), ("arp", -1), ("udp", -1), ("icmp", 3),
    ]  # fmt: skip
    assert packets[1].ts == pytest.approx(101.5)
    assert (packets[2].src, packets[2].dst, packets[2].dport) == (box_ip, egress.DNS_IP, 53)
    assert str(packets[2]).endswith(f"udp {box_ip}:40000 > {egress.DNS_IP}:53")
    boxed = egress.from_box(packets, {BOX_MAC}, egress.BOX_IPS)
    # The internet's own ICMP answer is not the box's; ARP and the MLD report are.
    assert [p.proto for p in boxed] == ["icmpv6", "arp", "udp"]


def test_an_empty_capture_reads_as_no_frames_and_garbage_is_refused(tmp_path: Path) -> None:
    assert egress.read_pcap(write_pcap(tmp_path / "empty.pcap", [])) == []
    (tmp_path / "bad.pcap").write_bytes(b"not a pcap at all, really not")
    with pytest.raises(ValueError, match="not a pcap file"):
        egress.read_pcap(tmp_path / "bad.pcap")


def test_trunk_traffic_sorts_sip_rtp_and_the_rest(tmp_path: Path) -> None:
    t, b = egress.TRUNK_IP, egress.BOX_TRUNK_IP
    invite = b"INVITE sip:100@198.51.100.10:5060 SIP/2.0\r\nVia: x\r\n\r\n"
    ok = b"SIP/2.0 200 OK\r\n"
    frames = [
        (1.0, eth(TRUNK_MAC, BOX_MAC, 0x0800, ipv4(t, b, 17, udp(5060, 5060, invite)))),
        (1.1, eth(BOX_MAC, TRUNK_MAC, 0x0800, ipv4(b, t, 17, udp(5060, 5060, ok)))),
        (1.2, eth(TRUNK_MAC, BOX_MAC, 0x0800, ipv4(t, b, 17, udp(4000, 10002, rtp(1))))),
        (1.3, eth(BOX_MAC, TRUNK_MAC, 0x0800, ipv4(b, t, 17, udp(10002, 4000, rtp(1))))),
        (1.4, eth(BOX_MAC, TRUNK_MAC, 0x0800, ipv4(b, t, 17, udp(10002, 4000, rtp(2))))),
        (1.5, eth(BOX_MAC, TRUNK_MAC, 0x0806, arp(BOX_MAC, b, t))),
        (1.6, eth(BOX_MAC, TRUNK_MAC, 0x0800, ipv4(b, t, 17, udp(33333, 53, b"\x00" * 20)))),
    ]  # fmt: skip
    tr = egress.trunk_traffic(egress.read_pcap(write_pcap(tmp_path / "trunk.pcap", frames)))
    assert tr.sip_from_trunk == ["INVITE sip:100@198.51.100.10:5060 SIP/2.0"]
    assert tr.sip_from_box == ["SIP/2.0 200 OK"]
    assert (tr.rtp_to_box, tr.rtp_from_box) == (1, 2)
    # Not SIP, not RTP: listed, so the test can insist it is only ARP.
    assert [(p.proto, p.dport) for p in tr.other] == [("arp", 0), ("udp", 53)]


def test_the_box_config_is_the_dev_config_on_the_box_address(tmp_path: Path) -> None:
    text = egress.box_config_text(tmp_path)
    path = tmp_path / "callvault.toml"
    path.write_text(text)
    cfg = config.load(path)
    assert cfg.asterisk.sip_bind == egress.BOX_TRUNK_IP
    assert [(p.name, p.match) for p in cfg.ip_peers] == [("trunk", egress.TRUNK_IP)]
    assert cfg.database == tmp_path / "callvault.db"
    assert cfg.state_dir == tmp_path / "state"
    assert cfg.line_by_name(egress.LINE) is not None
