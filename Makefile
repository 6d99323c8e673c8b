.PHONY: run test faults bench bench-npy bench-gc bench-blob bench-zstd bench-migrate load fuzz
run:
	bash scripts/run.sh
test:
	bash scripts/test.sh
# Fault tests: the heavier crash cases (pytest marker `faults`) and the SeaweedFS cluster losing a
# node (marker `cluster`, also in scripts/test.sh). See scripts/faults.sh.
faults:
	bash scripts/faults.sh $(FAULTS_ARGS)
bench:
	bash scripts/bench.sh $(BENCH_ARGS)
bench-npy:
	bash scripts/bench_npy.sh $(BENCH_ARGS)
bench-gc:
	bash scripts/bench_gc.sh $(BENCH_ARGS)
bench-blob:
	bash scripts/bench_blob.sh $(BENCH_ARGS)
bench-zstd:
	bash -c 'source scripts/env.sh && cd bench && "$$VENV/bin/python" zstd.py --port "$$TEST_PORT" --pg-config "$$PG_CONFIG" $(BENCH_ARGS)'
bench-migrate:
	bash scripts/bench_migrate.sh $(BENCH_ARGS)
load:
	bash scripts/load.sh $(LOAD_ARGS)
fuzz:
	bash scripts/fuzz.sh $(FUZZ_ARGS)
