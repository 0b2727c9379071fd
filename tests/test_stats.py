"""Percentiles only where the samples carry them, and intervals that cover what they claim."""
import random
import re

import pytest

from fabric.stats import fmt, median_interval, needed, percentile, ratio_interval, summary


def test_a_tail_percentile_needs_a_sample_beyond_it():
    assert (needed(50), needed(90), needed(95), needed(99)) == (1, 10, 20, 100)
    for n, p95, p99 in ((3, False, False), (19, False, False), (20, True, False), (99, True, False),
                        (100, True, True)):
        s = summary([float(i) for i in range(n)])
        assert s["n"] == n and (s["p95"] is not None) == p95 and (s["p99"] is not None) == p99, n
        assert s["p50"] == percentile(list(range(n)), 50) and s["max"] == n - 1
    assert fmt(None, 12) == "n/a (n=12)" and fmt(3.14159, 12, ".2f") == "3.14"


def test_the_median_interval_is_the_order_statistics_that_cover_it():
    assert median_interval([1.0, 2, 3, 4, 5]) is None              # 5 samples: no 95 % interval exists
    assert median_interval([6.0, 1, 5, 2, 4, 3]) == (1, 6)          # 6: min to max covers 1 - 2/64
    assert median_interval([float(i) for i in range(20)]) == (5, 14)  # x(6), x(15) (binomial tables)
    rng, covered, trials = random.Random(7), 0, 2000
    for _ in range(trials):         # exponential draws: the true median is ln 2
        lo, hi = median_interval([rng.expovariate(1.0) for _ in range(20)])
        covered += lo <= 0.6931 <= hi
    assert covered / trials >= 0.94                                 # claims >= 95.9 % for n = 20


def test_the_ratio_interval_brackets_the_slowdown_and_narrows_with_samples():
    rng = random.Random(3)
    base = [1.0 + rng.random() * 0.2 for _ in range(20)]
    slow = [2 * x for x in [1.0 + rng.random() * 0.2 for _ in range(20)]]
    lo, hi = ratio_interval(base, slow)
    assert lo < percentile(slow, 50) / percentile(base, 50) < hi and 1.7 < lo and hi < 2.3
    assert ratio_interval(base, slow) == (lo, hi)                   # seeded: a report reads the same each time
    more = [1.0 + rng.random() * 0.2 for _ in range(200)]
    lo2, hi2 = ratio_interval(more, [2 * x for x in more[::-1]])
    assert hi2 - lo2 < (hi - lo) / 2
    assert ratio_interval(base[:5], slow) is None and ratio_interval(base, slow, q=99) is None


def test_ratio_interval_coverage():
    """Two runs of 20 draws from the same lognormal, scaled 1.5x: the interval holds 1.5 in
    about 95 % of trials (percentile bootstrap of a median: a little under at n = 20)."""
    rng, covered, trials = random.Random(11), 0, 300
    for _ in range(trials):
        a = [rng.lognormvariate(0, 0.3) for _ in range(20)]
        b = [1.5 * rng.lognormvariate(0, 0.3) for _ in range(20)]
        lo, hi = ratio_interval(a, b)
        covered += lo <= 1.5 <= hi
    assert covered / trials == pytest.approx(0.95, abs=0.05)


def test_iters_auto_stops_when_the_median_is_pinned_or_the_budget_is_spent():
    from fabric.stats import Until, relative_width
    u = Until(min_iters=20, max_iters=100, width=0.05, budget_s=60)
    steady = [1.0 + 0.001 * (i % 7) for i in range(20)]
    assert not u.done(steady[:19], 0.0)                 # never below min_iters, however steady
    assert relative_width(steady) < 0.05 and u.done(steady, 0.0)
    rng = random.Random(5)
    noisy = [rng.lognormvariate(0, 1.0) for _ in range(40)]
    assert relative_width(noisy) > 0.05 and not u.done(noisy, 59.0)
    assert u.done(noisy, 60.0)                          # the budget ends it
    assert u.done(noisy * 3, 0.0)                       # and max_iters (120 >= 100)
    assert relative_width([1.0] * 5) == float("inf")    # no interval below 6 samples


def test_iters_auto_in_a_profile():
    from conftest import flat
    from fabric.profile import ProfileError, parse
    from fabric.stats import Until
    p = parse(flat(ranks=2, workload=[{"op": "all_reduce", "bytes": "4KiB", "iters": "auto", "budget": "30s"}]), "f.yaml")
    assert p.workload[0].until == Until(budget_s=30.0) and p.workload[0].iters == Until.max_iters
    w = parse(flat(ranks=2, workload=[{"tp_decode": {"model": "llama-3.1-8b", "batch": 1, "tp": 2, "layers": 1,
                                                     "steps": "auto"}}]), "f.yaml")
    assert w.workloads[0].until == Until()
    for entry, words in (({"iters": 10, "budget": "5s"}, "workload[0].budget: applies to iters: auto only"),
                         ({"iters": "lots"}, "workload[0].iters: expected a whole number between 1 and 100000 or auto"),
                         ({"iters": "auto", "budget": "0s"}, "workload[0].budget: expected a wall time > 0")):
        with pytest.raises(ProfileError, match=re.escape(words)):
            parse(flat(ranks=2, workload=[{"op": "all_reduce", "bytes": "4KiB", **entry}]), "f.yaml")


def test_an_interval_in_a_table_says_why_it_is_missing():
    from fabric.stats import fmt_interval
    assert fmt_interval((1.0234, 1.0891), 40) == "1.02-1.09"
    assert fmt_interval(None, 4) == "n/a (n=4)"


def test_the_median_interval_in_logs_is_the_exact_binomial_ones_and_fast_for_a_capture():
    """Its binomial terms are computed in logs (a capture summarises 100 000 delays): the same
    order statistics as the exact integer sums at every n tried."""
    import math

    def exact(n):
        below, j = 0.0, 0
        while j < n and below + math.comb(n, j) / 2**n <= 0.025:
            below += math.comb(n, j) / 2**n
            j += 1
        return j
    for n in [*range(1, 80), 100, 257, 999, 1000, 1500, 3001]:
        xs = list(range(n))
        ci = median_interval(xs)
        assert (ci is None) == (exact(n) == 0) and (ci is None or ci == (exact(n) - 1, n - exact(n))), n
    assert median_interval([float(i) for i in range(100_000)])[0] > 49_000


def test_a_summary_of_nothing_is_all_none():
    assert summary([]) == {"n": 0, "min": None, "p50": None, "p95": None, "p99": None, "max": None, "p50_ci": None}
