package hosttop_test

import (
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/proxywatch/proxywatch/exporters/internal/hosttop"
)

func snapshot(t *testing.T, tb *hosttop.Table) (map[string]hosttop.Counts, hosttop.Counts) {
	t.Helper()
	hosts, other := tb.Snapshot()
	m := make(map[string]hosttop.Counts, len(hosts))
	for i, h := range hosts {
		if i > 0 && hosts[i-1].Host >= h.Host {
			t.Fatalf("Snapshot not sorted by host: %q before %q", hosts[i-1].Host, h.Host)
		}
		m[h.Host] = h.Counts
	}
	return m, other
}

func TestFirstHostsTakeFreeLabels(t *testing.T) {
	tb := hosttop.New(2)
	tb.Add("a:80", 10, 100)
	tb.Add("b:443", 1, 2)
	tb.Add("a:80", 5, 50)
	tb.Add("c:80", 1, 1) // 2 bytes, not more than b:443's 3: stays in other
	hosts, other := snapshot(t, tb)
	want := map[string]hosttop.Counts{
		"a:80":  {Conns: 2, Up: 15, Down: 150},
		"b:443": {Conns: 1, Up: 1, Down: 2},
	}
	if !reflect.DeepEqual(hosts, want) {
		t.Errorf("hosts = %+v, want %+v", hosts, want)
	}
	if want := (hosttop.Counts{Conns: 1, Up: 1, Down: 1}); other != want {
		t.Errorf("other = %+v, want %+v", other, want)
	}
}

func TestHeavierHostTakesLightestLabel(t *testing.T) {
	tb := hosttop.New(2)
	tb.Add("a", 0, 1000)
	tb.Add("b", 0, 100)
	// c carries 100 in all, not more than b's 100 plus an eighth: other.
	tb.Add("c", 0, 60)
	tb.Add("c", 0, 40)
	if hosts, _ := snapshot(t, tb); len(hosts) != 2 || hosts["b"].Down != 100 {
		t.Fatalf("after c reached b's weight: hosts = %+v, want a and b unchanged", hosts)
	}
	// One more byte is still within the hysteresis (112 is b's threshold).
	tb.Add("c", 0, 12)
	if hosts, _ := snapshot(t, tb); hosts["c"] != (hosttop.Counts{}) {
		t.Fatalf("c at weight 112 got a label: %+v", hosts)
	}
	// c at 113 displaces b. Its series starts with this connection only.
	tb.Add("c", 1, 1)
	hosts, other := snapshot(t, tb)
	want := map[string]hosttop.Counts{
		"a": {Conns: 1, Down: 1000},
		"c": {Conns: 1, Up: 1, Down: 1},
	}
	if !reflect.DeepEqual(hosts, want) {
		t.Errorf("hosts = %+v, want %+v", hosts, want)
	}
	if want := (hosttop.Counts{Conns: 3, Down: 112}); other != want {
		t.Errorf("other = %+v, want %+v", other, want)
	}
	// b is back in "other" from now on; its old counts are gone.
	tb.Add("b", 0, 5)
	if _, other := snapshot(t, tb); other != (hosttop.Counts{Conns: 4, Down: 117}) {
		t.Errorf("other after b ended one more = %+v", other)
	}
}

// TestCountersNeverDecrease checks the property the exporters rely on: every
// series a Table exports (each labelled host, and other) only grows for as long
// as it exists, and the total of all increases equals what was added.
func TestCountersNeverDecrease(t *testing.T) {
	tb := hosttop.New(3)
	last := map[string]hosttop.Counts{}
	var seen, added uint64 // bytes of increases observed, and bytes added
	moves := 0             // labelled hosts that lost their label
	for i := range 5000 {
		// Host i%40 with a weight that makes the heavy hitters change over time.
		h := fmt.Sprintf("h%02d", (i*7)%40)
		w := uint64((i*13)%97) * uint64(1+(i/1000)*((i*7)%40)%5)
		tb.Add(h, w/3, w-w/3)
		added += w
		hosts, other := tb.Snapshot()
		now := map[string]hosttop.Counts{hosttop.Other: other}
		for _, x := range hosts {
			now[x.Host] = x.Counts
		}
		if len(hosts) > 3 {
			t.Fatalf("step %d: %d labelled hosts, want at most 3", i, len(hosts))
		}
		for name := range last {
			if _, ok := now[name]; !ok {
				moves++
			}
		}
		for name, c := range now {
			p := last[name] // zero for a new series
			if c.Conns < p.Conns || c.Up < p.Up || c.Down < p.Down {
				t.Fatalf("step %d: series %q went down from %+v to %+v", i, name, p, c)
			}
			seen += c.Up + c.Down - p.Up - p.Down
		}
		last = now
	}
	if seen != added {
		t.Errorf("sum of increases over all series = %d, want %d", seen, added)
	}
	if moves == 0 {
		t.Error("no label ever moved: the test does not exercise displacement")
	}
	t.Logf("%d labels moved", moves)
}

func TestBoundedCandidates(t *testing.T) {
	// Many distinct light hosts never push out a heavy one, and memory stays
	// bounded: the heavy hitter is still ranked after 100000 one-off hosts.
	tb := hosttop.New(1)
	tb.Add("heavy", 0, 1<<20)
	for i := range 100000 {
		tb.Add(fmt.Sprintf("once-%d", i), 0, 10)
	}
	hosts, other := snapshot(t, tb)
	if len(hosts) != 1 || hosts["heavy"].Down != 1<<20 {
		t.Errorf("hosts = %+v, want only heavy", hosts)
	}
	if other.Conns != 100000 || other.Down != 1000000 {
		t.Errorf("other = %+v", other)
	}
}

func TestConcurrentAdd(t *testing.T) {
	// Ten hosts and ten labels: no label moves, so the counts are exact.
	tb := hosttop.New(10)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				tb.Add(fmt.Sprintf("h%d", (g+i)%10), 1, 2)
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			tb.Snapshot()
		}
	})
	wg.Wait()
	hosts, other := snapshot(t, tb)
	if other != (hosttop.Counts{}) || len(hosts) != 10 {
		t.Fatalf("hosts = %+v, other = %+v; want 10 hosts and nothing in other", hosts, other)
	}
	for name, c := range hosts {
		if c != (hosttop.Counts{Conns: 400, Up: 400, Down: 800}) {
			t.Errorf("%s = %+v, want 400 conns, 400 up, 800 down", name, c)
		}
	}
}

func TestReservedNamesGoToOther(t *testing.T) {
	tb := hosttop.New(2)
	tb.Add("", 1, 2)
	tb.Add(hosttop.Other, 3, 4)
	hosts, other := snapshot(t, tb)
	if len(hosts) != 0 || other != (hosttop.Counts{Conns: 2, Up: 4, Down: 6}) {
		t.Errorf("hosts = %+v, other = %+v; want no host and both in other", hosts, other)
	}
}

func TestNewPanicsOnNonPositive(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New(0) did not panic")
		}
	}()
	hosttop.New(0)
}
