"""The set-up's choice of torch (scripts/torch_pip_args.py): the CPU build, not PyPI's CUDA one."""
import importlib.util

from conftest import ROOT

spec = importlib.util.spec_from_file_location("torch_pip_args", ROOT / "scripts" / "torch_pip_args.py")
torch_pip_args = importlib.util.module_from_spec(spec)
spec.loader.exec_module(torch_pip_args)


def test_the_cpu_build_comes_from_pytorchs_index_where_it_answers():
    v = torch_pip_args.VERSION
    assert torch_pip_args.pip_args(True) == ["--extra-index-url", "https://download.pytorch.org/whl/cpu",
                                             f"torch=={v}+cpu"]
    assert torch_pip_args.pip_args(False) == [f"torch=={v}"]


def test_the_version_is_the_one_pyproject_names():
    assert f'"torch=={torch_pip_args.VERSION}"' in (ROOT / "pyproject.toml").read_text()


def test_an_unreachable_index_is_no_index_and_a_cuda_build_is_said():
    assert torch_pip_args.reachable("http://127.0.0.1:9/torch/", timeout_s=2) is False
    assert torch_pip_args.reachable("not a url") is False
    assert torch_pip_args.build_words(None) == (True, "torch: the CPU build")
    fine, words = torch_pip_args.build_words("12.8")
    assert not fine and "CUDA 12.8 build" in words and "--index-url https://download.pytorch.org/whl/cpu" in words


def test_setup_installs_what_the_choice_says():
    text = (ROOT / "scripts" / "setup.sh").read_text()
    assert "scripts/torch_pip_args.py)" in text and '"${torch_args[@]}"' in text
    assert "torch_pip_args.py check" in text
