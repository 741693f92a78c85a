package gateway

import "testing"

func TestConnCap(t *testing.T) {
	for _, tc := range []struct{ limit, want int }{
		{1_048_576, 943_719}, // a tenth kept
		{20_000, 18_000},
		{1_024, 768}, // at least 256 kept
		{200, 1},
	} {
		if got := capFromFileLimit(tc.limit); got != tc.want {
			t.Errorf("file limit %d: cap %d, want %d", tc.limit, got, tc.want)
		}
	}
	if got := connCap(-1); got != 0 {
		t.Errorf("http.max_conns -1: cap %d, want none (0)", got)
	}
	if got := connCap(7); got != 7 {
		t.Errorf("http.max_conns 7: cap %d", got)
	}
	if l := fileLimit(); l > 0 && connCap(0) != capFromFileLimit(l) {
		t.Errorf("http.max_conns 0: cap %d, want %d from the file limit %d", connCap(0), capFromFileLimit(l), l)
	}
}
