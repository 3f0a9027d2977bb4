# melon-ipc: build, test, install. GNU make.
#
#   make / make build   cargo build --release (libmln_ipc.a, libmln_ipc.so)
#   make test           everything CI runs (see the `test` recipe for the order)
#   make ctest          C tests in ctests/ against the static library
#   make memcheck       every C test under valgrind memcheck, children included
#                       (MEMCHECK_TESTS="ipc_basic ..." to choose; part of `make test`)
#   make memcheck-quick the core exchange and the hostile peers only
#   make fuzz           cargo-fuzz targets in fuzz/ for FUZZ_TIME seconds each (nightly)
#   make miri           the pure modules' unit tests (wire, registry) under Miri (nightly)
#   make demo           build and run examples/demo.c
#   make header         copy the freshly generated header to include/mln_ipc.h
#   make check-header   fail if include/mln_ipc.h differs from a fresh generation
#   make check-libs     fail if LIBS below differs from rustc's --print native-static-libs
#   make install        PREFIX=/usr/local (and DESTDIR) headers, libraries, pkg-config file
#   make bench          benchmarks, if any
#   make clean

CARGO ?= cargo
ifeq ($(origin CC),default)
CC := gcc
endif
CXX_CHECK ?= $(shell command -v g++ 2>/dev/null)
PREFIX ?= /usr/local
DESTDIR ?=

TARGET_DIR := $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),target)
RELEASE_DIR := $(TARGET_DIR)/release
LIB_A := $(RELEASE_DIR)/libmln_ipc.a
LIB_SO := $(RELEASE_DIR)/libmln_ipc.so
# Written by build.rs on every build (never into include/).
GEN_HEADER := $(RELEASE_DIR)/mln_ipc.h

# System libraries libmln_ipc.a needs, pinned from
#   cargo rustc --release --lib --crate-type staticlib -- --print native-static-libs
# `make check-libs` (part of `make test`) fails when rustc's answer changes.
LIBS = -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc

