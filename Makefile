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
SRCS = $(wildcard csrc/*.c)
HDRS = $(wildcard csrc/*.h)

BUILD = build/$(LUA)
CORE = $(BUILD)/wecom/core.so

# What the demo and the tests need on Debian bookworm.
PACKAGES = gcc libc6-dev make lua5.1 liblua5.1-0-dev lua5.4 liblua5.4-dev luajit2 \
	libluajit2-5.1-dev lua-cjson lua-busted luarocks libcurl4-openssl-dev nginx-light \
	libnginx-mod-http-lua lua-check openssl ca-certificates

EMULATOR_PORT ?= 18080

.PHONY: all build deps test test-one demo emulator emulator-stop lint clean

all: build

build: $(CORE)

$(CORE): $(SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) -std=gnu99 $(CFLAGS) $(WARNINGS) $(EXTRA_CFLAGS) -fPIC -fvisibility=hidden \
		-I$(LUA_INCDIR) -shared -o $@ $(SRCS) $(CURL_LIBS) $(EXTRA_LDFLAGS)

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

# All Lua versions; the last line is the sum: "N passed, N failed".
test: deps
	@rm -rf build/results && mkdir -p build/results; \
	for l in $(LUAS); do \
		$(MAKE) --no-print-directory test-one LUA=$$l || true; \
	done; \
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
test-one: build
	@$(MAKE) --no-print-directory build LUA=luajit >/dev/null
	@echo "== busted under $(LUA)"
	@env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 WECOM_TEST_SUMMARY=$(CURDIR)/build/results/$(LUA) \
		$(LUA) /usr/bin/busted $(BUSTED_ARGS)

# Starts an emulator on a free port, runs the demo against it, stops it.
demo: deps build
	@dir=$(CURDIR)/build/demo-emulator; \
	echo "== starting the WeCom emulator (nginx + Lua on 127.0.0.1)"; \
	vars=$$($(LUA) bin/wecom-emulator start --port 0 --dir $$dir) || exit 1; \
	env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 $$vars LUA_PATH="lua/?.lua;lua/?/init.lua;;" \
		LUA_CPATH="$(BUILD)/?.so;;" $(LUA) examples/demo.lua; rc=$$?; \
	$(LUA) bin/wecom-emulator stop --dir $$dir >/dev/null && echo "== emulator stopped"; exit $$rc

emulator: deps
	@$(LUA) bin/wecom-emulator start --port $(EMULATOR_PORT)

emulator-stop:
	@$(LUA) bin/wecom-emulator stop --port $(EMULATOR_PORT)

lint:
	luacheck -q --no-color lua spec examples bin/wecom-emulator

clean:
	rm -rf build csrc/*.o *.so
