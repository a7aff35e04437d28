# userswitch: build, demo, test and install on a Debian machine (run as root for demo/test/install).
#
#   make deps     install the Debian packages the build, the demo and the tests need
#   make build    release build of userswitchd and userswitchctl
#   make demo     deps + build + a lab of network namespaces wired to the switch (tools/lab/demo.sh)
#   make test     deps + debug build + every test target (integration tests need root)
#   make bench    benchmark lab: userswitch vs Linux bridge vs Open vSwitch (QUICK=1: a few minutes)
#   make install  binaries to $(DESTDIR)$(PREFIX)/sbin and /bin, Xen hotplug scripts to
#                 $(DESTDIR)$(XEN_SCRIPTS), the systemd unit, docs to $(DESTDIR)$(PREFIX)/share/doc/userswitch
#   make clean    remove build products

SHELL := /bin/bash
# Swift lives in /opt/swift on the project's machines and is not always on PATH (CI, sudo).
export PATH := /opt/swift/usr/bin:$(PATH)

SWIFT ?= swift
# Extra flags for every swift build/test, e.g. SWIFTFLAGS=--scratch-path=.build-mine
SWIFTFLAGS ?=
PREFIX ?= /usr/local
DESTDIR ?=
XEN_SCRIPTS ?= /etc/xen/scripts
SYSTEMD_UNIT_DIR ?= /etc/systemd/system
DOC_DIR ?= $(PREFIX)/share/doc/userswitch
DOCS = README.md $(wildcard docs/*.md)
RELEASE_DIR = $(shell $(SWIFT) build $(SWIFTFLAGS) -c release --show-bin-path 2>/dev/null || echo .build/release)

# Debian packages: build (libpcap, liburing), demo and integration tests (iproute2, ping,
# tcpdump, python3 with scapy, ebtables-nft from iptables for the filter differential, arping
# for the routed tests, isc-dhcp-client as the guest of the DHCP server test),
# measurements (iperf3, ethtool, netsniff-ng).
DEB_PACKAGES = libpcap-dev liburing-dev pkg-config iproute2 iputils-ping tcpdump iperf3 ethtool \
               python3 python3-scapy netsniff-ng iptables iputils-arping isc-dhcp-client

.PHONY: all deps build demo test bench install uninstall clean

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

# Side-by-side measurements (tools/bench/README.md, docs/performance.md). QUICK=1 runs one short
# round; BENCH_ARGS passes options to tools/bench/bench.py (e.g. --switches, --workloads).
bench: deps build
	USERSWITCH_BIN="$(RELEASE_DIR)" tools/bench/run.sh $(if $(QUICK),--quick) $(BENCH_ARGS)

# The unit's ExecStart names /usr/local/sbin; with another PREFIX it is rewritten on the way.
# The saved configuration (/var/lib/userswitch) is never touched by install or uninstall.
install: build
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(XEN_SCRIPTS) \
	           $(DESTDIR)$(SYSTEMD_UNIT_DIR) $(DESTDIR)$(DOC_DIR)
	install -m 0755 $(RELEASE_DIR)/userswitchd $(DESTDIR)$(PREFIX)/sbin/userswitchd
	install -m 0755 $(RELEASE_DIR)/userswitchctl $(DESTDIR)$(PREFIX)/bin/userswitchctl
	install -m 0755 tools/xen/vif-userswitch $(DESTDIR)$(XEN_SCRIPTS)/vif-userswitch
	install -m 0755 tools/xen/network-userswitch $(DESTDIR)$(XEN_SCRIPTS)/network-userswitch
	sed -e 's|/usr/local/sbin/|$(PREFIX)/sbin/|g' -e 's|/usr/local/share/doc/userswitch|$(DOC_DIR)|g' \
	    tools/systemd/userswitchd.service > $(DESTDIR)$(SYSTEMD_UNIT_DIR)/userswitchd.service
	chmod 0644 $(DESTDIR)$(SYSTEMD_UNIT_DIR)/userswitchd.service
	install -m 0644 $(DOCS) $(DESTDIR)$(DOC_DIR)/
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then \
	  systemctl daemon-reload; \
	  echo "installed; enable with: systemctl enable --now userswitchd"; \
	fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/sbin/userswitchd $(DESTDIR)$(PREFIX)/bin/userswitchctl
	rm -f $(DESTDIR)$(XEN_SCRIPTS)/vif-userswitch $(DESTDIR)$(XEN_SCRIPTS)/network-userswitch
	rm -f $(DESTDIR)$(SYSTEMD_UNIT_DIR)/userswitchd.service
	rm -rf $(DESTDIR)$(DOC_DIR)

clean:
	$(SWIFT) package clean || true
	rm -rf .build Benchmarks/.build .build-bench
