# The two commands a fresh machine needs: `make serve` and `make test`.
VENV ?= .venv
ENGINE ?= cpu
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(ENGINE)
HOST ?= 127.0.0.1
PORT ?= 8000
ARGS ?=

# Engine defaults for this kind of machine (override in the environment).
export VLLM_CPU_KVCACHE_SPACE ?= 2
export OMP_NUM_THREADS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: install serve test check format redis loop clean

$(STAMP): pyproject.toml scripts/install.sh
	VENV=$(VENV) ENGINE=$(ENGINE) scripts/install.sh
	touch $@

install: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/conscience serve --host $(HOST) --port $(PORT) $(ARGS)

redis:
	scripts/ensure-redis.sh

check: $(STAMP)
	$(VENV)/bin/ruff check app trainer conscience tests benchmarks
	$(VENV)/bin/ruff format --check app trainer conscience tests benchmarks

test: $(STAMP) redis check
	VLLM_CPU_KVCACHE_SPACE=1 $(PY) -m pytest -q -p no:cacheprovider $(ARGS)

format: $(STAMP)
	$(VENV)/bin/ruff format app trainer conscience tests benchmarks
	$(VENV)/bin/ruff check --fix app trainer conscience tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

loop: $(STAMP)
	$(VENV)/bin/conscience loop $(ARGS)
