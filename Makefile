# melon-ipc: build, test, install. GNU make.
#
#   make / make build   cargo build --release (libmln_ipc.a, libmln_ipc.so)
#   make test           everything CI runs: the stages in TEST_STAGES, then one summary
#                       (scripts/test-stages.sh; TEST_KEEP_GOING=1 runs on past a failure)
#   make cargo-test | doc-test | doc | example | clippy | clippy-melon | fmt-check
#                       single stages of `make test` (as are the check-*, bench-build,
#                       miri, ctest and memcheck targets below)
#   make ctest          C tests in ctests/ against the static library
#   make memcheck       every C test under valgrind memcheck, children included
#                       (MEMCHECK_TESTS="ipc_basic ..." to choose; part of `make test`)
#   make memcheck-quick the core exchange and the hostile peers only
#   make fuzz           cargo-fuzz targets in fuzz/ for FUZZ_TIME seconds each (nightly)
#   make miri           the pure modules' unit tests (wire, registry) under Miri (nightly)
#   make demo           build and run examples/demo.c
#   make example-rolling  build examples/rolling_reload.c and run its self-test (SIGHUP:
#                       rolling restart, SIGTERM: graceful stop; part of `make test`)
#   make example-handoff  build examples/accept_handoff.c and run its self-test (accepted
#                       TCP connections handed to workers round-robin; part of `make test`)
#   make header         generate the C header (scripts/gen-header: cbindgen) and copy it to
#                       include/mln_ipc.h
#   make check-header   fail if include/mln_ipc.h differs from a fresh generation
#   make check-libs     fail if LIBS below differs from rustc's --print native-static-libs
#   make install        PREFIX=/usr/local (and DESTDIR): headers into include/mln_ipc/,
#                       libmln_ipc.a, libmln_ipc.so.<version> (SONAME libmln_ipc.so.0) and
#                       its links, lib/pkgconfig/mln_ipc.pc
#   make install-melon  the same for the melon build beside it (libmln_ipc_melon.*,
#                       include/mln_ipc_melon/, mln_ipc_melon.pc naming MELON_PREFIX)
#   make check-install  install into a temporary prefix, link through pkg-config, run
#   make check-install-melon  the same for mln_ipc_melon.pc (needs Melon at MELON_PREFIX)
#   make bench          benchmarks: melon-ipc against this machine's raw limit (about 4 minutes)
#   make bench-melon    the benchmark against Melon's own IPC (needs Melon at MELON_PREFIX)
#   make bench-build    compile the benchmarks without running them (part of `make test`)
#   make melon          the melon build (libmln_ipc.a/.so for linking before -lmelon) into
#                       $(TARGET_DIR)/melon/release, never over the standalone outputs
#   make check-melon-symbols  the melon archive defines the IPC/fork API and leaves the event
#                       loop, conf and log undefined (imported from libmelon)
#   make melon-example  examples/melon_burst.c against the melon build and an installed
#                       Melon at MELON_PREFIX (static and shared); not part of `make test`
#   make ctest-melon    the C tests against the melon build and the Melon at MELON_PREFIX
#                       (compiled with Melon's headers, our archive before libmelon_static.a)
#   make memcheck-melon the same under valgrind memcheck (MEMCHECK_TESTS to choose)
#                       (`make test` runs both, and check-install-melon, when MELON_PREFIX
#                       holds a Melon install)
#   make clean

CARGO ?= cargo
ifeq ($(origin CC),default)
CC := gcc
endif
CXX_CHECK ?= $(shell command -v g++ 2>/dev/null)
PREFIX ?= /usr/local
DESTDIR ?=
# An installed Melon (its ./configure --prefix), for melon-example, ctest-melon and
# memcheck-melon; `make test` runs the latter two only when it is there.
MELON_PREFIX ?= /usr/local/melon
MELON_INSTALLED = $(and $(wildcard $(MELON_PREFIX)/include/mln_framework.h),$(wildcard $(MELON_PREFIX)/lib/libmelon_static.a))

