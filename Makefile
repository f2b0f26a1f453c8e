# lnm — build, run, test. `make run` and `make test` are the two commands a newcomer needs.
GO       ?= go
BIN      ?= bin/lnm
CONFIG   ?= examples/quickstart.conf
# The version `lnm version` prints: the git tag, commits since it and the commit, -dirty
# for uncommitted changes. Outside a git checkout it is empty and lnm falls back to the
# build's VCS information.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null)
LDFLAGS  := -X main.version=$(VERSION)
# A count, not a duration: Go 1.26's fuzz coordinator can fail a target with "context
# deadline exceeded" when a duration runs out mid-execution (golang/go#75804, fixed in Go
# 1.27); a count has no deadline to race. 100,000 executions take 3-15 s per target here.
FUZZTIME ?= 100000x
# Debian packages the tests drive as real clients: dig, kdig, curl, openssl, mosquitto_pub, ip,
# the DHCP clients udhcpc (busybox) and dhclient (isc-dhcp-client), headless chromium for the
# console's browser tests; zsh checks the completion
# script and lintian the package.
TEST_DEBS := iproute2 bind9-dnsutils knot-dnsutils curl wget openssl mosquitto-clients ca-certificates busybox isc-dhcp-client chromium zsh lintian

# Every native fuzz target, as package:Target; `make test` runs each for FUZZTIME executions.
FUZZ := \
	./clienthello:FuzzParseClientHello \
	./clienthello:FuzzReadClientHello \
	./resolver:FuzzServeDNS \
	./resolver:FuzzFastPath \
	./internal/dnswire:FuzzParse \
	./config:FuzzParse \
	./onboard:FuzzImportLnm \
	./audit:FuzzAppendQuoted \
	./dhcp:FuzzDecide \
	./levelid:FuzzAccept \
	./httpfront:FuzzReadHead

# The appliance image (vm-images/). DEB names the lnm package to put in it; left empty, `make
# image` builds it with `make deb` first and takes the newest bin/lnm_*_amd64.deb.
DEB       ?=
IMAGE_DIR ?= bin/image
# Debian packages that building and boot-testing the image use.
IMAGE_DEBS := mmdebstrap e2fsprogs dosfstools mtools fdisk qemu-utils qemu-system-x86 ovmf \
	busybox dnsmasq-base openssl bind9-dnsutils curl iproute2

.PHONY: build run check test unit fuzz deb deb-test lint bench bench-peers deps demo clean image image-test image-deps

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/lnm

run: build
	@echo
	@echo "lnm is starting on $(CONFIG). From another terminal try:"
	@echo "  dig @127.0.0.1 -p 5353 www.example.com          # the box's address (127.0.0.1)"
	@echo "  dig @127.0.0.1 -p 5353 www.google.com           # NXDOMAIN: not on the list"
	@echo "  curl --connect-to ::127.0.0.1:8443 https://www.example.com/   # through the box"
	@echo "  curl --connect-to ::127.0.0.1:8443 https://www.google.com/    # refused by the box"
	@echo "Stop with Ctrl-C."
	@echo
	$(BIN) run --config $(CONFIG)

check: build
	$(BIN) check --config $(CONFIG)

# test installs the real clients the tests use (when root and missing), then runs every test
# (network-namespace tests need root and skip loudly without it), then each fuzz target
# briefly, then builds the Debian package and checks it.
test: deps unit fuzz deb-test

unit:
	$(GO) test -race -count=1 ./...

fuzz:
	@set -e; for f in $(FUZZ); do \
		pkg=$${f%%:*}; target=$${f##*:}; \
		echo "fuzz $$pkg $$target for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$target\$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

deps:
	@missing=""; \
	for cmd in ip dig kdig curl wget openssl mosquitto_pub busybox dhclient chromium zsh lintian; do command -v $$cmd >/dev/null || missing="$$missing $$cmd"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing test clients (missing:$$missing)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_DEBS) >/dev/null; \
		else \
			echo "WARNING: missing$$missing; tests that drive them will skip. Install: sudo apt-get install $(TEST_DEBS)"; \
		fi; \
	fi
	$(GO) mod download

# deb builds bin/lnm_VERSION_amd64.deb with dpkg-deb (packaging/build-deb.sh says what is in
# it and how VERSION follows git describe); deb-test builds one into a temp dir and checks it.
deb:
	GO=$(GO) packaging/build-deb.sh bin

deb-test:
	GO=$(GO) packaging/test-deb.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# demo (root) builds the three-level namespace lab, sends a device's traffic through it and
# prints what each box's audit trail says, then tears the lab down.
demo: deps
	LNM_DEMO=1 $(GO) test -count=1 -run '^TestDemo$$' -v ./cmd/lnm | grep -v -E '^(=== RUN|--- PASS|PASS|ok )'

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

# image (root) builds the appliance disk image: $(IMAGE_DIR)/lnm-amd64.raw and .qcow2.
image: image-deps $(if $(DEB),,deb)
	@deb="$(DEB)"; deb=$${deb:-$$(ls -t bin/lnm_*_amd64.deb 2>/dev/null | head -1)}; \
	start=$$(date +%s); \
	vm-images/build.sh --deb "$$deb" --out $(IMAGE_DIR) && \
	echo "image: built in $$(( $$(date +%s) - start )) s"

# image-test (root) builds the image, boots it twice in QEMU (TCG, no KVM) between two network
# namespaces and checks it with real clients; see vm-images/README.md. 12 to 20 minutes here.
image-test: image build
	@deb="$(DEB)"; deb=$${deb:-$$(ls -t bin/lnm_*_amd64.deb 2>/dev/null | head -1)}; \
	vm-images/boot-test.sh --image $(IMAGE_DIR)/lnm-amd64.raw --deb "$$deb" --lnm $(BIN) --logs bin/image-test

image-deps:
	@missing=""; \
	for cmd in mmdebstrap mkfs.ext4 mkfs.vfat mcopy sfdisk qemu-img qemu-system-x86_64 busybox dnsmasq openssl dig curl ip; do \
		command -v $$cmd >/dev/null || missing="$$missing $$cmd"; done; \
	[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || missing="$$missing ovmf"; \
	if [ -n "$$missing" ]; then \
		echo "installing image tools (missing:$$missing)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(IMAGE_DEBS) >/dev/null; \
	fi

# bench-peers (root, Debian 12) installs unbound, dnsmasq, HAProxy, nginx, sniproxy and dnsperf
# when missing, builds CoreDNS and lnm into a temp dir and measures them side by side on
# loopback (bench/README.md). Not part of `make test`. BENCH_FLAGS shortens a run, e.g.
# BENCH_FLAGS='-rounds 1 -bulk-mib 256'; BENCH_ROUNDS sets the rounds.
BENCH_FLAGS ?=
bench-peers:
	$(GO) run ./bench $(BENCH_FLAGS)

clean:
	rm -rf bin
