package subjects

import (
	"fmt"
	"strings"
)

// Pipe subjects. Waiting parties of rendezvous pipes are entries of one
// JetStream stream, in arrival order:
//
//	sb.pipe.q.<ns>.<name>.<role>.<gateway>
//
// where role is [PipeProducer], [PipeConsumer] or [PipeMatcher] (the
// short-lived marker of the party matching the channel right now) and
// gateway is the id of the gateway that holds the HTTP request. Gateways
// answer claims for their waiting parties on sb.pipe.claim.<gateway>.<id>,
// liveness pings on sb.pipe.alive.<gateway>, and end waiting parties of
// deleted channels on sb.pipe.gone.<ns>[.<name>].
const (
	pipeToken      = "pipe"
	pipeQueueToken = "q"
	pipeClaimToken = "claim"
	pipeGoneToken  = "gone"
	pipeAliveToken = "alive"
)

// Pipe roles, the fifth token of a queue entry's subject.
const (
	PipeProducer = "p"
	PipeConsumer = "c"
	PipeMatcher  = "m"
)

// PipeStream is the stream of waiting pipe parties.
const PipeStream = "SB_PIPE"

// PipeDirectGet is the JetStream direct-get API subject of [PipeStream].
func PipeDirectGet() string { return "$JS.API.DIRECT.GET." + PipeStream }

// PipeQueueAll is the subject filter of every pipe queue entry.
func PipeQueueAll() string { return join(Prefix, pipeToken, pipeQueueToken, ">") }

// PipeNamespace is the filter of every entry of namespace ns.
func PipeNamespace(ns string) (string, error) {
	t, err := Encode(ns)
	if err != nil {
		return "", err
	}
	return join(Prefix, pipeToken, pipeQueueToken, t, ">"), nil
}

// PipeChannel is the filter of every entry (any role, any gateway) of the
// channel ns/name.
func PipeChannel(ns, name string) (string, error) {
	n, c, err := encodePair(ns, name)
	if err != nil {
		return "", err
	}
	return bounded(join(Prefix, pipeToken, pipeQueueToken, n, c, ">"))
}

// PipeRole is the filter of the entries of one role of channel ns/name.
// An empty name means every channel of ns.
func PipeRole(ns, name, role string) (string, error) {
	if err := checkRole(role); err != nil {
		return "", err
	}
	n, err := Encode(ns)
	if err != nil {
		return "", err
	}
	c := "*"
	if name != "" {
		if c, err = Encode(name); err != nil {
			return "", err
		}
	}
	return bounded(join(Prefix, pipeToken, pipeQueueToken, n, c, role, "*"))
}

// PipeEntry is the subject of a party of role waiting on ns/name, held by
// gateway.
func PipeEntry(ns, name, role, gateway string) (string, error) {
	if err := checkRole(role); err != nil {
		return "", err
	}
	n, c, err := encodePair(ns, name)
	if err != nil {
		return "", err
	}
	g, err := Encode(gateway)
	if err != nil {
		return "", err
	}
	return bounded(join(Prefix, pipeToken, pipeQueueToken, n, c, role, g))
}

// PipeGatewayEntries is the filter of every entry held by gateway.
func PipeGatewayEntries(gateway string) (string, error) {
	g, err := Encode(gateway)
	if err != nil {
		return "", err
	}
	return join(Prefix, pipeToken, pipeQueueToken, "*", "*", "*", g), nil
}

// PipeEntryInfo is a parsed queue entry subject.
type PipeEntryInfo struct {
	Namespace, Name, Role, Gateway string
}

