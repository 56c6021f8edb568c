# fedcredit: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PROTOS := $(wildcard proto/fedcredit/v1/*.proto)

.PHONY: demo test proto check-proto lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fedcredit demo --report report.json

test: $(STAMP)
	$(PY) -m pytest -q --durations=15 tests

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -I . --plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy --plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. $(PROTOS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m mypy --strict common crypto models node coordinator fedcredit

clean:
	rm -rf $(VENV) demo-out report.json
