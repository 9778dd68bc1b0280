# farm: `make demo` runs the baseline on the embedded SQLite store; `make test` passes the tests.
PYTHON ?= python3
VENV ?= .venv
# Installed before farm so pip never resolves a bare `torch` to a multi-GB CUDA build.
# On a GPU box: make install TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install demo test lint compose-env bench-meters bench-speed bench-farm clean

$(BIN)/.farm-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[worker,runtimes,dev]'
	# quanto compiles its CPU int4 kernel on first use (minutes on 2 cores): build it now, not in a worker's job.
	$(BIN)/python -c "from worker.compression.int4 import load_cpu_unpack_kernel as k; k()" \
	  || echo "note: quanto's C++ int4 kernel did not build (no C++ compiler?): int4 jobs on CPU will fail saying so"
	touch $@

install: $(BIN)/.farm-installed

demo: install
	$(BIN)/farm run --variant baseline

# Four test processes (pytest-xdist): most of the suite waits on subprocesses, leases and outages.
test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 4 --durations=25

lint: install
	$(BIN)/ruff check .

bench-meters: install
	$(BIN)/python scripts/bench_meter_overhead.py

bench-speed: install
	$(BIN)/python scripts/bench_speed.py

bench-farm: install
	$(BIN)/python scripts/bench_farm.py

# The .env docker-compose.yml needs: random Redis, Postgres and Flower secrets (never overwrites one).
compose-env:
	$(PYTHON) scripts/compose_env.py .env

clean:
	rm -rf $(VENV) .pytest_cache
