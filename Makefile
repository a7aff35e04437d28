# userswitch: build, demo, test and install on a Debian machine (run as root for demo/test/install).
#
#   make deps     install the Debian packages the build, the demo and the tests need
#   make build    release build of userswitchd and userswitchctl
#   make demo     deps + build + a lab of network namespaces wired to the switch (tools/lab/demo.sh)
#   make test     deps + debug build + every test target (integration tests need root)
#   make install  binaries to $(DESTDIR)$(PREFIX)/sbin and $(DESTDIR)$(PREFIX)/bin
#   make clean    remove build products

SHELL := /bin/bash
# Swift lives in /opt/swift on the project's machines and is not always on PATH (CI, sudo).
export PATH := /opt/swift/usr/bin:$(PATH)

SWIFT ?= swift
# Extra flags for every swift build/test, e.g. SWIFTFLAGS=--scratch-path=.build-mine
SWIFTFLAGS ?=
PREFIX ?= /usr/local
DESTDIR ?=
RELEASE_DIR = $(shell $(SWIFT) build $(SWIFTFLAGS) -c release --show-bin-path 2>/dev/null || echo .build/release)

# Debian packages: build (libpcap, liburing), demo and integration tests (iproute2, ping,
# tcpdump, python3 with scapy), measurements (iperf3, ethtool, netsniff-ng).
DEB_PACKAGES = libpcap-dev liburing-dev pkg-config iproute2 iputils-ping tcpdump iperf3 ethtool \
               python3 python3-scapy netsniff-ng

.PHONY: all deps build demo test install uninstall clean

all: build

# apt-get update only when something is missing, so that `make deps` is fast and works offline on
# a machine that already has everything.
deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q '^install ok installed$$' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" -ne 0 ]; then echo "make deps: run as root to install:$$missing" >&2; exit 1; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	  echo "deps: all Debian packages present"; \
	fi

build:
	$(SWIFT) build $(SWIFTFLAGS) -c release

demo: deps build
	USERSWITCH_BIN="$(RELEASE_DIR)" tools/lab/demo.sh

# The integration tests start the debug userswitchd/userswitchctl that `swift build` made next to
# the test bundle. USERSWITCH_INTEGRATION_REQUIRED turns a missing prerequisite (not root, no
# binaries) into a failure instead of a skip, so `make test` cannot pass without running them.
test: deps
	$(SWIFT) build $(SWIFTFLAGS) --build-tests
	USERSWITCH_INTEGRATION_REQUIRED=1 $(SWIFT) test $(SWIFTFLAGS)

install: build
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(RELEASE_DIR)/userswitchd $(DESTDIR)$(PREFIX)/sbin/userswitchd
	install -m 0755 $(RELEASE_DIR)/userswitchctl $(DESTDIR)$(PREFIX)/bin/userswitchctl

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/sbin/userswitchd $(DESTDIR)$(PREFIX)/bin/userswitchctl

clean:
	$(SWIFT) package clean || true
	rm -rf .build Benchmarks/.build .build-bench
