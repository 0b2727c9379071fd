"""An ordinary torch.distributed program, nothing of fabric in it: an all-reduce timing loop as
anyone would write it (env:// rendezvous, gloo, torch's own all_reduce), nccl-tests' busbw.

    torchrun --nproc-per-node 4 allreduce_loop.py --bytes 4194304 --iters 10 [--json FILE]
    allreduce_loop.py --exit-on-rank R --code C     # rank R exits with code C after joining
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bytes", type=int, default=4 << 20)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json")
    ap.add_argument("--exit-on-rank", type=int)
    ap.add_argument("--code", type=int, default=3)
    args = ap.parse_args()
    dist.init_process_group("gloo")
    rank, n = dist.get_rank(), dist.get_world_size()
    if args.exit_on_rank == rank:
        print(f"rank {rank} exits with {args.code} on purpose", flush=True)
        os._exit(args.code)
    x = torch.ones(args.bytes // 4, dtype=torch.float32)
    times = []
    for i in range(args.warmup + args.iters):
        dist.barrier()
        t = time.perf_counter()
        dist.all_reduce(x)
        own = torch.tensor([time.perf_counter() - t], dtype=torch.float64)
        dist.all_reduce(own, op=dist.ReduceOp.MAX)      # the slowest rank's time, as nccl-tests reports
        if i >= args.warmup:
            times.append(own.item())
    p50 = sorted(times)[len(times) // 2]
    busbw = args.bytes / p50 * 2 * (n - 1) / n
    if rank == 0:
        print(f"all_reduce {args.bytes} B on {n} ranks: p50 {p50 * 1e6:.0f} us, busbw {busbw / 1e9:.4f} GB/s "
              f"(n={len(times)})", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"bytes": args.bytes, "ranks": n, "p50_s": p50, "times_s": times, "busbw_Bps": busbw, "n": len(times),
                           "env": {k: os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE",
                                                                   "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                                                                   "GLOO_SOCKET_IFNAME", "FABRIC_SCALE",
                                                                   "FABRIC_ADDRS", "OMP_NUM_THREADS")}}, f)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
