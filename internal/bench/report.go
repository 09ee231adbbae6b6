package main

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"
)

// results are every sample of a run, by scenario and target name.
type results struct {
	opts      options
	targets   []*target
	scenarios []scenario
	samples   map[string]map[string][]sample // scenario -> target -> one per repetition
	mem       map[string][][3]float64        // target -> heap and stack bytes per idle tunnel and idle CPU (cores), one per repetition
	slow      map[string][]slowSample        // target -> one per repetition
	hubNote   string
	notes     []string
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// summary is the median of a target's samples for one scenario.
type summary struct {
	rate, p50, p99 float64 // units/s; seconds
	spread         float64 // (max-min)/median of rate
	cpuPerUnit     float64 // seconds of proxy CPU per unit (0 for direct)
	peakRSS        uint64  // max over repetitions
	errs           int64
	firstErr       error
	ok             bool
}

func summarize(ss []sample) summary {
	if len(ss) == 0 {
		return summary{}
	}
	var rates, p50, p99, cpu []float64
	var sum summary
	for _, s := range ss {
		rates = append(rates, s.rate)
		p50 = append(p50, s.p50.Seconds())
		p99 = append(p99, s.p99.Seconds())
		if s.units > 0 && s.cpu > 0 {
			cpu = append(cpu, s.cpu.Seconds()/float64(s.units))
		}
		sum.peakRSS = max(sum.peakRSS, s.peakRSS)
		sum.errs += s.errs
		if sum.firstErr == nil {
			sum.firstErr = s.firstErr
		}
	}
	sum.rate, sum.p50, sum.p99, sum.cpuPerUnit = median(rates), median(p50), median(p99), median(cpu)
	if sum.rate > 0 {
		sum.spread = (slices.Max(rates) - slices.Min(rates)) / sum.rate
	}
	sum.ok = sum.rate > 0
	return sum
}

func (s sample) brief(sc scenario) string {
	out := formatRate(sc, s.rate)
	if sc.latency {
		out += fmt.Sprintf(" p50 %s p99 %s", formatDur(s.p50.Seconds()), formatDur(s.p99.Seconds()))
	}
	if s.cpu > 0 {
		out += fmt.Sprintf(" cpu %.2fs", s.cpu.Seconds())
	}
	if s.errs > 0 {
		out += fmt.Sprintf(" errors %d (%v)", s.errs, s.firstErr)
	}
	return out
}

func formatRate(sc scenario, rate float64) string {
	if sc.bytes {
		return fmt.Sprintf("%.0f MB/s", rate/1e6)
	}
	return fmt.Sprintf("%.0f %s", rate, sc.unit)
}

func formatDur(secs float64) string {
	switch {
	case secs == 0:
		return "–"
	case secs < 1e-3:
		return fmt.Sprintf("%.0f µs", secs*1e6)
	case secs < 1:
		return fmt.Sprintf("%.2f ms", secs*1e3)
	}
	return fmt.Sprintf("%.2f s", secs)
}

// formatCPU gives the proxy's CPU per request or message in µs, per GB in
// seconds.
func formatCPU(sc scenario, perUnit float64) string {
	if perUnit == 0 {
		return "–"
	}
	if sc.bytes {
		return fmt.Sprintf("%.2f s/GB", perUnit*1e9)
	}
	return fmt.Sprintf("%.0f µs/%s", perUnit*1e6, strings.TrimSuffix(sc.unit, "/s"))
}

// pairedRatio is the median over repetitions of a's rate over b's in the
// same repetition: the two ran one right after the other, so a change in the
// machine's load between repetitions (it is shared) cancels out. It is 0
// when either has no rate.
func pairedRatio(a, b []sample) float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if a[i].rate > 0 && b[i].rate > 0 {
			rs = append(rs, a[i].rate/b[i].rate)
		}
	}
	return median(rs)
}

func formatRatio(r float64) string {
	if r == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", r)
}

// bulkScenarios are where proxywatch must at least match bare goproxy.
var bulkScenarios = []string{"http-download", "http-download-8", "http-upload", "tunnel-bulk", "mitm-bulk"}

// memPer returns the median heap and stack growth per idle tunnel.
func (r *results) memPer(target string) (heap, stack float64) {
	var hs, ss []float64
	for _, m := range r.mem[target] {
		hs = append(hs, m[0])
		ss = append(ss, m[1])
	}
	return median(hs), median(ss)
}