TARGET_DIR := $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),target)
RELEASE_DIR := $(TARGET_DIR)/release
LIB_A := $(RELEASE_DIR)/libmln_ipc.a
LIB_SO := $(RELEASE_DIR)/libmln_ipc.so
# The header generator scripts/gen-header (cbindgen) writes here, only when `make header` or
# `make check-header` runs it (no build of the library does: a crate that depends on
# melon-ipc never compiles cbindgen). Every C build here uses the committed
# include/mln_ipc.h, which check-header (a stage of `make test`) keeps fresh.
GEN_HEADER := $(TARGET_DIR)/gen-header/mln_ipc.h
GEN_HEADER_CMD := $(CARGO) run -p mln-ipc-gen-header -- $(GEN_HEADER)

# The melon build has a target directory of its own.
MELON_FEATURES := --no-default-features --features melon
MELON_TARGET_DIR := $(TARGET_DIR)/melon
MELON_RELEASE_DIR := $(MELON_TARGET_DIR)/release
MELON_LIB_A := $(MELON_RELEASE_DIR)/libmln_ipc.a
MELON_LIB_SO := $(MELON_RELEASE_DIR)/libmln_ipc.so
# What the melon archive must define (mln_ipc.h, mln_fork.h, and Melon's exported data
# symbols of mln_fork.c) ...
MELON_DEFINES := mln_ipc_set_process_handlers mln_ipc_handler_register \
    mln_ipc_handler_unregister mln_ipc_max_message_set mln_fork_prepare \
    mln_fork_master_ipc_handler_set mln_fork_worker_ipc_handler_set mln_fork_iterate \
    mln_fork_master_connection_get mln_fork mln_fork_spawn mln_fork_restart \
    mln_fork_master_events_set mln_fork_worker_events_set \
    mln_fork_resource_clear_handler_set mln_ipc_fd_handler_master mln_ipc_fd_handler_worker \
    mln_fork_socketpair_close_handler mln_ipc_master_send_prepare mln_ipc_worker_send_prepare \
    master_conn worker_list_head worker_list_tail rs_clr_handler rs_clr_data child_state \
    cur_msg_len cur_msg_type child_error_bytes child_msg_content child_msg_buf_size
# ... what it must import from libmelon ...
MELON_IMPORTS := mln_event_fd_set mln_event_timer_set mln_event_timer_cancel mln_conf \
    mln_conf_cmd_num mln_conf_cmds mln_conf_arg_num mln_string_const_strcmp _mln_sys_log \
    mln_log_destroy mln_tcp_conn_init mln_tcp_conn_destroy mln_tcp_conn_fd_set
# ... and the prefixes of Melon's own modules it must not define (loop, framework, conf,
# log, connections; mln_fork_worker_num_set is the standalone build's extension).
MELON_FOREIGN := ^(mln_event_|mln_framework_|mln_conf|mln_log|_mln_sys_log|mln_tcp_conn_|mln_string_|mln_fork_worker_num_set$$)

# System libraries libmln_ipc.a needs, pinned from
#   cargo rustc --release --lib --crate-type staticlib -- --print native-static-libs
# `make check-libs` (part of `make test`) fails when rustc's answer changes.
LIBS = -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc

