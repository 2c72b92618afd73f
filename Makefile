# s2vc — each target works on a fresh machine on its own (it installs what it needs first).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=
PIP_ARGS ?=  # extra pip options, e.g. the index of your CPU torch wheels

.PHONY: install test test-quick demo bench bench-server bench-calls serve eval gpu-check clean help

help:
	@echo "make install   create .venv with every dependency pinned (torch 2.13.0 CPU)"
	@echo "make demo      encode + decode a real clip with the default model; prints bpp, kbps, PSNR, fps"
	@echo "make test      run the test suite (CPU, about 25 minutes on 2 cores)"
	@echo "make test-quick  the bitstream, codec, CLI, hardening and training-state tests (a few minutes)"
	@echo "make bench     encode/decode fps and peak memory per preset and resolution"
	@echo "make serve     start the streaming server (REST, streams, metrics) with the default model (ARGS='--port 8000')"
	@echo "make bench-server  real-time sessions, frame latency p50/p99, drops, RSS (ARGS='--streams 1,2,4 --size 160x120')"
	@echo "make bench-calls   WebRTC calls: coded fps, latency p50/p99, kbps, drops (ARGS='--calls 1,2 --mode preview')"
	@echo "make eval      rate-quality, BD-rate and speed against ffmpeg anchors (EVAL_CLIPS=...)"
	@echo "make gpu-check on a GPU machine without network: install from deploy/gpu/wheels, then speed, memory and"
	@echo "               correctness of both presets in under 9 minutes (GPU_OUT=gpu_check_out GPU_PYTHON=python3 ARGS=...)"

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIP_ARGS) -c constraints.txt -e '.[test]'
	@! $(BIN)/python -m pip show torchvision >/dev/null 2>&1 || (echo "torchvision must not be installed" && exit 1)
	@touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q $(ARGS)

# The bitstream, codec, CLI, hardening and training-state tests: a few minutes, run first by CI
QUICK_TESTS ?= tests/test_bitstream.py tests/test_golden.py tests/test_decode_errors.py tests/test_hardening.py \
	tests/test_codec.py tests/test_cli.py tests/test_checkpoint_sharing.py tests/test_training_state.py \
	tests/test_server_job_store.py tests/test_server_banner.py
test-quick: install
	$(BIN)/python -m pytest -q $(QUICK_TESTS) $(ARGS)

demo: install
	$(BIN)/s2vc demo $(ARGS)

bench: install
	$(BIN)/python -m s2vc_evaluation.bench_codec $(ARGS)

serve: install
	$(BIN)/s2vc serve $(ARGS)

bench-server: install
	$(BIN)/python -m s2vc_evaluation.bench_server $(ARGS)

bench-calls: install
	$(BIN)/python -m s2vc_evaluation.bench_calls $(ARGS)

EVAL_CLIPS ?= ../shared/data/clips/foreman_352x288.h264 ../shared/data/clips/mobile_352x288.h264
eval: install
	$(BIN)/s2vc eval $(EVAL_CLIPS) --anchors x264-medium,x264-veryslow,x265-medium,svtav1,vvenc-medium --frames 16 --out eval_out $(ARGS)

# Runs with the machine's own Python and torch (no .venv): the wheels in deploy/gpu/wheels/ come from
# deploy/gpu/download_wheels.sh on a machine with network; everything is installed --no-deps (docs/performance.md).
GPU_PYTHON ?= python3
GPU_OUT    ?= gpu_check_out
gpu-check:
	PYTHON=$(GPU_PYTHON) deploy/gpu/gpu_check.sh $(GPU_OUT) $(ARGS)

clean:
	rm -rf $(VENV) demo_out .pytest_cache