CTEST_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -Iinclude
HEADERS := $(wildcard include/*.h)
VERSION := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)

# `make memcheck-quick`: the core exchange and the hostile peers (`make test` runs them all).
MEMCHECK_QUICK := ipc_basic ipc_replies ipc_hostile
MEMCHECK_TESTS ?=
FUZZ_TIME ?= 60
# Property tests' case count when `make fuzz` has no cargo-fuzz to run.
FUZZ_FALLBACK_CASES ?= 20000
FUZZ_TARGETS := decoder capi_calls

.PHONY: all build test ctest memcheck memcheck-quick fuzz miri demo header check-header check-libs install bench clean

all: build

build:
	$(CARGO) build --release

test:
	$(CARGO) build --release
	$(CARGO) test --release --all-targets
	$(CARGO) test --release --doc
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --no-default-features --features melon --lib -- -D warnings
	$(CARGO) fmt --check
	$(MAKE) --no-print-directory check-header
	$(MAKE) --no-print-directory check-libs
	$(MAKE) --no-print-directory ctest
	$(MAKE) --no-print-directory memcheck
	$(MAKE) --no-print-directory miri

ctest: build
	CC="$(CC)" LIBS="$(LIBS)" TARGET_DIR="$(TARGET_DIR)" ./ctests/run.sh

memcheck: build
	TARGET_DIR="$(TARGET_DIR)" CC="$(CC)" LIBS="$(LIBS)" ./ctests/memcheck.sh $(MEMCHECK_TESTS)

memcheck-quick: build
	TARGET_DIR="$(TARGET_DIR)" CC="$(CC)" LIBS="$(LIBS)" ./ctests/memcheck.sh $(MEMCHECK_QUICK)

# cargo-fuzz needs a nightly toolchain (sanitizer flags). Installs cargo-fuzz when missing;
# without nightly it says so and runs the property-test versions with many cases instead.
fuzz:
	@if ! rustup run nightly rustc --version >/dev/null 2>&1; then \
	    echo "fuzz: no nightly toolchain (rustup toolchain install nightly); cargo-fuzz cannot run."; \
	    echo "fuzz: falling back to the property tests with PROPTEST_CASES=$(FUZZ_FALLBACK_CASES)."; \
	    PROPTEST_CASES=$(FUZZ_FALLBACK_CASES) $(CARGO) test --release --test wire_props --test registry_props --test capi_props; \
	    exit $$?; \
	fi; \
	if ! $(CARGO) fuzz --version >/dev/null 2>&1; then \
	    echo "fuzz: installing cargo-fuzz"; \
	    $(CARGO) install cargo-fuzz --locked || exit 1; \
	fi; \
	for t in $(FUZZ_TARGETS); do \
	    echo "fuzz: $$t for $(FUZZ_TIME) s"; \
	    (cd fuzz && $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_TIME)) || exit 1; \
	done

# Miri needs nightly with the miri component (rustup +nightly component add miri).
miri:
	@if ! $(CARGO) +nightly miri --version >/dev/null 2>&1; then \
	    echo "miri: not available (rustup +nightly component add miri); skipped"; \
	    exit 0; \
	fi; \
	$(CARGO) +nightly miri test --lib -- wire:: registry::

demo: build
	@mkdir -p $(TARGET_DIR)/examples
	$(CC) $(CTEST_CFLAGS) examples/demo.c $(LIB_A) $(LIBS) -o $(TARGET_DIR)/examples/demo
	MLN_IPC_LOG=$${MLN_IPC_LOG:-error} $(TARGET_DIR)/examples/demo

header: build
	@test -s $(GEN_HEADER) || { echo "error: $(GEN_HEADER) was not generated (see the cargo warnings above)"; exit 1; }
	cp $(GEN_HEADER) include/mln_ipc.h
	@echo "include/mln_ipc.h updated; commit it together with the source change."

# The committed header must be exactly what the pinned cbindgen makes of the current
# sources; and every public header must compile on its own, as C99 and as C++.
check-header: build
	@test -s $(GEN_HEADER) || { echo "error: $(GEN_HEADER) was not generated (see the cargo warnings above)"; exit 1; }
	@if ! cmp -s $(GEN_HEADER) include/mln_ipc.h; then \
	    echo "error: include/mln_ipc.h is out of date with the Rust sources / cbindgen.toml."; \
	    echo "       Run 'make header' and commit include/mln_ipc.h. Difference (committed -> fresh):"; \
	    diff -u include/mln_ipc.h $(GEN_HEADER) | head -n 60; \
	    exit 1; \
	fi
	@for h in $(notdir $(HEADERS)); do \
	    printf '#include "%s"\n#include "%s"\nint main(void) { return 0; }\n' $$h $$h > $(TARGET_DIR)/hdr_check.c; \
	    $(CC) -std=c99 -Wall -Wextra -Wpedantic -Werror -Iinclude -fsyntax-only $(TARGET_DIR)/hdr_check.c \
	        || { echo "error: include/$$h does not compile on its own (C99)"; exit 1; }; \
	    if [ -n "$(CXX_CHECK)" ]; then \
	        $(CXX_CHECK) -x c++ -std=c++11 -Wall -Wextra -Werror -Iinclude -fsyntax-only $(TARGET_DIR)/hdr_check.c \
	            || { echo "error: include/$$h does not compile on its own (C++)"; exit 1; }; \
	    fi; \
	done
	@echo "check-header: include/mln_ipc.h is up to date; all headers compile on their own"

# STYLE.md item 9: the pinned link line (here and in README.md) must stay what rustc says
# the archive needs.
check-libs:
	@actual=$$($(CARGO) rustc --release --lib --crate-type staticlib -- --print native-static-libs 2>&1 \
	    | sed -n 's/.*native-static-libs: *//p' | tail -n 1); \
	if [ "$$actual" != "$(strip $(LIBS))" ]; then \
	    echo "error: pinned LIBS differ from rustc's native-static-libs"; \
	    echo "  Makefile LIBS: $(strip $(LIBS))"; \
	    echo "  rustc says:    $$actual"; \
	    echo "  Update LIBS in the Makefile, README.md and mln_ipc.pc (via make install)."; \
	    exit 1; \
	fi; \
	if ! grep -qF -- "$(strip $(LIBS))" README.md; then \
	    echo "error: README.md does not show the pinned LIBS ($(strip $(LIBS)))"; \
	    exit 1; \
	fi; \
	echo "check-libs: LIBS = $$actual (Makefile and README.md agree)"

install: build
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(HEADERS) $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@LIBS@|$(strip $(LIBS))|g' \
	    mln_ipc.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/mln_ipc.pc
	chmod 644 $(DESTDIR)$(PREFIX)/lib/pkgconfig/mln_ipc.pc

# Placeholder until benchmarks land: runs `cargo bench` only if benches/ has sources.
bench:
	@if ls benches/*.rs >/dev/null 2>&1; then \
	    $(CARGO) bench; \
	else \
	    echo "bench: no benchmarks yet (benches/ is empty)"; \
	fi

clean:
	$(CARGO) clean
