package pipe

import (
	"fmt"
	"net/http"
	"strconv"
)

// modes are the query parameters of a transfer: ?n=N (one sender, N
// receivers), ?pubsub=true (patchbay's pub/sub) and ?progress=1 (the
// producer's feedback). Each is checked before anything waits: a bad
// value is 400 and changes nothing.
type modes struct {
	n        int
	pubsub   bool
	progress bool
}

// queryModes reads the modes of r; max is pipe.max_receivers.
func queryModes(r *http.Request, max int) (modes, error) {
	var m modes
	q := r.URL.Query()
	if vs, ok := q["n"]; ok {
		if len(vs) != 1 {
			return m, fmt.Errorf("%w: n given %d times", ErrBadParam, len(vs))
		}
		n, err := strconv.Atoi(vs[0])
		if err != nil || n < 1 || n > max {
			return m, fmt.Errorf("%w: n must be an integer from 1 to %d (pipe.max_receivers), not %q", ErrBadParam, max, vs[0])
		}
		m.n = n
	}
	var err error
	if m.pubsub, err = flag(q, "pubsub"); err != nil {
		return m, err
	}
	if m.progress, err = flag(q, "progress"); err != nil {
		return m, err
	}
	if m.pubsub && m.n > 1 {
		return m, fmt.Errorf("%w: pubsub and n>1 exclude each other (pub/sub reaches every waiting receiver)", ErrBadParam)
	}
	return m, nil
}

// flag reads a boolean query parameter: absent, "false" or "0" is off;
// "true", "1" or an empty value is on; anything else is 400.
func flag(q map[string][]string, name string) (bool, error) {
	vs, ok := q[name]
	if !ok {
		return false, nil
	}
	if len(vs) != 1 {
		return false, fmt.Errorf("%w: %s given %d times", ErrBadParam, name, len(vs))
	}
	switch vs[0] {
	case "true", "1", "":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, fmt.Errorf("%w: %s must be true or false, not %q", ErrBadParam, name, vs[0])
}
