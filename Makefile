# Entry points a newcomer needs; each script installs its own system packages.
.PHONY: run test deb bench bench-smoke fmt lint

run:
	./scripts/run.sh

test:
	./scripts/test.sh

deb:
	./scripts/make-deb.sh

bench:
	./bench/run.sh

bench-smoke:
	./bench/run.sh --smoke
