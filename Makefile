# netlistener — build, test, run, bench, install.
# `make run` and `make test` are the only set-up a fresh clone needs.

CARGO    ?= cargo
PREFIX   ?= /usr/local
DESTDIR  ?=
CONF     ?= conf.d
MANPAGES := $(wildcard man/*.[0-9])

.PHONY: all build release test lint fmt manlint run bench bench-quick install clean

all: build

build:
	$(CARGO) build --all-targets

release:
	$(CARGO) build --release --bins

# Every test: unit, integration (real loopback sockets), doc examples, man page lint.
test: manlint
	$(CARGO) test --all-targets
	$(CARGO) test --doc
	$(CARGO) run -q --bin netlistenerd -- -c conf.d --check
	$(CARGO) run -q --example custom_daemon -- -c examples/custom_daemon.conf --check

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --quiet

fmt:
	$(CARGO) fmt --all

manlint:
	@for m in $(MANPAGES); do \
		out=$$(LC_ALL=C groff -man -ww -z $$m 2>&1); \
		if [ -n "$$out" ]; then echo "$$m:"; echo "$$out"; exit 1; fi; \
	done; echo "man pages lint-clean: $(words $(MANPAGES))"

run: release
	./target/release/netlistenerd -c $(CONF)

install: release
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin
	install -m 0755 target/release/netlistenerd $(DESTDIR)$(PREFIX)/sbin/netlistenerd
	install -m 0755 target/release/nlctl $(DESTDIR)$(PREFIX)/bin/nlctl
	for m in $(MANPAGES); do \
		s=$${m##*.}; install -d $(DESTDIR)$(PREFIX)/share/man/man$$s; \
		install -m 0644 $$m $(DESTDIR)$(PREFIX)/share/man/man$$s/; \
	done
	install -d $(DESTDIR)$(PREFIX)/share/doc/netlistener/conf.d
	install -m 0644 conf.d/*.conf $(DESTDIR)$(PREFIX)/share/doc/netlistener/conf.d/
	sed 's|/usr/local/sbin/|$(PREFIX)/sbin/|g' contrib/netlistenerd.service \
		> $(DESTDIR)$(PREFIX)/share/doc/netlistener/netlistenerd.service

# Benchmarks: netlistenerd side by side with its anchors (see bench/README.md, BENCHMARKS.md).
# The driver also runs the micro-benchmarks (cargo bench --bench timers|config) into its report.
bench: release
	python3 bench/run.py --netlistenerd target/release/netlistenerd

bench-quick: release
	python3 bench/run.py --quick --netlistenerd target/release/netlistenerd

clean:
	$(CARGO) clean
