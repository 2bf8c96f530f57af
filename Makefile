# wecom: build the C core for one Lua (LUA=lua5.1|lua5.4|luajit), run the
# demo and the tests. `make demo` and `make test` install what a fresh Debian
# machine lacks when run as root, and print the apt-get line otherwise.

LUA ?= lua5.4
LUAS ?= lua5.1 lua5.4 luajit

ifeq ($(LUA),luajit)
LUA_INCDIR ?= /usr/include/luajit-2.1
else
LUA_INCDIR ?= /usr/include/$(LUA)
endif

CC ?= cc
CFLAGS ?= -O2 -g
WARNINGS = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wpointer-arith -Wformat=2
CURL_LIBS ?= -lcurl
# libcrypto (OpenSSL 3) for the callbacks' SHA-1, AES and random bytes
CRYPTO_LIBS ?= $(shell pkg-config --libs libcrypto 2>/dev/null || echo -lcrypto)
LIBS = $(CURL_LIBS) $(CRYPTO_LIBS)
SRCS = $(wildcard csrc/*.c)
HDRS = $(wildcard csrc/*.h)

BUILD_DIR ?= build/$(LUA)
BUILD = $(BUILD_DIR)
CORE = $(BUILD)/wecom/core.so

# What the demo and the tests need on Debian bookworm (lua-argparse: the wecom
# command; tmux: its spec looks at the progress display in a real terminal).
PACKAGES = gcc libc6-dev make lua5.1 liblua5.1-0-dev lua5.4 liblua5.4-dev luajit2 \
	libluajit2-5.1-dev lua-cjson lua-busted luarocks libcurl4-openssl-dev nginx-light \
	libnginx-mod-http-lua lua-check openssl ca-certificates libssl-dev pkg-config lua-socket \
	lua-argparse tmux lua-sql-sqlite3
# The iCalendar specs check our output with parsers nobody here wrote: libical
# (a C checker built by the tests), Python's recurring-ical-events, and ical.js
# from npm (spec/checkers/package-lock.json) on Debian's node unless one is
# installed (NodeSource's, say); the feed spec talks to nginx with curl.
PACKAGES += libical-dev python3-recurring-ical-events curl \
	$(if $(shell command -v node 2>/dev/null),,nodejs) $(if $(shell command -v npm 2>/dev/null),,npm)

# Many hosts (wecom.cache.redis): a real redis-server, redis-lua for plain
# Lua, and lua-resty-redis for nginx (`make resty-redis`, below).
PACKAGES += redis-server lua-redis

EMULATOR_PORT ?= 18080

.PHONY: all build deps checkers resty-redis test test-one demo emulator emulator-stop lint clean check check-deps werror \
	cppcheck asan valgrind fuzz fuzz-build bench bench-setup bench-callback bench-ical bench-mirror profile

all: build

build: $(CORE)

$(CORE): $(SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) -std=gnu99 $(CFLAGS) $(WARNINGS) $(EXTRA_CFLAGS) -fPIC -fvisibility=hidden \
		-I$(LUA_INCDIR) -shared -o $@ $(SRCS) $(LIBS) $(EXTRA_LDFLAGS)

# Installs missing Debian packages as root; otherwise says what to run.
deps:
	@missing=""; for p in $(PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "wecom: installing Debian packages:$$missing"; \
			apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null \
				|| { echo "wecom: apt-get install failed"; exit 1; }; \
		else \
			echo "wecom: missing Debian packages; run:"; \
			echo "  sudo apt-get update && sudo apt-get install -y$$missing"; \
			exit 1; \
		fi; \
	fi

# The specs' iCalendar checkers: libical's (C) and ical.js (npm, test-only,
# from the lockfile into spec/checkers/node_modules).
CHECKERS_DIR = build/checkers
checkers: $(CHECKERS_DIR)/icalcheck spec/checkers/node_modules/.package-lock.json

$(CHECKERS_DIR)/icalcheck: spec/checkers/icalcheck.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu99 -O1 -g $(WARNINGS) $(EXTRA_CFLAGS) -o $@ $< $$(pkg-config --cflags --libs libical)

spec/checkers/node_modules/.package-lock.json: spec/checkers/package.json spec/checkers/package-lock.json
	cd spec/checkers && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# lua-resty-redis for the nginx specs, from Debian's lua-nginx-redis: that
# package depends on nginx-extras, so it is unpacked here instead of
# installed (nginx-light stays). It holds nginx/redis.lua, Debian's name;
# openresty/resty/redis.lua is the same file under OpenResty's.
RESTY_REDIS = build/resty-redis
resty-redis: $(RESTY_REDIS)/openresty/resty/redis.lua

$(RESTY_REDIS)/openresty/resty/redis.lua:
	@mkdir -p $(RESTY_REDIS)/openresty/resty
	@cd $(RESTY_REDIS) && rm -f lua-nginx-redis_*.deb && { apt-get download lua-nginx-redis >/dev/null 2>&1 || \
		{ [ "$$(id -u)" = 0 ] && apt-get update -q >/dev/null && apt-get download lua-nginx-redis >/dev/null 2>&1; }; } \
		|| { echo "wecom: apt-get download lua-nginx-redis failed (as root it runs apt-get update first)"; exit 1; }
	@dpkg-deb -x $(RESTY_REDIS)/lua-nginx-redis_*.deb $(RESTY_REDIS)
	@cp $(RESTY_REDIS)/usr/share/lua/5.1/nginx/redis.lua $@

# All Lua versions; the last line is the sum: "N passed, N failed". The
# suites mostly wait (latency faults, child processes, servers), so with two
# cores or more they run at once (TEST_JOBS=1: one after another), each one's
# output shown whole when it ends (and kept in build/results/LUA.log).
TEST_JOBS ?= $(shell [ "$$(nproc 2>/dev/null || echo 1)" -ge 2 ] && echo 3 || echo 1)

test: deps checkers resty-redis
	@rm -rf build/results && mkdir -p build/results
	@for l in $(LUAS); do $(MAKE) --no-print-directory build LUA=$$l >/dev/null || exit 1; done
	@if [ "$(TEST_JOBS)" -gt 1 ]; then \
		echo "== busted under $(LUAS), $(TEST_JOBS) at a time"; \
		printf '%s\n' $(LUAS) | xargs -P $(TEST_JOBS) -I @ sh -c \
			'$(MAKE) --no-print-directory test-one LUA=@ >build/results/@.log 2>&1; \
			flock build/results/.show cat build/results/@.log'; \
	else \
		for l in $(LUAS); do $(MAKE) --no-print-directory test-one LUA=$$l || true; done; \
	fi; \
	passed=0; failed=0; \
	for l in $(LUAS); do \
		if [ -f build/results/$$l ]; then read p f e pend < build/results/$$l; f=$$((f + e)); \
		else p=0; f=1; fi; \
		echo "$$l: $$p passed, $$f failed"; \
		passed=$$((passed + p)); failed=$$((failed + f)); \
	done; \
	echo "$$passed passed, $$failed failed"; \
	[ $$failed -eq 0 ]

# One Lua version: build the core for it (and for LuaJIT, which the nginx of
# the OpenResty specs loads) and run busted under it.
test-one: build checkers resty-redis
	@$(MAKE) --no-print-directory build LUA=luajit >/dev/null
	@echo "== busted under $(LUA)"
	@env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 WECOM_TEST_SUMMARY=$(CURDIR)/build/results/$(LUA) \
		$(LUA) /usr/bin/busted $(BUSTED_ARGS)

# Starts an emulator on a free port, runs the demo against it, stops it.
demo: deps build
	@dir=$(CURDIR)/build/demo-emulator; \
	echo "== starting the WeCom emulator (nginx + Lua on 127.0.0.1)"; \
	vars=$$($(LUA) bin/wecom-emulator start --port 0 --dir $$dir) || exit 1; \
	env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 $$vars LUA_PATH="lua/?.lua;lua/?/init.lua;emulator/?.lua;;" \
		LUA_CPATH="$(BUILD)/?.so;;" $(LUA) examples/demo.lua; rc=$$?; \
	$(LUA) bin/wecom-emulator stop --dir $$dir >/dev/null && echo "== emulator stopped"; exit $$rc

emulator: deps
	@$(LUA) bin/wecom-emulator start --port $(EMULATOR_PORT)

emulator-stop:
	@$(LUA) bin/wecom-emulator stop --port $(EMULATOR_PORT)

lint:
	luacheck -q --no-color lua emulator spec examples bench bin/wecom-emulator bin/wecom

# ---- make bench: side by side with the alternatives, into bench/RESULTS.md ----

BENCH_PACKAGES = curl lua-socket valgrind python3-dateutil python3-icalendar

bench-setup: deps
	@$(MAKE) --no-print-directory deps PACKAGES="$(BENCH_PACKAGES)"
	@$(MAKE) --no-print-directory build LUA=lua5.4 >/dev/null
	@$(MAKE) --no-print-directory build LUA=luajit >/dev/null
	@mkdir -p build/bench
	$(CC) -O2 -Wall -Wextra -o build/bench/curl_loop bench/curl_loop.c $(CURL_LIBS)

bench: bench-setup
	env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 lua5.4 bench/run.lua

# The callback row alone, replacing its section of bench/RESULTS.md.
bench-callback: deps
	@$(MAKE) --no-print-directory build LUA=lua5.4 >/dev/null
	@$(MAKE) --no-print-directory build LUA=luajit >/dev/null
	env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 lua5.4 bench/run.lua callback

# Only the iCalendar rows (export_ical, occurrences vs dateutil).
bench-ical: bench-setup
	env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 lua5.4 bench/run.lua ical

# The mirror row alone (the initial pull into SQLite vs paging), replacing its section.
bench-mirror: deps
	@$(MAKE) --no-print-directory build LUA=lua5.4 >/dev/null
	@$(MAKE) --no-print-directory build LUA=luajit >/dev/null
	env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 lua5.4 bench/run.lua mirror

# The per-call hot path under callgrind (instruction counts repeat exactly):
# build/bench/callgrind.{luajit,lua5.4}.out, with the top functions printed.
profile: bench-setup
	env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 lua5.4 bench/run.lua profile

# ---- make check: static checks, sanitizers, valgrind, a short fuzz run ----

CHECK_PACKAGES = valgrind cppcheck clang libclang-rt-14-dev
CHECK_STEPS = werror cppcheck lint asan valgrind fuzz-smoke
# specs that exercise the C core in this process (the others spawn programs)
VALGRIND_SPECS = spec/core_spec.lua spec/schema_spec.lua spec/client_spec.lua spec/helpers_spec.lua spec/policy_spec.lua \
	spec/schedule_spec.lua spec/reliability_spec.lua spec/fuzz_spec.lua spec/callback_spec.lua \
	spec/callback_fuzz_spec.lua spec/finalizer_spec.lua spec/stale_spec.lua spec/framing_spec.lua
ASAN_SPECS = $(VALGRIND_SPECS) spec/emulator_spec.lua spec/demo_spec.lua spec/openresty_spec.lua \
	spec/callback_nginx_spec.lua spec/hardening_spec.lua spec/recurrence_spec.lua spec/ical_spec.lua \
	spec/feed_spec.lua
FUZZ_SECONDS ?= 60
LUA_CHECK = lua5.4

check-deps:
	@$(MAKE) --no-print-directory deps PACKAGES="$(CHECK_PACKAGES)"

# Every step runs; the last line is "N passed, N failed" over the steps.
check: deps check-deps
	@passed=0; failed=0; \
	for step in $(CHECK_STEPS); do \
		echo "== check: $$step"; \
		if $(MAKE) --no-print-directory $$step; then passed=$$((passed + 1)); echo "== $$step: ok"; \
		else failed=$$((failed + 1)); echo "== $$step: FAILED"; fi; \
	done; \
	echo "$$passed passed, $$failed failed"; \
	[ $$failed -eq 0 ]

# -Wall -Wextra -Werror with gcc for every Lua, and with clang for one.
werror:
	@for l in $(LUAS); do $(MAKE) --no-print-directory -B build LUA=$$l BUILD_DIR=build/werror/$$l \
		EXTRA_CFLAGS=-Werror >/dev/null || exit 1; done
	@clang -std=gnu99 -Wall -Wextra -Werror -fPIC -fvisibility=hidden -I/usr/include/lua5.4 -shared \
		-o build/werror/clang-core.so $(SRCS) $(LIBS)
	@echo "C compiles without warnings (gcc: $(LUAS); clang: lua5.4)"

cppcheck:
	cppcheck --enable=warning,style,performance,portability --std=c99 --error-exitcode=1 \
		--inline-suppr --suppress=missingIncludeSystem --quiet -I csrc $(SRCS) fuzz/fuzz_codec.c fuzz/fuzz_framing.c \
		spec/checkers/icalcheck.c

# The suite with the core built with -fsanitize=address,undefined: the
# interpreter is not instrumented, so the ASan runtime is preloaded.
asan:
	@$(MAKE) --no-print-directory -B build LUA=$(LUA_CHECK) BUILD_DIR=build/asan \
		CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all"
	@$(MAKE) --no-print-directory build LUA=luajit >/dev/null
	env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 WECOM_CORE_DIR=build/asan \
		LD_PRELOAD="$$(gcc -print-file-name=libasan.so)" \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(LUA_CHECK) /usr/bin/busted -o utfTerminal $(ASAN_SPECS)

# The same specs under valgrind: no errors, no definite leaks.
valgrind: build
	@$(MAKE) --no-print-directory build LUA=$(LUA_CHECK) >/dev/null
	env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 WECOM_FUZZ_CASES=600 \
		valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 \
		--trace-children=no $(LUA_CHECK) /usr/bin/busted -o utfTerminal $(VALGRIND_SPECS)

# libFuzzer on the C encoder and decoder, and on the reply framing of the
# libcurl session: `make fuzz FUZZ_SECONDS=600` (each).
FUZZ_BIN = build/fuzz/fuzz_codec
FUZZ_FRAMING_BIN = build/fuzz/fuzz_framing
fuzz-build:
	@mkdir -p build/fuzz/corpus build/fuzz/framing-corpus
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Wall -Wextra \
		-I/usr/include/lua5.4 -Icsrc fuzz/fuzz_codec.c $(SRCS) -o $(FUZZ_BIN) -llua5.4 $(LIBS) -lm
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Wall -Wextra \
		-I/usr/include/lua5.4 -Icsrc fuzz/fuzz_framing.c csrc/framing.c csrc/buffer.c -o $(FUZZ_FRAMING_BIN)
	@cp -n fuzz/seeds/* build/fuzz/corpus/ 2>/dev/null || true
	@cp -n fuzz/framing-seeds/* build/fuzz/framing-corpus/ 2>/dev/null || true

fuzz: check-deps fuzz-build
	$(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=1 \
		-artifact_prefix=build/fuzz/ build/fuzz/corpus
	$(FUZZ_FRAMING_BIN) -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=1 \
		-artifact_prefix=build/fuzz/framing- build/fuzz/framing-corpus

# The short run of `make check`: libFuzzer's progress goes to a log, shown
# (its end) only when a run fails.
fuzz-smoke: check-deps fuzz-build
	@for t in codec framing; do \
		bin=build/fuzz/fuzz_$$t; corpus=build/fuzz/corpus; prefix=build/fuzz/; \
		if [ $$t = framing ]; then corpus=build/fuzz/framing-corpus; prefix=build/fuzz/framing-; fi; \
		if $$bin -max_total_time=20 -max_len=4096 -print_final_stats=1 -artifact_prefix=$$prefix \
			$$corpus >build/fuzz/smoke-$$t.log 2>&1; then \
			echo "fuzz_$$t: $$(grep -E '^stat::number_of_executed_units' build/fuzz/smoke-$$t.log \
				| sed 's/.*: *//') runs in 20 s, no crash"; \
		else tail -n 60 build/fuzz/smoke-$$t.log; echo "fuzz_$$t: FAILED (log: build/fuzz/smoke-$$t.log)"; \
			exit 1; fi; \
	done

clean:
	rm -rf build csrc/*.o *.so wecom
