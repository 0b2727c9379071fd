"""hierarchical: two tiers, for groups spread over several domains (nodes, satellites).

Reduce-scatter inside each domain (direct), all-reduce of block j across the domains among the
ranks with local index j (a pipelined ring), all-gather inside each domain (direct): each rank
puts only S/m' on the slow tier, and every uplink carries the domain's share once."""
from collectives.algorithms.base import (Algorithm, direct_all_gather, direct_reduce_scatter, region,
                                         ring_all_reduce)


def tiers(g, net) -> list[list[int]] | None:
    """The group's members by domain (each domain's in group order), or None unless the group
    spans two or more domains with the same number (two or more) in each."""
    by = {}
    for r in g:
        by.setdefault(net.domain_of(r), []).append(r)
    sizes = {len(v) for v in by.values()}
    if len(by) < 2 or len(sizes) != 1 or sizes.pop() < 2:
        return None
    return list(by.values())


class Hierarchical(Algorithm):
    name = "hierarchical"
    ops = {"all_reduce": "reduce-scatter inside each domain, ring all-reduce across domains per local index, "
                         "all-gather inside"}

    def applies(self, call, net):
        return call.op in self.ops and all(tiers(g, net) for g in call.groups)

    def steps(self, call, g, net):
        domains = tiers(g, net)
        local = len(domains[0])
        blocks = region(0, call.count, local)
        inside = [direct_reduce_scatter(tuple(d), "in", 0, call.count, "out") for d in domains]
        across = [ring_all_reduce(tuple(d[j] for d in domains), "out", o, n, call.item, net)
                  for j, (o, n) in enumerate(blocks)]
        gather = [direct_all_gather(tuple(d), "out", 0, call.count) for d in domains]
        return [sum(parallel, []) for phase in (inside, across, gather) for parallel in zip(*phase)]


ALGORITHM = Hierarchical()
