package subjects

import (
	"errors"
	"fmt"
	"strings"
)

// ErrForeignSubject is returned by [CheckPeer] for a subject a peer handed
// over that the receiving side must not publish to.
var ErrForeignSubject = errors.New("subjects: subject outside the peer's space")

// CheckPeer verifies a subject that arrived from the network (an agent's
// control subject, a stream receiver, a reply subject) before anyone
// publishes to it: it must be at most [MaxSubjectLen] bytes, literal (every
// token non-empty, no wildcard, whitespace or control character) and,
// when prefix is not empty, lie strictly under prefix (prefix + "." + at
// least one token). A gateway that publishes only to subjects passing
// CheckPeer with the peer's own prefix cannot be made to act, with its own
// NATS rights, anywhere the peer could not publish itself.
func CheckPeer(subject, prefix string) error {
	if len(subject) > MaxSubjectLen {
		return fmt.Errorf("%w: %d bytes", ErrForeignSubject, len(subject))
	}
	rest := subject
	if prefix != "" {
		var ok bool
		if rest, ok = strings.CutPrefix(subject, prefix+"."); !ok {
			return fmt.Errorf("%w: %.64q not under %q", ErrForeignSubject, subject, prefix)
		}
	}
	for tok := range strings.SplitSeq(rest, ".") {
		if !IsValidToken(tok) {
			return fmt.Errorf("%w: %.64q is not a literal subject", ErrForeignSubject, subject)
		}
	}
	return nil
}
