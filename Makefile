# Build for imapd, storaged, imapctl and their shared libraries.
#
#   make            release-ish build into build/
#   make asan       the same with AddressSanitizer + UBSan into build-asan/
#   make test       unit tests, then protocol tests against a real stack
#   make unit       C unit tests only
#   make fuzz       run the command-parser and MIME fuzzers, FUZZ_SECONDS each
#   make deps       install missing Debian packages (apt-get)
#   make run        start the local stack with a demo account
#   make bench      benchmarks that print figures

CC       ?= gcc
BUILD    ?= build
SANFLAGS ?=
OPT      ?= -O2 -g
WFLAGS    = $(OPT) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wno-unused-parameter -fno-strict-aliasing \
            -pthread -I. $(SANFLAGS)
PKGS      = libpq libssl libcrypto libnats
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -I$(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lpq -lssl -lcrypto -lnats)
LDLIBS    = $(PKG_LIBS) -lev -lcrypt -lpthread -lm
LDFLAGS  += $(SANFLAGS)
ALL_CFLAGS = $(WFLAGS) $(PKG_CFLAGS) $(CFLAGS)

PYTHON   ?= /usr/bin/python3
FUZZ_SECONDS ?= 60

# Sources: everything in a folder except tests, fuzz targets and the
# programs listed separately.
lib_src     := $(filter-out lib/test_%.c lib/fuzz_%.c,$(wildcard lib/*.c))
notify_src  := $(filter-out notify/test_% notify/fuzz_% notify/notify_tail.c,$(wildcard notify/*.c))
imapd_src   := $(filter-out imapd/test_% imapd/fuzz_% imapd/imapctl.c,$(wildcard imapd/*.c))
storaged_src:= $(filter-out storaged/test_% storaged/fuzz_%,$(wildcard storaged/*.c))
sql_src     := $(filter-out sql/test_%,$(wildcard sql/*.c))
imapctl_src := imapd/imapctl.c $(sql_src)
test_src    := $(wildcard lib/test_*.c notify/test_*.c imapd/test_*.c storaged/test_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

# imapd's objects without main(), so unit tests can link them.
imapd_core  := $(filter-out imapd/main.c,$(imapd_src))
storaged_core := $(filter-out storaged/main.c,$(storaged_src))

BINS = $(BUILD)/imapd $(BUILD)/storaged $(BUILD)/imapctl $(BUILD)/unit_tests
ifneq ($(wildcard notify/notify_tail.c),)
BINS += $(BUILD)/notify-tail
endif

.PHONY: all asan ubsan test unit pytest fuzz deps run stop bench clean

all: $(BINS)

$(BUILD)/libmail.a: $(call obj,$(lib_src))
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libnotify.a: $(call obj,$(notify_src))
	@rm -f $@
	ar rcs $@ $^ $(if $^,,)

$(BUILD)/imapd: $(call obj,$(imapd_src)) $(BUILD)/libnotify.a $(BUILD)/libmail.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/storaged: $(call obj,$(storaged_src)) $(BUILD)/libnotify.a $(BUILD)/libmail.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/imapctl: $(call obj,$(imapctl_src)) $(BUILD)/libmail.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/notify-tail: $(call obj,notify/notify_tail.c) $(BUILD)/libnotify.a $(BUILD)/libmail.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/unit_tests: $(call obj,$(test_src) tests/unit/runner.c $(imapd_core) $(storaged_core)) $(BUILD)/libnotify.a $(BUILD)/libmail.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -g" \
	  SANFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

ubsan: asan

unit: $(BUILD)/unit_tests
	$(BUILD)/unit_tests

# Protocol tests start their own stack in a temporary directory.
pytest: all
	MAIL_BUILD=$(BUILD) $(PYTHON) -m pytest -q tests

# The full suite: unit and protocol tests on the normal build, then the
# same under AddressSanitizer and UndefinedBehaviorSanitizer.
test:
	deploy/install-deps
	$(MAKE) all asan
	$(BUILD)/unit_tests
	build-asan/unit_tests
	MAIL_BUILD=$(BUILD) $(PYTHON) -m pytest -q tests
	MAIL_BUILD=build-asan $(PYTHON) -m pytest -q tests

fuzz:
	@mkdir -p build-fuzz
	clang -std=c11 -D_GNU_SOURCE -g -O1 -I. -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -o build-fuzz/fuzz_parser imapd/fuzz_parser.c imapd/parser.c imapd/seqset.c lib/arena.c lib/buf.c lib/util.c
	@mkdir -p build-fuzz/corpus
	cp -n imapd/fuzz_corpus/* build-fuzz/corpus/ 2>/dev/null || true
	build-fuzz/fuzz_parser -max_total_time=$(FUZZ_SECONDS) -max_len=4096 build-fuzz/corpus
	clang -std=c11 -D_GNU_SOURCE -g -O1 -I. -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -o build-fuzz/fuzz_mime lib/fuzz_mime.c lib/mime.c lib/mime_check.c lib/arena.c lib/buf.c lib/util.c
	@mkdir -p build-fuzz/corpus-mime
	build-fuzz/fuzz_mime -max_total_time=$(FUZZ_SECONDS) -max_len=16384 build-fuzz/corpus-mime

deps:
	deploy/install-deps

run:
	deploy/install-deps
	$(MAKE) all
	deploy/local/stack up --demo

stop:
	deploy/local/stack down

bench: all
	MAIL_BUILD=$(BUILD) $(PYTHON) tests/bench/run.py

clean:
	rm -rf build build-asan build-fuzz
