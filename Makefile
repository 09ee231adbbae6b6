# make test runs everything CI runs: formatting, vet, staticcheck, the Go tests
# of every module with the race detector, and the dashboard's unit and browser
# tests. It installs what it needs (npm ci; Debian's chromium when missing and
# running as root).

GO          ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
UI          := examples/dashboard/ui
EXPORTERS   := exporters/prometheus exporters/otel
# Modules of their own that have no tests but are vetted and staticchecked.
OTHERMODS   := internal/bench/peers

.PHONY: test lint test-go test-exporters test-ui e2e e2e-load ui ui-check bench soak

test: lint test-go test-exporters test-ui e2e

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "not gofmt'd: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	@for m in $(EXPORTERS) $(OTHERMODS); do (cd $$m && $(GO) vet ./... && $(STATICCHECK) ./...) || exit 1; done

test-go:
	$(GO) test -race -count=1 -timeout 10m ./...
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./...

test-exporters:
	@for m in $(EXPORTERS); do (cd $$m && $(GO) test -race -count=1 ./...) || exit 1; done

$(UI)/node_modules/.package-lock.json: $(UI)/package-lock.json
	cd $(UI) && npm ci --no-audit --no-fund

# test-ui runs the store's unit tests and fails when the committed build in
# dist/ is not what the sources build to.
test-ui: $(UI)/node_modules/.package-lock.json ui-check
	cd $(UI) && npm test

ui-check: $(UI)/node_modules/.package-lock.json
	./scripts/ui-stale.sh

# e2e drives Debian's chromium against the real examples/dashboard program,
# with real traffic through its proxy; the last test holds 9,000 live
# connections and prints what it measured in the page. Screenshots and figures
# go to $(UI)/test-results/.
e2e: $(UI)/node_modules/.package-lock.json
	./scripts/ensure-chromium.sh
	cd $(UI) && npm run e2e

# e2e-load runs only the 9,000-connection browser test (E2E_LOAD_CONNS=N for
# another count).
e2e-load: $(UI)/node_modules/.package-lock.json
	./scripts/ensure-chromium.sh
	cd $(UI) && npm run e2e:load

# ui rebuilds the embedded dashboard (commit the result).
ui: $(UI)/node_modules/.package-lock.json
	cd $(UI) && npm run build

bench:
	$(GO) run ./internal/bench

# soak runs the long soak (-soak, defined by the root package's tests: it
# goes after the package, which go test would otherwise take for its value),
# the fault and hostile-input suites, and each fuzz target for FUZZTIME.
FUZZTIME ?= 60s
soak: e2e-load
	$(GO) test -race -count=1 -timeout 30m -run 'Soak|Fault|Hostile' . -soak
	$(GO) test -race -count=1 -timeout 10m -run 'Soak|Fault|Hostile' ./hub/...
	$(GO) test -run '^$$' -fuzz '^FuzzParseGoproxy$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzHTTPErrorLog$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzHandle$$' -fuzztime $(FUZZTIME) ./hub
	$(GO) test -run '^$$' -fuzz '^FuzzConnJSONIsEncodingJSON$$' -fuzztime $(FUZZTIME) ./hub
