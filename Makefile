# Every target sets itself up from nothing: a virtual environment, the pinned install, then the run.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test up down status fuzz lock

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,fuzz]'
	touch $(STAMP)

setup: $(STAMP)

## The main job: start the platform on embedded defaults and run a short flash sale.
demo: $(STAMP)
	scripts/ensure_debian.sh ffmpeg  # video renditions (HLS) of the content library
	$(BIN)/flashmart demo

## Lint and format check, then the test suite (real PostgreSQL, Redis, localstripe and Ray, all embedded).
test: $(STAMP)
	scripts/ensure_debian.sh chromium
	scripts/ensure_debian.sh ffmpeg  # video renditions (HLS) of the content library
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

## The deterministic simulator of the inventory engine over many seeds (a short run is in make test);
## a failing seed replays exactly: python -m flashmart.sim.dst --seed N
.PHONY: dst
dst: $(STAMP)
	$(BIN)/python -m flashmart.sim.dst --seeds $(or $(SEEDS),5000)

## Fuzz every route of the OpenAPI document with schemathesis against a private running platform.
fuzz: $(STAMP)
	scripts/fuzz.sh

up: $(STAMP)
	scripts/ensure_debian.sh ffmpeg
	$(BIN)/flashmart up

down: $(STAMP)
	$(BIN)/flashmart down

status: $(STAMP)
	$(BIN)/flashmart status

## Re-pin the versions a fresh install gets (run after changing dependencies, then commit).
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^flashmart' > constraints.txt

## Capacity benchmarks (benchmarks/, docs/benchmarks.md): full run, a few-minute run, regression guard.
.PHONY: bench bench-quick bench-check
bench: $(STAMP)
	$(BIN)/python -m benchmarks

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick

bench-check: $(STAMP)
	$(BIN)/python -m benchmarks.check
