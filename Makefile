.PHONY: run test bench bench-npy
run:
	bash scripts/run.sh
test:
	bash scripts/test.sh
bench:
	bash scripts/bench.sh $(BENCH_ARGS)
bench-npy:
	bash scripts/bench_npy.sh $(BENCH_ARGS)
