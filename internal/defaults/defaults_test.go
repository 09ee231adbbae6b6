package defaults_test

import (
	"testing"
	"time"

	"github.com/proxywatch/proxywatch/internal/defaults"
)

func TestOr(t *testing.T) {
	for _, tc := range []struct{ v, def, want int }{{0, 5, 5}, {-1, 5, 5}, {3, 5, 3}} {
		if got := defaults.Or(tc.v, tc.def); got != tc.want {
			t.Errorf("Or(%d, %d) = %d, want %d", tc.v, tc.def, got, tc.want)
		}
	}
	if got := defaults.Or(0, time.Second); got != time.Second {
		t.Errorf("Or(0, time.Second) = %v", got)
	}
	if got := defaults.Or(int64(7), 1); got != 7 {
		t.Errorf("Or(7, 1) = %d", got)
	}
}
