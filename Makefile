# vla_ros: `make demo` runs the main job from a fresh clone; `make test` runs the whole test suite.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export MUJOCO_GL ?= egl
export PYTHONUNBUFFERED := 1

.PHONY: setup test demo doctor clean help

help:
	@echo "make setup   create .venv with ROS 2 wheels (or the sourced distribution), torch, MuJoCo, vla_ros"
	@echo "make test    set up when needed, then run the whole pytest suite"
	@echo "make demo    set up when needed, then run the main job (docs/demo.md)"
	@echo "make doctor  print what vla-ros doctor finds"

setup:
	@bash scripts/setup.sh

# Re-runs setup only when the requirements or the setup script changed (the files setup.sh hashes).
$(VENV)/.vla_ros_setup: $(wildcard requirements/*.txt) setup.py setup.cfg scripts/setup.sh
	@bash scripts/setup.sh

test: $(VENV)/.vla_ros_setup
	$(PY) -m pytest test -q

demo: $(VENV)/.vla_ros_setup
	$(VENV)/bin/vla-ros demo

doctor: $(VENV)/.vla_ros_setup
	$(VENV)/bin/vla-ros doctor

clean:
	rm -rf build install log .pytest_cache .hypothesis
