GO       ?= go
BIN      ?= fedgate
FUZZTIME ?= 30s

.PHONY: all build run test test-integration test-unit test-peers test-prometheus3 bench fuzz vet clean

all: build

build:
	$(GO) build -o $(BIN) .

# Starts fedgate on the example config: push to :9095, scrape :9096/federate.
run: build
	./$(BIN) --config.file=examples/fedgate.yml --storage.path=data/ \
		--web.listen-address=127.0.0.1:9095 --web.internal-listen-address=127.0.0.1:9096

# Everything: unit tests, end-to-end tests against real Prometheus and
# vmagent (installed first if missing), and every benchmark run once.
test: test-peers test-prometheus3
	$(GO) vet ./...
	$(GO) test -race -count=1 -skip='^TestIntegration' ./...
	$(GO) test -count=1 -run='CostLittle|CostsNothing|Alloc|Streams' ./...   # allocation bounds, without the race detector's overhead
	$(GO) test -count=1 -run='^$$' -bench=. -benchtime=1x ./...

# Several fedgate instances in a ring, with real Prometheus Agents and a
# central Prometheus: forwarding, owner crashes, membership changes.
test-integration: test-peers
	$(GO) test -race -count=1 -run='^TestIntegration' .

test-unit:
	$(GO) test -race -count=1 -short ./...

test-peers:
	@bash scripts/install-test-peers.sh

# Prometheus 3.x peer (Debian ships only 2.x): built once from its Go module
# into $${FEDGATE_CACHE:-~/.cache/fedgate}; a few minutes the first time.
test-prometheus3:
	@GO=$(GO) bash scripts/build-prometheus3.sh

bench:
	$(GO) test -run='^$$' -bench=. -benchmem -cpu=1 ./...

# Every fuzz target of ./fuzz/ in turn, FUZZTIME each. Go 1.26's fuzzing
# engine can fail a target with a bare "context deadline exceeded" as
# -fuzztime runs out (go.dev/issue/75804, fixed in Go 1.27): that failure,
# and only it (no failing input written), is run once more.
fuzz:
	@targets=$$($(GO) test -list='^Fuzz' ./fuzz/ | grep '^Fuzz') || exit 1; \
	log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
	for t in $$targets; do \
		for try in 1 2; do \
			echo "== $$t"; \
			$(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) ./fuzz/ >"$$log" 2>&1; rc=$$?; \
			cat "$$log"; \
			[ $$rc -eq 0 ] && break; \
			if [ $$try -eq 1 ] && grep -qx '    context deadline exceeded' "$$log" && ! grep -q 'Failing input written' "$$log"; then \
				echo "== $$t: the fuzzing engine's -fuzztime race (go.dev/issue/75804), no failing input: once more"; \
				continue; \
			fi; \
			exit 1; \
		done; \
	done

clean:
	rm -rf $(BIN) data/
