.PHONY: bench
bench:
	bash scripts/bench.sh $(BENCH_ARGS)
