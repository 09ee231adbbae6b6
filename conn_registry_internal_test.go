package proxywatch

import "testing"

// A session number as goproxy prints it resolves to the newest live
// connection with those low 16 bits, an older one when the newer ended, and
// to none past sessionPeriods×65536 sessions back.
func TestRegistryLiveSession(t *testing.T) {
	var r registry
	r.init(0)
	const s = 0x1234
	old := ConnID(s)
	newer := ConnID(3*0x10000 + s)
	ancient := ConnID(s + 0x20000)
	for _, id := range []ConnID{old, newer, ancient, 4*0x10000 + 7} {
		r.live[id] = &entry{info: connIdent{ID: id}}
	}
	max := int64(4*0x10000 + 7) // newer's next period has not come yet
	if id, ok := r.liveSession(s, max); !ok || id != newer {
		t.Errorf("liveSession = %d, %v; want %d", id, ok, newer)
	}
	delete(r.live, newer)
	if id, ok := r.liveSession(s, max); !ok || id != ancient {
		t.Errorf("after the newest ended: %d, %v; want %d", id, ok, ancient)
	}
	if id, ok := r.liveSession(s+1, max); ok {
		t.Errorf("low bits of no live connection resolved to %d", id)
	}
	if id, ok := r.liveSession(7, max); !ok || id != 4*0x10000+7 {
		t.Errorf("the newest session itself: %d, %v", id, ok)
	}
	delete(r.live, ancient)
	far := int64(old) + sessionPeriods*0x10000
	if id, ok := r.liveSession(s, far); ok {
		t.Errorf("a connection %d periods back resolved to %d", sessionPeriods, id)
	}
	if id, ok := r.liveSession(s, far-1); !ok || id != old {
		t.Errorf("a connection just within %d periods: %d, %v", sessionPeriods, id, ok)
	}
}
