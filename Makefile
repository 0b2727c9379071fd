# The two commands of the README.  Both install what is missing first (scripts/setup.sh).
.PHONY: setup demo test clean

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/fabric run profiles/isl-800g.yaml

test:
	@scripts/setup.sh --test
	.venv/bin/python -m pytest -q -rs tests

clean:
	rm -rf .venv build *.egg-info
