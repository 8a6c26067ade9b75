# sipterm: `make run` starts the TUI, `make test` runs every test. Both install the Debian
# packages they need first (apt-get as root, sudo otherwise), only when missing.

BUILD_DEPS := libasound2-dev libopus-dev pkg-config
TEST_DEPS  := sip-tester kamailio kamailio-tls-modules kamailio-presence-modules baresip-core tshark tmux pulseaudio pulseaudio-utils \
              iproute2 nftables dnsmasq-base espeak-ng coturn
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CARGO ?= cargo

.PHONY: run test build deps test-deps lint sans-io fmt bench bench-latency bench-parse fuzz clean

define install_missing
	@missing=""; for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call install_missing,$(BUILD_DEPS))

test-deps: deps
	$(call install_missing,$(TEST_DEPS))
	@# tests/srtp.rs captures loopback with dumpcap (tshark's): as non-root it needs CAP_NET_RAW.
	@if [ "$$(id -u)" != 0 ] && ! /usr/sbin/getcap /usr/bin/dumpcap | grep -q cap_net_raw; then \
		echo "granting dumpcap CAP_NET_RAW for the loopback capture in tests/srtp.rs"; \
		$(SUDO) /usr/sbin/setcap cap_net_raw,cap_net_admin=eip /usr/bin/dumpcap; fi

build: deps
	$(CARGO) build --release

run: build
	./target/release/sipterm

lint: sans-io
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# The protocol core takes time and bytes from outside (DESIGN.md): no clock, no sockets, no tokio.
sans-io:
	@if grep -rnE 'Instant::now|SystemTime::now|tokio::|UdpSocket|TcpStream' src/sip/ src/dns/ src/diagnosis/ src/policy/ src/ice/; then \
		echo "src/sip, src/dns, src/diagnosis, src/policy and src/ice must stay sans-IO"; exit 1; fi

# Debug profile with optimized dependencies (see Cargo.toml): one build serves every test.
test: test-deps sans-io
	$(CARGO) test --no-fail-fast

fmt:
	$(CARGO) fmt --all

# sipterm vs baresip: a 30 s Opus call each to a sipp echo, CPU s, peak RSS, round-trip latency
# (writes bench/results.md); then the round trip through sound devices (bench-latency, 30 s).
# Not part of `make test` (about 3 minutes). See README.md "Benchmark".
bench: test-deps
	$(CARGO) build --release
	python3 bench/bench.py --sipterm target/release/sipterm --out bench/results.md
	python3 bench/device_latency.py --sipterm target/release/sipterm --seconds $(LATENCY_SECONDS)

# Round trip through real sound devices (PulseAudio null sinks; left channel = microphone path,
# right = speaker path, one recording): calibrated against a module-loopback, then an Opus call
# to a sipp echo. Not part of `make test`. LATENCY_SECONDS=600 for the 10-minute check.
LATENCY_SECONDS ?= 30
bench-latency: test-deps
	$(CARGO) build --release
	python3 bench/device_latency.py --sipterm target/release/sipterm --seconds $(LATENCY_SECONDS)

# SIP parse/serialize against the rsip crate (divan): `cargo bench --bench sip_parse`.
bench-parse:
	$(CARGO) bench --bench sip_parse

# cargo-fuzz targets for SIP, SDP, RTP/RTCP/jitter buffer (and STUN): FUZZ_SECONDS each (default
# 60), results in fuzz/results.md. Not part of `make test`. Needs C++ (build-essential) for libFuzzer.
FUZZ_SECONDS ?= 60
fuzz: deps
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh

clean:
	$(CARGO) clean
