"""Profile loading: good profiles parse; every bad one is one line, exit 2, nothing created."""
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, flat
from fabric.profile import ProfileError, load, parse

IB = {
    "name": "ib-ndr400", "description": "two 4-GPU nodes", "scale": "auto",
    "links": {"nvlink4": {"rate": "450GB/s", "latency": "2us", "jitter": "0.1us"},
              "ndr": {"rate": "400Gbit/s", "latency": "1.5us", "jitter": "0.2us", "loss": "0%"}},
    "topology": {"kind": "two_tier", "domains": 2, "ranks_per_domain": 4, "intra": "nvlink4", "inter": "ndr"},
    "workload": [{"op": "all_reduce", "bytes": ["4KiB", "1MiB", "32MiB"], "iters": 20, "warmup": 3},
                 {"op": "all_to_all", "bytes": "8MiB"}],
}


def test_issue_example_parses():
    p = parse(IB, "ib.yaml")
    assert p.scale is None
    assert p.topology.ranks == 8 and p.topology.domain_of(5) == 1
    assert p.links["nvlink4"].rate_bps == pytest.approx(3.6e12)
    assert p.links["ndr"].latency_s == pytest.approx(1.5e-6)
    assert p.workload[0].sizes == (4096, 2**20, 2**25)
    assert p.workload[1].iters == 20 and p.workload[1].warmup == 5   # defaults
    assert p.impaired and p.used_links() == ["nvlink4", "ndr"]


def test_flat_without_impairments_needs_no_netem():
    p = parse(flat(), "f.yaml")
    assert p.topology.kind == "flat" and p.topology.ranks == 4 and not p.impaired


def _with(path, value):
    import copy
    data = copy.deepcopy(IB)
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize("path,value,key,words", [
    (("colour",), "red", "colour", "unknown key"),
    (("links", "ndr", "rate"), "400Gb", "links.ndr.rate", "expected a rate"),
    (("links", "ndr", "rate"), "-400Gbit/s", "links.ndr.rate", "expected a rate"),
    (("links", "ndr", "latency"), "1.5", "links.ndr.latency", "expected a time"),
    (("links", "ndr", "speed"), "1", "links.ndr.speed", "unknown key"),
    (("topology", "inter"), "infiniband", "topology.inter", "unknown link class"),
    (("topology", "kind"), "hypercube", "topology.kind", "expected flat or two_tier"),
    (("topology", "domains"), 0, "topology.domains", "whole number"),
    (("topology", "inter"), KeyError, "topology.inter", "missing required key"),
    (("workload",), [{"op": "all_reduce", "bytes": "4KB/s"}], "workload[0].bytes", "expected a size"),
    (("workload",), [{"op": "allreduce", "bytes": "4KiB"}], "workload[0].op", "unknown op"),
    (("workload",), [{"op": "all_reduce", "bytes": "4KiB", "splits": "uneven"}], "workload[0].splits", "uneven"),
    (("scale",), 0.5, "scale", "expected 'auto' or a number"),
    (("links", "ndr", "lossless"), "no", "links.ndr.lossless", "expected true or false"),
    (("links", "ndr", "buffer"), "1MiB", "links.ndr.buffer", "expected lossless: false beside it"),
    (("name",), KeyError, "name", "missing required key"),
])
def test_bad_profiles_name_the_key(path, value, key, words):
    with pytest.raises(ProfileError) as info:
        parse(_with(path, value), "bad.yaml")
    msg = str(info.value)
    assert msg.startswith(f"bad.yaml: {key}: ") and words in msg and "\n" not in msg


def test_too_few_ranks_for_the_op():
    with pytest.raises(ProfileError, match=r"workload\[0\]\.op: all_reduce needs at least 2 ranks"):
        parse(flat(ranks=1), "one.yaml")


