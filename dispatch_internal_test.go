package proxywatch

import "testing"

// The log queue keeps records in order across the end of its ring, refuses
// what does not fit, and lets go of the records it handed over.
func TestLogQueueOrderAndBound(t *testing.T) {
	q := newLogQueue(5)
	next, want := uint64(1), uint64(1)
	push := func(n int) {
		for range n {
			_, ok := q.push(LogRecord{Seq: next, Message: "m"})
			if !ok {
				t.Fatalf("push %d refused with %d queued", next, q.len())
			}
			next++
		}
	}
	buf := make([]LogRecord, 3)
	takeAll := func() {
		for q.len() > 0 {
			for _, r := range q.take(buf) {
				if r.Seq != want {
					t.Fatalf("took Seq %d, want %d", r.Seq, want)
				}
				want++
			}
		}
	}
	for round := range 7 { // the head goes round the ring several times
		push(1 + round%5)
		takeAll()
	}
	push(5)
	if n, ok := q.push(LogRecord{Seq: 99}); ok || n != 5 || !q.full() {
		t.Fatalf("push into a full queue: queued %d, ok %v, full %v", n, ok, q.full())
	}
	takeAll()
	if want != next {
		t.Fatalf("took up to Seq %d, pushed up to %d", want-1, next-1)
	}
	for i, r := range q.ring {
		if r.Message != "" {
			t.Fatalf("ring slot %d still holds a record that was taken", i)
		}
	}
	if got := q.take(buf); len(got) != 0 {
		t.Fatalf("take from an empty queue returned %d records", len(got))
	}
}
