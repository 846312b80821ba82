# infpop: the study path as Make targets. `make help` lists them.
# On a fresh machine: `make demo` (the whole path on CPU) and `make test`.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INFPOP := $(BIN)/infpop

MANIFEST ?= manifests/demo.yaml
PARTITION ?= local
PROFILE ?=
OUT ?= runs
STUDY := $(shell sed -n 's/^study: *//p' $(MANIFEST) | head -n1)
TABLE ?= $(OUT)/$(STUDY)/table.parquet
FIGURES ?= $(OUT)/$(STUDY)/figures

# torch comes from the container images on clusters; here, the CPU wheel (set TORCH_PIP_ARGS to
# e.g. "--index-url https://download.pytorch.org/whl/cpu" where no local CPU wheel is provided).
TORCH_SPEC ?= torch==2.13.0+cpu
TORCH_PIP_ARGS ?=
EXTRAS ?= hf,analysis,test
PROFILE_ARG := $(if $(PROFILE),--profile $(PROFILE),)
SHARED_DATA := ../shared/data/humaneval-infilling/HumanEval-SingleLineInfilling.jsonl.gz
DATA := data/HumanEval-SingleLineInfilling.jsonl.gz

.PHONY: help install demo sweep plan aggregate figures data test clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: MANIFEST=$(MANIFEST) PARTITION=$(PARTITION) PROFILE=$(PROFILE) OUT=$(OUT)"

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch before anything that depends on it, so pip never picks a CUDA build
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed ## create .venv with infpop, the CPU engine and analysis

build/tiny-model/config.json: | $(VENV)/.installed
	$(INFPOP) make-tiny-model build/tiny-model

$(DATA): | $(VENV)/.installed
	@mkdir -p data
	if [ -f $(SHARED_DATA) ]; then ln -sf "$$(realpath $(SHARED_DATA))" $@; else $(INFPOP) fetch-data manifests/demo.yaml; fi

data: $(DATA) ## get the HumanEval infilling prompts (sha256-checked)

plan: install ## count trials and jobs of MANIFEST on PARTITION; runs nothing
	$(INFPOP) plan $(MANIFEST) --partition $(PARTITION) --output-root $(OUT) $(PROFILE_ARG)

sweep: install ## run (local) or submit (SLURM) the trials of MANIFEST on PARTITION that have no result
	$(INFPOP) sweep $(MANIFEST) --partition $(PARTITION) --output-root $(OUT) $(PROFILE_ARG)

aggregate: install ## collect results of the study into $(TABLE)
	$(INFPOP) aggregate $(OUT)/$(STUDY) -o $(TABLE)

figures: aggregate ## draw the figures of $(TABLE) into $(FIGURES)
	$(INFPOP) figures $(TABLE) -o $(FIGURES)

demo: install build/tiny-model/config.json $(DATA) ## the whole path on CPU: tiny model, local jobs, table, figure
	$(INFPOP) sweep manifests/demo.yaml --partition local --output-root $(OUT)
	$(INFPOP) aggregate $(OUT)/demo -o $(OUT)/demo/table.parquet
	$(INFPOP) figures $(OUT)/demo/table.parquet -o $(OUT)/demo/figures
	@echo "results: $(OUT)/demo/cpu  table: $(OUT)/demo/table.parquet (.csv)  figures: $(OUT)/demo/figures"

test: install ## run the test suite
	$(BIN)/python -m pytest -q

clean: ## remove runs, build and data (keeps .venv)
	rm -rf $(OUT) build data