CTEST_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -Iinclude
HEADERS := $(wildcard include/*.h)
VERSION := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
# The SONAME's number (build.rs sets libmln_ipc.so.$(SO_MAJOR)).
SO_MAJOR := $(firstword $(subst ., ,$(VERSION)))

# `make memcheck-quick`: the core exchange and the hostile peers (`make test` runs them all).
MEMCHECK_QUICK := ipc_basic ipc_replies ipc_hostile
MEMCHECK_TESTS ?=
FUZZ_TIME ?= 60
# Property tests' case count when `make fuzz` has no cargo-fuzz to run.
FUZZ_FALLBACK_CASES ?= 20000
FUZZ_TARGETS := decoder capi_calls

.PHONY: all build test ctest memcheck memcheck-quick fuzz miri demo example-rolling example-handoff header check-header check-libs install \
    install-melon check-install check-install-melon bench bench-build bench-melon clean melon \
    check-melon-symbols melon-example ctest-melon memcheck-melon ctest-melon-if-installed

all: build

build:
	$(CARGO) build --release

# `make test` runs these make targets in this order (scripts/test-stages.sh), each a stage
# of the summary it prints: passed, skipped (why: a stage skips by writing the reason to
# $TEST_STAGE_SKIP, see `miri`) or failed. It stops at the first failed stage unless
# TEST_KEEP_GOING=1. To add a stage: define its target and add its name here.
TEST_STAGES := build cargo-test doc-test doc example clippy clippy-melon fmt-check \
    check-header check-libs check-melon-symbols bench-build miri examples-c example-rolling example-handoff check-install ctest \
    memcheck ctest-melon-if-installed check-install-melon

# MLN_IPC_CTESTS_SEPARATE: the C tests run in the ctest stage, so `cargo test` (the
# cargo-test stage) skips its own run of them (rust-tests/ctests.rs).
test:
	@MAKE="$(MAKE)" MLN_IPC_CTESTS_SEPARATE=1 ./scripts/test-stages.sh $(TEST_STAGES)

.PHONY: cargo-test doc-test doc example clippy clippy-melon fmt-check examples-c

# The optional features that the Rust tests, doc tests, docs, examples, benchmarks and
# clippy cover: `serde` (typed messages through serde; rust-tests/api_serde.rs) and `tokio`
# (the async face, docs/async.md; rust-tests/async_*.rs, examples/async_fanout.rs). They
# only add items, so every Rust stage builds with the same set: the library is compiled
# once more than for `build` (the C library, which never has them), not once per stage.
# `cargo test` without them skips the tests that need them. clippy also checks the library
# without them (code that only a feature uses).
TEST_FEATURES := --features serde,tokio

cargo-test:
	$(CARGO) test --release --all-targets $(TEST_FEATURES)

doc-test:
	$(CARGO) test --release --doc $(TEST_FEATURES)

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps $(TEST_FEATURES)

example:
	$(CARGO) run --release $(TEST_FEATURES) --example ping_pong
	$(CARGO) run --release $(TEST_FEATURES) --example accept_handoff -- --self-test
	$(CARGO) run --release $(TEST_FEATURES) --example async_fanout

# With the optional features, the library without them (what `make build` compiles), and
# the header generator (a package of the workspace that plain cargo commands skip).
clippy:
	$(CARGO) clippy --all-targets $(TEST_FEATURES) -- -D warnings
	$(CARGO) clippy --lib -- -D warnings
	$(CARGO) clippy -p mln-ipc-gen-header -- -D warnings

clippy-melon:
	$(CARGO) clippy $(MELON_FEATURES) --lib -- -D warnings

fmt-check:
	$(CARGO) fmt --check

# Every C program of README.md and docs/*.md, and examples/demo.c: -Wall -Wextra -Werror,
# then run.
examples-c: build
	CC="$(CC)" LIBS="$(LIBS)" TARGET_DIR="$(TARGET_DIR)" ./scripts/check-c-examples.sh

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

# Miri needs nightly with the miri component. Without it: says why, skipped (a skipped
# stage in the summary of `make test`, with the reason).
miri:
	@if ! $(CARGO) +nightly miri --version >/dev/null 2>&1; then \
	    if rustup run nightly rustc --version >/dev/null 2>&1; then \
	        why="nightly has no miri component: rustup +nightly component add miri"; \
	    else \
	        why="no nightly toolchain: rustup toolchain install nightly --component miri"; \
	    fi; \
	    echo "miri: skipped ($$why)"; \
	    if [ -n "$$TEST_STAGE_SKIP" ]; then echo "$$why" > "$$TEST_STAGE_SKIP"; fi; \
	    exit 0; \
	fi; \
	$(CARGO) +nightly miri test --lib -- wire:: registry::

demo: build
	@mkdir -p $(TARGET_DIR)/examples
	$(CC) $(CTEST_CFLAGS) examples/demo.c $(LIB_A) $(LIBS) -o $(TARGET_DIR)/examples/demo
	$(TARGET_DIR)/examples/demo

# The lifecycle example: it sends itself SIGHUP (a rolling restart of its workers with the
# new configuration), then SIGTERM (a graceful stop), and exits 0 if all went as it should.
example-rolling: build
	@mkdir -p $(TARGET_DIR)/examples
	$(CC) $(CTEST_CFLAGS) examples/rolling_reload.c $(LIB_A) $(LIBS) -o $(TARGET_DIR)/examples/rolling_reload
	timeout -k 5 90 $(TARGET_DIR)/examples/rolling_reload --self-test

# Descriptor passing: the master accepts TCP connections on 127.0.0.1 and hands each to a
# worker in turn; a client process checks every answer and a connection served during the
# graceful stop, and it exits 0 if all went as it should.
example-handoff: build
	@mkdir -p $(TARGET_DIR)/examples
	$(CC) $(CTEST_CFLAGS) examples/accept_handoff.c $(LIB_A) $(LIBS) -o $(TARGET_DIR)/examples/accept_handoff
	timeout -k 5 90 $(TARGET_DIR)/examples/accept_handoff --self-test

header:
	$(GEN_HEADER_CMD)
	cp $(GEN_HEADER) include/mln_ipc.h
	@echo "include/mln_ipc.h updated; commit it together with the source change."

# The committed header must be exactly what the pinned cbindgen makes of the current
# sources; and every public header must compile on its own, as C89, C99 and C++.
check-header:
	$(GEN_HEADER_CMD)
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
	    $(CC) -std=c89 -Wall -Wextra -Werror -Iinclude -fsyntax-only $(TARGET_DIR)/hdr_check.c \
	        || { echo "error: include/$$h does not compile on its own (C89)"; exit 1; }; \
	    if [ -n "$(CXX_CHECK)" ]; then \
	        $(CXX_CHECK) -x c++ -std=c++11 -Wall -Wextra -Werror -Iinclude -fsyntax-only $(TARGET_DIR)/hdr_check.c \
	            || { echo "error: include/$$h does not compile on its own (C++)"; exit 1; }; \
	    fi; \
	done
	@echo "check-header: include/mln_ipc.h is up to date; all headers compile on their own"

# The pinned link line (here and in README.md) must stay what rustc says the archive needs.
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

# Headers under $(PREFIX)/include/mln_ipc/ (they have Melon's names: straight into
# $(PREFIX)/include they would replace Melon's own); the shared library under its SONAME
# (build.rs) with the usual links; mln_ipc.pc's Cflags point at the header directory.
install: build
	install -d $(DESTDIR)$(PREFIX)/include/mln_ipc $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(HEADERS) $(DESTDIR)$(PREFIX)/include/mln_ipc/
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/libmln_ipc.a
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/libmln_ipc.so.$(VERSION)
	ln -sfn libmln_ipc.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libmln_ipc.so.$(SO_MAJOR)
	ln -sfn libmln_ipc.so.$(SO_MAJOR) $(DESTDIR)$(PREFIX)/lib/libmln_ipc.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@LIBS@|$(strip $(LIBS))|g' \
	    mln_ipc.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/mln_ipc.pc
	chmod 644 $(DESTDIR)$(PREFIX)/lib/pkgconfig/mln_ipc.pc

# The melon build beside the standalone one: libmln_ipc_melon.{a,so} (SONAME
# libmln_ipc_melon.so.0), include/mln_ipc_melon/mln_ipc_ext.h alone (the program compiles
# against Melon's headers), and mln_ipc_melon.pc, which names the Melon at MELON_PREFIX and
# carries the flags that make our IPC win at link time (docs/melon-build.md).
install-melon: melon
	install -d $(DESTDIR)$(PREFIX)/include/mln_ipc_melon $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/mln_ipc_ext.h $(DESTDIR)$(PREFIX)/include/mln_ipc_melon/
	install -m 644 $(MELON_LIB_A) $(DESTDIR)$(PREFIX)/lib/libmln_ipc_melon.a
	install -m 755 $(MELON_LIB_SO) $(DESTDIR)$(PREFIX)/lib/libmln_ipc_melon.so.$(VERSION)
	ln -sfn libmln_ipc_melon.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libmln_ipc_melon.so.$(SO_MAJOR)
	ln -sfn libmln_ipc_melon.so.$(SO_MAJOR) $(DESTDIR)$(PREFIX)/lib/libmln_ipc_melon.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@LIBS@|$(strip $(LIBS))|g' \
	    -e 's|@MELON_PREFIX@|$(MELON_PREFIX)|g' mln_ipc_melon.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/mln_ipc_melon.pc
	chmod 644 $(DESTDIR)$(PREFIX)/lib/pkgconfig/mln_ipc_melon.pc

# Part of `make test`: installs into a temporary prefix, links a program through
# pkg-config statically and against the shared library, runs both, and checks the SONAME
# (scripts/check-install.sh).
check-install: build
	CC="$(CC)" MAKE="$(MAKE)" TARGET_DIR="$(TARGET_DIR)" ./scripts/check-install.sh

# The same for mln_ipc_melon.pc with the Melon at MELON_PREFIX: a framework-only program
# (it calls no IPC function itself) linked through it runs melon-ipc's IPC, not Melon's.
# Part of `make test`; skipped with a message when no Melon is installed (CI has none).
check-install-melon:
ifneq ($(MELON_INSTALLED),)
	$(MAKE) --no-print-directory melon
	CC="$(CC)" MAKE="$(MAKE)" TARGET_DIR="$(TARGET_DIR)" MELON_PREFIX="$(MELON_PREFIX)" \
	    ./scripts/check-install.sh melon
else
	@echo "check-install-melon: skipped (no Melon install at $(MELON_PREFIX))"
	@if [ -n "$$TEST_STAGE_SKIP" ]; then echo "no Melon install at $(MELON_PREFIX)" > "$$TEST_STAGE_SKIP"; fi
endif

# Benchmarks (benches/README.md says how to read them, docs/performance.md has figures).
# `make test` only builds them: timing never decides a test. Every figure's count is
# calibrated for samples of 0.5 s (at least 0.3 s), BENCH_REPS (5) interleaved samples,
# median and spread. BENCH_REPS, BENCH_SCALE and BENCH_ONLY are passed on.
# The C program is benches/*.c (bench.h says which part is where).
BENCH_BIN := $(TARGET_DIR)/bench/ipc_bench
BENCH_SRC := benches/ipc_bench.c benches/common.c benches/raw.c benches/mlnipc.c

bench-build: build
	@mkdir -p $(TARGET_DIR)/bench
	$(CC) -O2 $(CTEST_CFLAGS) $(BENCH_SRC) $(LIB_A) $(LIBS) -o $(BENCH_BIN)
	$(CARGO) bench --no-run $(TEST_FEATURES)

bench: bench-build
	$(BENCH_BIN)
	$(CARGO) bench --bench ipc
	$(CARGO) bench $(TEST_FEATURES) --bench async_ipc

# Against Melon's own IPC (scripts/bench-melon.sh; docs/performance.md holds a run): the
# benchmark built with Melon's headers and linked with Melon's IPC, then with melon-ipc's
# melon build, with the Melon at MELON_PREFIX, and checks the round-trip targets (the melon
# build's at most Melon's own, at most 1.1x raw through epoll). A few minutes; says so and
# does nothing without a Melon there. BENCH_REPS (5) and BENCH_ROUNDS (9) are passed on.
bench-melon:
ifneq ($(MELON_INSTALLED),)
	$(MAKE) --no-print-directory bench-build melon
	CC="$(CC)" LIBS="$(LIBS)" TARGET_DIR="$(TARGET_DIR)" MELON_PREFIX="$(MELON_PREFIX)" \
	    ./scripts/bench-melon.sh
else
	@echo "bench-melon: skipped (no Melon install at $(MELON_PREFIX))"
endif

# The melon build (docs/melon-build.md). No libmelon is needed to build it or to check
# its symbols; only melon-example, ctest-melon and memcheck-melon link against an installed one.
# One codegen unit: the whole API is then one object of the archive, so a static link takes
# all of it or none of it, and never half ours and half Melon's mln_fork.o / mln_ipc.o.
melon:
	CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 $(CARGO) build --release $(MELON_FEATURES) --target-dir $(MELON_TARGET_DIR)

check-melon-symbols: melon
	@defined=$$(nm -g --defined-only $(MELON_LIB_A) 2>/dev/null | awk 'NF == 3 {print $$3}' | sort -u); \
	undefined=$$(nm -g --undefined-only $(MELON_LIB_A) 2>/dev/null | awk '{print $$NF}' | sort -u); \
	fail=0; \
	for s in $(MELON_DEFINES); do \
	    echo "$$defined" | grep -qx "$$s" || { echo "error: $(MELON_LIB_A) does not define $$s"; fail=1; }; \
	done; \
	for s in $(MELON_IMPORTS); do \
	    echo "$$undefined" | grep -qx "$$s" || { echo "error: $(MELON_LIB_A) does not import $$s"; fail=1; }; \
	done; \
	own=$$(echo "$$defined" | grep -E '$(MELON_FOREIGN)'); \
	if [ -n "$$own" ]; then echo "error: $(MELON_LIB_A) defines Melon's own symbols:" $$own; fail=1; fi; \
	objs=$$(nm -A -g --defined-only $(MELON_LIB_A) 2>/dev/null | grep -E ' [TDB] ($(shell echo $(MELON_DEFINES) | tr ' ' '|'))$$' \
	    | cut -d: -f2 | sort -u | wc -l); \
	if [ "$$objs" != 1 ]; then echo "error: the API is spread over $$objs objects of $(MELON_LIB_A) (want 1: codegen-units=1)"; fail=1; fi; \
	[ $$fail = 0 ] && echo "check-melon-symbols: $(MELON_LIB_A) defines the IPC/fork API and imports the loop, conf, log and connection helpers"; \
	exit $$fail

# Links a Melon framework program against the melon build and the Melon at MELON_PREFIX:
# static (our archive before libmelon_static.a) and shared (-lmln_ipc before -lmelon).
melon-example: melon
	@test -f $(MELON_PREFIX)/include/mln_framework.h || { echo "error: no Melon at MELON_PREFIX=$(MELON_PREFIX)"; exit 1; }
	@mkdir -p $(MELON_TARGET_DIR)/examples
	$(CC) -std=gnu11 -Wall -Wextra -Werror -I$(MELON_PREFIX)/include examples/melon_burst.c \
	    $(MELON_LIB_A) $(MELON_PREFIX)/lib/libmelon_static.a $(LIBS) \
	    -o $(MELON_TARGET_DIR)/examples/melon_burst_static
	$(CC) -std=gnu11 -Wall -Wextra -Werror -I$(MELON_PREFIX)/include examples/melon_burst.c \
	    -L$(MELON_RELEASE_DIR) -lmln_ipc -L$(MELON_PREFIX)/lib -lmelon \
	    -Wl,-rpath,$(abspath $(MELON_RELEASE_DIR)):$(MELON_PREFIX)/lib \
	    -o $(MELON_TARGET_DIR)/examples/melon_burst
	@echo "built $(MELON_TARGET_DIR)/examples/melon_burst{,_static}; run with BURST_CONF=<conf with framework \"multiprocess\"; worker_proc 1;>"

# The C tests against the melon build and the Melon at MELON_PREFIX (ctests/run.sh,
# CTEST_BUILD=melon, says how); tests that apply only to the standalone build are skipped
# with their reason.
ctest-melon: melon
	CC="$(CC)" LIBS="$(LIBS)" TARGET_DIR="$(TARGET_DIR)" MELON_PREFIX="$(MELON_PREFIX)" \
	    CTEST_BUILD=melon ./ctests/run.sh

memcheck-melon: melon
	CC="$(CC)" LIBS="$(LIBS)" TARGET_DIR="$(TARGET_DIR)" MELON_PREFIX="$(MELON_PREFIX)" \
	    CTEST_BUILD=melon ./ctests/memcheck.sh $(MEMCHECK_TESTS)

# Part of `make test`: CI has no Melon, so it only prints the skip line.
ctest-melon-if-installed:
ifneq ($(MELON_INSTALLED),)
	$(MAKE) --no-print-directory ctest-melon
	$(MAKE) --no-print-directory memcheck-melon
else
	@echo "ctest-melon: skipped (no Melon install at $(MELON_PREFIX))"
	@if [ -n "$$TEST_STAGE_SKIP" ]; then echo "no Melon install at $(MELON_PREFIX)" > "$$TEST_STAGE_SKIP"; fi
endif


clean:
	$(CARGO) clean
