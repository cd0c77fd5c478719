# Set-up is part of every target: a fresh machine needs only Python 3.10+ and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
GEN    := axon_grpc/_generated/axon/v1/axon_pb2.py

.PHONY: demo test proto clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(GEN): $(STAMP) $(wildcard proto/axon/v1/*.proto) scripts/gen_protos.py
	$(PY) scripts/gen_protos.py

proto: $(GEN)

demo: $(STAMP) $(GEN)
	$(VENV)/bin/axon-grpc demo

test: $(STAMP) $(GEN)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) axon_grpc/_generated .pytest_cache