def test_missing_file_and_malformed_yaml(tmp_path):
    with pytest.raises(ProfileError, match="nope.yaml: no such file"):
        load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nlinks: {a: [1, 2\n")
    with pytest.raises(ProfileError, match=r"bad.yaml: line \d+: malformed YAML"):
        load(bad)


@pytest.mark.parametrize("cmd", ["plan", "run"])
@pytest.mark.parametrize("content,words", [
    ("name: x\nlinks: {a: {rate: 10Gb}}\ntopology: {kind: flat, ranks: 2, link: a}\n"
     "workload: [{op: all_reduce, bytes: 1MiB}]\n", "links.a.rate: expected a rate"),
    ("name: [unclosed\n", "malformed YAML"),
])
def test_cli_bad_input_is_one_line_exit_2_and_creates_nothing(tmp_path, cmd, content, words):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "fabric.cli", cmd, str(path)] + (["--out", str(out)] if cmd == "run" else [])
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists()


def test_cli_missing_file_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fabric.cli", "plan", str(tmp_path / "missing.yaml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "missing.yaml: no such file" in proc.stderr


def test_shipped_profiles_parse():
    files = sorted((ROOT / "profiles").glob("*.yaml"))
    names = {f.stem for f in files}
    assert {"nvlink4-h100", "nvlink5-gb200", "ib-ndr400", "roce-400g", "pcie5", "eth-100g", "isl-800g",
            "isl-dwdm-10t"} <= names
    for f in files:
        p = load(f)
        assert p.name == f.stem
        text = f.read_text()
        assert "docs/sources.md" in text, f"{f.name} cites no source"
        assert "shared/" not in text, f"{f.name} cites a file outside the repository"


def test_reorder_must_be_a_boolean():
    from conftest import flat
    with pytest.raises(ProfileError, match=r"links.eth.reorder: expected true or false, got 'no'"):
        parse(flat(reorder="no"), "f.yaml")


def test_distribution_must_be_one_netem_knows():
    from conftest import flat
    with pytest.raises(ProfileError, match=r"links.eth.distribution: expected one of uniform, normal, pareto, "
                                           r"paretonormal, got 'gauss'"):
        parse(flat(distribution="gauss"), "f.yaml")


@pytest.mark.parametrize("entry,match", [
    ({"op": "all_reduce", "bytes": "1KiB", "algorithm": "nccl"},
     r"workload\[0\].algorithm: unknown algorithm 'nccl'; expected auto or one of direct, gloo, hierarchical"),
    ({"op": "all_reduce", "bytes": "1KiB", "algorithm": "pairwise"},
     r"workload\[0\].algorithm: pairwise does not run all_reduce; algorithms that do: ring, tree, one_shot, "
     r"two_shot, hierarchical, gloo \(or auto\)"),
    ({"op": "all_reduce", "bytes": "1KiB", "algorithm": "hierarchical"},
     r"workload\[0\].algorithm: hierarchical needs two or more domains of two or more ranks"),
    ({"ep_moe": {"model": "deepseek-v3", "tokens": 4, "ep": 4, "algorithm": "ring"}},
     r"workload\[0\].ep_moe.algorithm: ring does not run all_to_all; algorithms that do: direct, pairwise, gloo"),
    ({"op": ["all_reduce"], "bytes": "1KiB"}, r"workload\[0\].op: unknown op \['all_reduce'\]"),
])
def test_algorithm_choices_are_checked(entry, match):
    from conftest import flat
    with pytest.raises(ProfileError, match=match):
        parse(flat(ranks=4, workload=[entry]), "f.yaml")


def test_a_forced_algorithm_and_endpoint_costs_reach_the_profile():
    from conftest import flat
    p = flat(ranks=4, workload=[{"op": "all_reduce", "bytes": "1KiB", "algorithm": "tree"},
                                {"tp_decode": {"model": "llama-3.1-8b", "batch": 1, "tp": 4, "algorithm": "gloo"}}])
    p["endpoint"] = {"op": "3.6us", "step": "0.5us"}
    p["links"]["eth"]["endpoint"] = {"step": "1us"}
    prof = parse(p, "f.yaml")
    assert prof.workload[0].algorithm == "tree" and prof.workloads[0].algorithm == "gloo"
    assert prof.endpoint.op_s == pytest.approx(3.6e-6) and prof.endpoint_of("eth").step_s == pytest.approx(1e-6)
    assert prof.endpoint_of("eth").op_s == pytest.approx(3.6e-6)   # what the class does not give: the profile's
    with pytest.raises(ProfileError, match=r"endpoint.launch: unknown key; expected one of op, step"):
        parse(dict(p, endpoint={"launch": "1us"}), "f.yaml")
    with pytest.raises(ProfileError, match=r"links.eth.endpoint.step: "):
        parse(dict(p, links={"eth": {"rate": "1Gbit/s", "endpoint": {"step": "fast"}}}), "f.yaml")


def test_the_docs_cite_only_files_inside_the_repository():
    """Users clone the repository alone: a doc that points outside it points nowhere."""
    root = Path(__file__).resolve().parent.parent
    docs = [root / "README.md", *root.glob("docs/*.md"), *root.glob("labs/**/*.md"), *root.glob("benchmarks/*.py")]
    assert len(docs) > 8
    for f in docs:
        assert "shared/" not in f.read_text(), f"{f.relative_to(root)} cites a file outside the repository"


def test_link_classes_are_lossless_unless_they_say_otherwise():
    p = parse(flat(lossless=False, buffer="512KiB"), "f.yaml")
    assert not p.links["eth"].lossless and p.links["eth"].buffer_bytes == 512 << 10
    assert parse(flat(), "f.yaml").links["eth"].lossless and parse(flat(), "f.yaml").links["eth"].buffer_bytes is None
    with pytest.raises(ProfileError, match=r"^f.yaml: links.eth.buffer: expected a size"):
        parse(flat(lossless=False, buffer="fast"), "f.yaml")