// slowFigures are the medians of a target's slow-clients runs, field by
// field.
type slowFigures struct {
	rss, rssGrowth, tcpMem, toClients, fromUpstream, readRate float64
}

func (r *results) slowMedians(target string) slowFigures {
	var f [6][]float64
	for _, s := range r.slow[target] {
		for i, v := range []float64{float64(s.rss), float64(s.rssGrowth), float64(s.tcpMem), float64(s.toClients), float64(s.fromUpstream), s.readRate} {
			f[i] = append(f[i], v)
		}
	}
	return slowFigures{median(f[0]), median(f[1]), median(f[2]), median(f[3]), median(f[4]), median(f[5])}
}

// mib is n bytes in MiB.
func mib(n int64) float64 { return float64(n) / (1 << 20) }

// perClientKiB is n bytes over clients, in KiB.
func perClientKiB(n int64, clients int) float64 { return float64(n) / float64(clients) / 1024 }

func (r *results) ratio(scenario, a, b string) string {
	return formatRatio(pairedRatio(r.samples[scenario][a], r.samples[scenario][b]))
}

// report renders the results as Markdown.
func (r *results) report() string {
	var b strings.Builder
	o := r.opts
	fmt.Fprintf(&b, "Run of %s: %s %s/%s, %d CPUs, %d repetitions of %v windows (after %v warm-up), medians.\n\n",
		time.Now().Format("2006-01-02"), runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), o.reps, o.duration, o.warmup)

	sum := map[string]map[string]summary{}
	for _, sc := range r.scenarios {
		sum[sc.name] = map[string]summary{}
		for _, t := range r.targets {
			sum[sc.name][t.name] = summarize(r.samples[sc.name][t.name])
		}
	}

	if len(r.scenarios) > 0 {
		b.WriteString("| scenario | proxy | throughput | spread | p50 | p99 | × direct | × bare | × tuned | proxy CPU | peak RSS | errors |\n")
		b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	}
	for _, sc := range r.scenarios {
		for _, t := range r.targets {
			s := sum[sc.name][t.name]
			p50, p99 := "", ""
			if sc.latency {
				p50, p99 = formatDur(s.p50), formatDur(s.p99)
			}
			rss := "–"
			if s.peakRSS > 0 {
				rss = fmt.Sprintf("%.0f MiB", float64(s.peakRSS)/(1<<20))
			}
			errs := "0"
			if s.errs > 0 || s.firstErr != nil {
				errs = fmt.Sprintf("%d: %v", s.errs, oneLine(s.firstErr))
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %.0f%% | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				sc.name, t.name, formatRate(sc, s.rate), 100*s.spread, p50, p99,
				r.ratio(sc.name, t.name, "direct"), r.ratio(sc.name, t.name, kindBare), r.ratio(sc.name, t.name, kindTuned),
				formatCPU(sc, s.cpuPerUnit), rss, errs)
		}
	}

	if len(r.mem) > 0 {
		fmt.Fprintf(&b, "\n%d idle CONNECT tunnels: memory per tunnel (growth after GC), and the proxy's CPU while they idle:\n\n| proxy | heap | goroutine stacks | total | CPU while idle |\n|---|--:|--:|--:|--:|\n", o.idleConns)
		for _, t := range r.targets {
			if _, ok := r.mem[t.name]; ok {
				h, st := r.memPer(t.name)
				var idle []float64
				for _, m := range r.mem[t.name] {
					idle = append(idle, m[2])
				}
				fmt.Fprintf(&b, "| %s | %.2f KiB | %.2f KiB | %.2f KiB | %.1f%% of a core |\n", t.name, h/1024, st/1024, (h+st)/1024, 100*median(idle))
			}
		}
	}

	if len(r.slow) > 0 {
		fmt.Fprintf(&b, "\n%d slow clients reading 10 KB/s each: proxy RSS and kernel TCP memory, after %v (kernel: growth of /proc/net/sockstat's TCP memory, every socket of the run; queued: bytes in the proxy's sockets, from /proc/net/tcp):\n\n", o.slowClients, o.slowSettle)
		b.WriteString("| proxy | proxy RSS | RSS growth | kernel TCP memory | per client | queued per client, to it / from upstream | read per client | errors |\n|---|--:|--:|--:|--:|--:|--:|--:|\n")
		pressure := false
		for _, t := range r.targets {
			ss, ok := r.slow[t.name]
			if !ok {
				continue
			}
			m := r.slowMedians(t.name)
			errs := "0"
			for _, s := range ss {
				pressure = pressure || s.pressure
				if s.errs > 0 && errs == "0" {
					errs = fmt.Sprintf("%d: %v", s.errs, oneLine(s.firstErr))
				}
			}
			n := float64(o.slowClients)
			fmt.Fprintf(&b, "| %s | %.0f MiB | %.0f MiB | %.0f MiB | %.0f KiB | %.0f / %.0f KiB | %.1f KB/s | %s |\n",
				t.name, mib(int64(m.rss)), mib(int64(m.rssGrowth)), mib(int64(m.tcpMem)), m.tcpMem/n/1024,
				m.toClients/n/1024, m.fromUpstream/n/1024, m.readRate/1e3, errs)
		}
		if pressure {
			b.WriteString("\nThe kernel's TCP memory reached its pressure threshold (net.ipv4.tcp_mem) in some of these runs: it shrank buffers, and its figure is a bound rather than what the proxy would have made it hold.\n")
		}
	}

	b.WriteString("\nTargets (issue 5), as the median of ratios between runs made one right after the other, with the proxies' own CPU per unit for comparison:\n\n| target | figure | met | proxy CPU, pw vs the other |\n|---|---|---|---|\n")
	scen := map[string]scenario{}
	for _, sc := range r.scenarios {
		scen[sc.name] = sc
	}
	check := func(scenario, other, what string, want float64) {
		got := pairedRatio(r.samples[scenario][kindPW], r.samples[scenario][other])
		if got == 0 {
			return
		}
		met := "yes"
		if got < want {
			met = "**no**"
		}
		cpu := fmt.Sprintf("%s vs %s", formatCPU(scen[scenario], sum[scenario][kindPW].cpuPerUnit), formatCPU(scen[scenario], sum[scenario][other].cpuPerUnit))
		fmt.Fprintf(&b, "| %s: pw ≥ %.2f× %s | %.2f× | %s | %s |\n", scenario, want, what, got, met, cpu)
	}
	for _, sc := range r.scenarios {
		check(sc.name, kindTuned, "tuned (cost of observing)", 0.97)
	}
	for _, name := range []string{"http-small", "mitm-small"} {
		check(name, kindPeer, "go-mitmproxy", 1.0)
	}
	for _, name := range bulkScenarios {
		check(name, kindBare, "bare", 1.0)
	}
	if _, ok := r.mem[kindPW]; ok {
		if _, ok := r.mem[kindTuned]; ok {
			ph, ps := r.memPer(kindPW)
			th, ts := r.memPer(kindTuned)
			extra := ph + ps - th - ts
			met := "yes"
			if extra >= 1024 {
				met = "**no**"
			}
			fmt.Fprintf(&b, "| memory per tracked live connection beyond goproxy's (pw − tuned) < 1 KiB | %.0f B | %s | |\n", extra, met)
		}
	}
	if _, ok := r.slow[kindPW]; ok {
		if _, ok := r.slow[kindBare]; ok {
			pw, bare := r.slowMedians(kindPW), r.slowMedians(kindBare)
			met := "yes"
			if pw.tcpMem >= bare.tcpMem || pw.rss >= bare.rss {
				met = "**no**"
			}
			fmt.Fprintf(&b, "| %s: pw's kernel TCP memory and RSS below bare's | %.0f vs %.0f MiB kernel, %.1f vs %.1f MiB RSS (growth %.1f vs %.1f) | %s | |\n",
				slowScenario, mib(int64(pw.tcpMem)), mib(int64(bare.tcpMem)), mib(int64(pw.rss)), mib(int64(bare.rss)), mib(int64(pw.rssGrowth)), mib(int64(bare.rssGrowth)), met)
		}
	}
	if r.hubNote != "" {
		fmt.Fprintf(&b, "\n%s\n", r.hubNote)
	}
	for _, n := range r.notes {
		fmt.Fprintf(&b, "\n%s\n", n)
	}
	return b.String()
}

func oneLine(err error) string {
	if err == nil {
		return ""
	}
	s := strings.ReplaceAll(err.Error(), "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}
