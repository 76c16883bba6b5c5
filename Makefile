# Two commands on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip


.PHONY: demo test bench install clean

$(VENV)/.runtime-installed: requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.runtime-installed requirements-test.txt
	$(PIP) install -q -r requirements-test.txt
	touch $@

install: $(VENV)/.runtime-installed

# Train the offline synthetic demo (lesions.py with no --dataset: 192 px, at most 800 steps or 10 minutes of
# training, the rate decaying to the end of either), predict on samples/, evaluate on new synthetic images.
demo: $(VENV)/.runtime-installed
	$(PY) lesions.py --mode train --logs logs
	$(PY) lesions.py --mode predict --image samples --logs logs --out logs/demo_predictions
	$(PY) lesions.py --mode evaluate --logs logs --out logs/demo_evaluation
	@echo "Demo outputs: logs/demo_predictions (masks/, overlays/, predictions.json, probabilities.csv)"
	@echo "              logs/demo_evaluation (metrics.json, per_image.csv)"

test: $(VENV)/.test-installed
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=25 tests

bench: $(VENV)/.runtime-installed
	$(PY) bench/speed.py --out logs/bench_speed.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
