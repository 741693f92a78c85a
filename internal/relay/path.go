package relay

import (
	"fmt"
	"strings"
)

// ConfinePath resolves the dot segments of an escaped request path (RFC
// 3986 §5.2.4), so that it cannot climb above the base path of the target
// it is joined to. A segment counts as "." or ".." also when its dots are
// percent-encoded (%2E, %2e), since an upstream may decode before it
// normalises. Every other segment is kept exactly as received: escapes
// such as %2F stay escaped. A path that climbs above its root is refused
// with ErrBadRequest. path must start with "/".
func ConfinePath(path string) (string, error) {
	if !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("%w: path must start with /", ErrBadRequest)
	}
	if !strings.Contains(path, ".") && !strings.Contains(path, "%2") {
		return path, nil // no dot segment possible: the common case
	}
	segs := strings.Split(path[1:], "/")
	out := make([]string, 0, len(segs))
	for i, seg := range segs {
		last := i == len(segs)-1
		switch dots(seg) {
		case 1:
			if last {
				out = append(out, "")
			}
		case 2:
			if len(out) == 0 {
				return "", fmt.Errorf("%w: path %q climbs above the upstream's base path", ErrBadRequest, truncate(path, 128))
			}
			out = out[:len(out)-1]
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	return "/" + strings.Join(out, "/"), nil
}

// dots returns 1 for a "." segment, 2 for "..", plain or percent-encoded,
// and 0 for any other segment.
func dots(seg string) int {
	n := 0
	for i := 0; i < len(seg); i++ {
		switch {
		case seg[i] == '.':
		case seg[i] == '%' && i+2 < len(seg) && seg[i+1] == '2' && (seg[i+2] == 'E' || seg[i+2] == 'e'):
			i += 2
		default:
			return 0
		}
		n++
	}
	if n > 2 {
		return 0
	}
	return n
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
