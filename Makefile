# sge — the two commands of README.md:
#   make train   install what is missing, build in release mode, train the default model
#   make test    install what is missing, run the test suite
# Other targets: build, deps, bench, validate, kit, kit-test, clean. TRAIN_ARGS passes options to
# `sge train`. `make train` first runs `sge tune`, which tunes CLBlast's GEMM for the device once
# (stored per device and driver; skipped when a tuning exists or sge ships parameters for the device
# class, as for PoCL on AVX-512 and AVX2 CPUs and NVIDIA GPUs; otherwise a few minutes the first time).

SHELL := /bin/bash
APT_PACKAGES := ocl-icd-opencl-dev opencl-headers libclblast-dev pocl-opencl-icd dataset-fashion-mnist libpng-dev zlib1g-dev libturbojpeg0-dev libopenmpi-dev openmpi-bin
SWIFT ?= swift
TRAIN_ARGS ?=

.PHONY: deps build train test bench validate kit kit-test clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "sge: installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	  else \
	    echo "sge: missing Debian packages. Run:"; echo "  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
	@command -v $(SWIFT) >/dev/null || { echo "sge: Swift 6 is required (https://swift.org/install)"; exit 1; }

build: deps
	$(SWIFT) build -c release --product sge

train: build
	.build/release/sge tune || echo "sge: tuning failed; training with CLBlast's default parameters"
	.build/release/sge train $(TRAIN_ARGS)

test: deps
	$(SWIFT) test

bench: build
	.build/release/sge bench

validate: build
	.build/release/sge validate --cases 200

# A self-contained folder for a GPU machine without Swift or internet (see scripts/gpu-kit).
kit: deps
	scripts/gpu-kit gpu-kit

# Builds the kit and runs its run.sh against this machine's OpenCL (PoCL without a GPU).
kit-test: deps
	scripts/test-gpu-kit

clean:
	rm -rf .build
