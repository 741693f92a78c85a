package subjects

import (
	"fmt"
	"strings"
)

// pipePubToken names the pub/sub subjects of pipes: a pub/sub producer
// asks sb.pipe.pub.<ns>.<name> which gateways hold pub/sub consumers of
// channel ns/name (only gateways holding one subscribe).
const pipePubToken = "pub"

// PipePub is the subject on which gateways holding pub/sub consumers of
// ns/name answer a pub/sub producer.
func PipePub(ns, name string) (string, error) {
	n, c, err := encodePair(ns, name)
	if err != nil {
		return "", err
	}
	return bounded(join(Prefix, pipeToken, pipePubToken, n, c))
}

// ParsePipePub returns the namespace and channel name of a subject built
// by [PipePub].
func ParsePipePub(subject string) (ns, name string, err error) {
	toks := strings.Split(subject, ".")
	if len(toks) != 5 || toks[0] != Prefix || toks[1] != pipeToken || toks[2] != pipePubToken {
		return "", "", fmt.Errorf("%w: not a pipe pub/sub subject: %q", ErrBadToken, subject)
	}
	if ns, err = Decode(toks[3]); err != nil {
		return "", "", err
	}
	if name, err = Decode(toks[4]); err != nil {
		return "", "", err
	}
	return ns, name, nil
}
