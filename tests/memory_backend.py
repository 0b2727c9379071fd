"""The executor's backend without a network: numpy arrays and in-memory mailboxes, one thread
per rank.  The same programs as on the ranks, so the tests check what the executor does."""
from __future__ import annotations

import queue
import threading


class Mailboxes:
    def __init__(self):
        self._lock, self._boxes = threading.Lock(), {}

    def box(self, src: int, dst: int, tag: int) -> queue.Queue:
        with self._lock:
            return self._boxes.setdefault((src, dst, tag), queue.Queue())


class _Done:
    def wait(self):
        return None


class _Recv:
    def __init__(self, box, buf):
        self.box, self.buf = box, buf

    def wait(self):
        self.buf[:] = self.box.get(timeout=30)


class MemoryBackend:
    def __init__(self, rank: int, boxes: Mailboxes):
        self.rank, self.boxes = rank, boxes

    def wire(self, view):
        return view

    def irecv(self, buf, src, tag):
        return _Recv(self.boxes.box(src, self.rank, tag), buf)

    def isend(self, buf, dst, tag):
        self.boxes.box(self.rank, dst, tag).put(buf.copy())
        return _Done()


def run_parts(parts, ranks, iters: int = 2):
    """Run parts (collectives.schedule.Part) on every rank of `ranks` for `iters` iterations;
    {rank: [(ends, ok), ...]}."""
    from collectives.executor import RankRun
    boxes, out, errors = Mailboxes(), {}, []
    barrier = threading.Barrier(len(ranks))

    def one(rank):
        try:
            run = RankRun(MemoryBackend(rank, boxes), rank, parts, k=0.0)
            results = []
            for _ in range(iters):
                run.reset()
                recvs = run.post()
                barrier.wait(30)
                results.append(run.run(recvs, 0.0))
            out[rank] = results
        except BaseException as exc:      # reported by the caller
            errors.append((rank, exc))
            barrier.abort()

    threads = [threading.Thread(target=one, args=(r,)) for r in ranks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0][1]
    return out
