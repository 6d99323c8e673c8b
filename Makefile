.PHONY: run test faults bench bench-npy bench-gc bench-blob load fuzz
run:
	bash scripts/run.sh
test:
	bash scripts/test.sh
# Fault tests (pytest marker `cluster`: a SeaweedFS cluster losing a node). Needs the test cluster
# on $$OAS_TEST_PORT with pg_oas installed (scripts/test.sh, or scripts/cluster.sh start test).
faults:
	.tools/venv/bin/python -m pytest -q -p no:cacheprovider -m cluster tests/client
bench:
	bash scripts/bench.sh $(BENCH_ARGS)
bench-npy:
	bash scripts/bench_npy.sh $(BENCH_ARGS)
bench-gc:
	bash scripts/bench_gc.sh $(BENCH_ARGS)
bench-blob:
	bash scripts/bench_blob.sh $(BENCH_ARGS)
load:
	bash scripts/load.sh $(LOAD_ARGS)
fuzz:
	bash scripts/fuzz.sh $(FUZZ_ARGS)
