# Two commands for a fresh machine:  `make demo`  (set up + run the demo)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: setup demo test lint bench clean-data

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[cpu,dev]'
	@rm -f $(VENV)/.installed-* && touch $@

demo: setup
	$(VENV)/bin/safecity demo

# the model for the real-model tests is fetched (and reused) first; YOLO_OFFLINE keeps Ultralytics off the network
test: setup
	YOLO_OFFLINE=1 $(VENV)/bin/safecity models fetch fall-yolov8 >/dev/null
	YOLO_OFFLINE=1 $(VENV)/bin/safecity models fetch yolov3-tiny-coco >/dev/null
	YOLO_OFFLINE=1 $(VENV)/bin/safecity footage samples >/dev/null
	YOLO_OFFLINE=1 $(PY) -m pytest -q

bench: setup
	YOLO_OFFLINE=1 $(PY) -m benchmarks.throughput

clean-data:
	rm -rf data