// ParsePipeEntry parses a subject built by [PipeEntry], also in its
// partitioned form ([PipeInPartition]).
func ParsePipeEntry(subject string) (PipeEntryInfo, error) {
	toks := strings.Split(subject, ".")
	if len(toks) != 7 || toks[0] != Prefix || toks[1] != pipeToken || !isPartToken(toks[2], pipeQueueToken) {
		return PipeEntryInfo{}, fmt.Errorf("%w: not a pipe entry: %q", ErrBadToken, subject)
	}
	if err := checkRole(toks[5]); err != nil {
		return PipeEntryInfo{}, err
	}
	var e PipeEntryInfo
	var err error
	if e.Namespace, err = Decode(toks[3]); err != nil {
		return PipeEntryInfo{}, err
	}
	if e.Name, err = Decode(toks[4]); err != nil {
		return PipeEntryInfo{}, err
	}
	if e.Gateway, err = Decode(toks[6]); err != nil {
		return PipeEntryInfo{}, err
	}
	e.Role = toks[5]
	return e, nil
}

// PipeClaim is the subject on which gateway answers claims for its
// waiting party id.
func PipeClaim(gateway, id string) (string, error) {
	g, w, err := encodePair(gateway, id)
	if err != nil {
		return "", err
	}
	return bounded(join(Prefix, pipeToken, pipeClaimToken, g, w))
}

// PipeClaimAll is the subject gateway subscribes to for claims.
func PipeClaimAll(gateway string) (string, error) {
	g, err := Encode(gateway)
	if err != nil {
		return "", err
	}
	return join(Prefix, pipeToken, pipeClaimToken, g, "*"), nil
}

// ParsePipeClaim returns the gateway and party id of a claim subject.
func ParsePipeClaim(subject string) (gateway, id string, err error) {
	toks := strings.Split(subject, ".")
	if len(toks) != 5 || toks[0] != Prefix || toks[1] != pipeToken || toks[2] != pipeClaimToken {
		return "", "", fmt.Errorf("%w: not a pipe claim: %q", ErrBadToken, subject)
	}
	if gateway, err = Decode(toks[3]); err != nil {
		return "", "", err
	}
	if id, err = Decode(toks[4]); err != nil {
		return "", "", err
	}
	return gateway, id, nil
}

// PipeAlive is the subject gateway answers liveness pings on.
func PipeAlive(gateway string) (string, error) {
	g, err := Encode(gateway)
	if err != nil {
		return "", err
	}
	return join(Prefix, pipeToken, pipeAliveToken, g), nil
}

// PipeGone announces that channel ns/name was deleted; an empty name
// means the whole namespace ns.
func PipeGone(ns, name string) (string, error) {
	n, err := Encode(ns)
	if err != nil {
		return "", err
	}
	if name == "" {
		return join(Prefix, pipeToken, pipeGoneToken, n), nil
	}
	c, err := Encode(name)
	if err != nil {
		return "", err
	}
	return bounded(join(Prefix, pipeToken, pipeGoneToken, n, c))
}

// PipeGoneAll is the subject every gateway subscribes to for deletions.
func PipeGoneAll() string { return join(Prefix, pipeToken, pipeGoneToken, ">") }

// ParsePipeGone returns the namespace and channel name (empty for a whole
// namespace) of a subject built by [PipeGone].
func ParsePipeGone(subject string) (ns, name string, err error) {
	toks := strings.Split(subject, ".")
	if len(toks) < 4 || len(toks) > 5 || toks[0] != Prefix || toks[1] != pipeToken || toks[2] != pipeGoneToken {
		return "", "", fmt.Errorf("%w: not a pipe deletion: %q", ErrBadToken, subject)
	}
	if ns, err = Decode(toks[3]); err != nil {
		return "", "", err
	}
	if len(toks) == 5 {
		if name, err = Decode(toks[4]); err != nil {
			return "", "", err
		}
	}
	return ns, name, nil
}

func encodePair(a, b string) (string, string, error) {
	x, err := Encode(a)
	if err != nil {
		return "", "", err
	}
	y, err := Encode(b)
	if err != nil {
		return "", "", err
	}
	return x, y, nil
}

func checkRole(role string) error {
	switch role {
	case PipeProducer, PipeConsumer, PipeMatcher:
		return nil
	}
	return fmt.Errorf("%w: pipe role %q", ErrBadToken, role)
}
