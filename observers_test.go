package proxywatch_test

import (
	"strings"
	"testing"

	"github.com/proxywatch/proxywatch"
)

// TestObserveRefusesNonObserver checks that a value implementing no observer
// interface is refused at once, by a panic that names its type, instead of
// being registered to receive nothing.
func TestObserveRefusesNonObserver(t *testing.T) {
	p := proxywatch.New(nil)
	defer p.Close()
	defer func() {
		msg, _ := recover().(string)
		if !strings.Contains(msg, "Observe(int)") {
			t.Fatalf("Observe(42) panicked with %q, want a message naming int", msg)
		}
	}()
	p.Observe(42)
	t.Fatal("Observe(42) returned")
}
