// Package hosttop keeps per-host connection and byte counts for a bounded
// number of hosts, so that the metric exporters can offer a host label without
// letting the number of series grow with the number of hosts a proxy ever saw.
//
// A Table gives its own series to at most N hosts, chosen by bytes carried,
// and adds everything else to "other". Hosts are ranked with the space-saving
// heavy-hitters algorithm over a candidate table of bounded size (4N+16
// entries), so memory is bounded too and the ranking is approximate for hosts
// near the bottom of the candidates.
//
// The counts it keeps are exported as counters, so they must never go down:
//
//   - A host's counts start at zero when it gets its label and cover only the
//     connections that ended after that; what it carried before stays in
//     "other", which therefore never decreases.
//   - While fewer than N hosts have labels, each new host gets one. After
//     that, a host takes the place of the labelled host with the fewest bytes
//     only when it has carried more than that host plus an eighth (hysteresis,
//     so two hosts of similar weight do not take turns). The displaced host's
//     counts are forgotten, and its series disappears: its increase was
//     already seen by whoever scraped it, so sums over all series stay right.
//
// A Table is safe for concurrent use.
package hosttop

import (
	"slices"
	"strings"
	"sync"
)

// Other is the host label value that the hosts without a label of their own
// are counted under.
const Other = "other"

// Counts is what a Table adds up per host, from ended connections.
type Counts struct {
	Conns    uint64 // connections that ended
	Up, Down uint64 // their final byte counts
}

func (c *Counts) add(up, down uint64) {
	c.Conns++
	c.Up += up
	c.Down += down
}

// Host is the counts of one labelled host.
type Host struct {
	Host string
	Counts
}

type candidate struct {
	weight   uint64 // bytes carried, or more: see insertLocked
	labelled *Counts
}

// Table keeps per-host counts for at most N hosts and "other". Make it with New.
type Table struct {
	mu       sync.Mutex
	n        int
	capacity int
	cands    map[string]*candidate
	labelled int
	other    Counts
}

// New returns a Table that gives a label to at most n hosts. n must be
// positive.
func New(n int) *Table {
	if n <= 0 {
		panic("hosttop: New with n <= 0")
	}
	return &Table{n: n, capacity: 4*n + 16, cands: make(map[string]*candidate)}
}

// N returns the number of hosts that can have a label.
func (t *Table) N() int { return t.n }

// Add counts one ended connection to host with its final byte counts. An
// empty host, and a host named "other", are always counted under Other.
func (t *Table) Add(host string, up, down uint64) {
	w := up + down
	t.mu.Lock()
	defer t.mu.Unlock()
	if host == "" || host == Other {
		t.other.add(up, down)
		return
	}

	c := t.cands[host]
	if c == nil {
		c = t.insertLocked(host)
	}
	c.weight += w
	switch {
	case c.labelled != nil:
	case t.labelled < t.n:
		c.labelled = new(Counts)
		t.labelled++
	default:
		low := t.lowestLabelledLocked()
		if c.weight <= low.weight+low.weight/8 {
			t.other.add(up, down)
			return
		}
		low.labelled = nil
		c.labelled = new(Counts)
	}
	c.labelled.add(up, down)
}

// insertLocked adds host to the candidates, evicting the lightest unlabelled
// candidate when the table is full; the newcomer inherits its weight, as the
// space-saving algorithm does, so a host is never ranked below what it may
// have carried.
func (t *Table) insertLocked(host string) *candidate {
	c := &candidate{}
	if len(t.cands) >= t.capacity {
		var (
			victim string
			min    *candidate
		)
		for name, o := range t.cands {
			if o.labelled != nil {
				continue
			}
			if min == nil || o.weight < min.weight || (o.weight == min.weight && name < victim) {
				victim, min = name, o
			}
		}
		// capacity > n, so a full table always has an unlabelled candidate.
		delete(t.cands, victim)
		c.weight = min.weight
	}
	t.cands[host] = c
	return c
}

// lowestLabelledLocked returns the labelled candidate with the least weight;
// ties go to the greatest name, so that the choice does not depend on map
// order.
func (t *Table) lowestLabelledLocked() *candidate {
	var (
		low  *candidate
		name string
	)
	for h, c := range t.cands {
		if c.labelled == nil {
			continue
		}
		if low == nil || c.weight < low.weight || (c.weight == low.weight && h > name) {
			low, name = c, h
		}
	}
	return low
}

// Snapshot returns the labelled hosts sorted by name, and the counts of
// "other".
func (t *Table) Snapshot() (hosts []Host, other Counts) {
	t.mu.Lock()
	defer t.mu.Unlock()
	hosts = make([]Host, 0, t.labelled)
	for h, c := range t.cands {
		if c.labelled != nil {
			hosts = append(hosts, Host{Host: h, Counts: *c.labelled})
		}
	}
	slices.SortFunc(hosts, func(a, b Host) int { return strings.Compare(a.Host, b.Host) })
	return hosts, t.other
}
