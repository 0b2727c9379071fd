"""How fast fabric.capture reads a link direction's pair of pcaps (no root, no kernel).

    .venv/bin/python benchmarks/capture_read.py [--packets 100000] [--repeat 3]

Writes a `queued` and a `sent` pcap of --packets TCP segments each (8 flows, 1448-byte
payloads cut to tcpdump's 128-byte snaplen, nanosecond timestamps, every packet 2 ms later in
`sent`) to a temporary folder, then times capture.analyse() on them: the best of --repeat.
The reading speed in fabric/capture.py's docstring comes from here.
"""
from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fabric import capture  # noqa: E402

SNAPLEN = 128
FLOWS = 8
PAYLOAD = 1448
RATE_BPS = 1e9


def write(folder: Path, packets: int) -> capture.Direction:
    """One direction's pcaps: a scapy-built segment, its IP id and TCP seq patched per packet."""
    from scapy.all import IP, TCP, Ether, Raw
    from scapy.utils import PcapWriter
    template = [bytes(Ether() / IP(src="10.0.0.1", dst=f"10.0.1.{f + 1}") / TCP(sport=40000 + f, dport=29500,
                                                                                  flags="A") / Raw(b"x" * PAYLOAD))
                for f in range(FLOWS)]
    gap_ns = round(len(template[0]) * 8 / RATE_BPS * 1e9)
    paths = {name: folder / f"{name}.pcap" for name in ("queued", "sent")}
    writers = {name: PcapWriter(str(path), linktype=1, nano=True, snaplen=SNAPLEN) for name, path in paths.items()}
    for w in writers.values():
        w.write_header(None)
    seq = [0] * FLOWS
    for i in range(packets):
        f = i % FLOWS
        head = bytearray(template[f][:SNAPLEN])
        struct.pack_into("!H", head, 18, i & 0xffff)
        struct.pack_into("!I", head, 38, seq[f])
        seq[f] = (seq[f] + PAYLOAD) % 2**32
        t = 1_000_000_000 + i * gap_ns
        for name, at in (("queued", t), ("sent", t + 2_000_000)):
            writers[name].write_packet(bytes(head), sec=at // 10**9, usec=at % 10**9, wirelen=len(template[f]))
    for w in writers.values():
        w.close()
    return capture.Direction("fab0000h0:fab0000r0", "bench", "host", RATE_BPS, paths["queued"], paths["sent"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        direction = write(Path(tmp), args.packets)
        best = min(_timed(lambda: capture.analyse([direction], k=1000.0)) for _ in range(args.repeat))
        read = min(_timed(lambda: capture._read(direction.sent)) for _ in range(args.repeat))
    total = 2 * args.packets
    print(f"analyse(): 2 pcaps x {args.packets} packets in {best:.2f} s = {total / best:,.0f} packets/s "
          f"(reading one pcap alone: {read:.2f} s = {args.packets / read:,.0f} packets/s)")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
