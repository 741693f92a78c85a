package subjects

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Middleman subjects and names.
//
//	sb.mm.pub.<key>                       PUB of key (one core subject per key)
//	sb.mm.pub.*                           every PUB (super keys)
//	sb.mm.req.<key>                       REQ of key, served in queue group MiddlemanQueue
//	sb.mm.gw.<gw>.>                       one gateway's control traffic:
//	sb.mm.gw.<gw>.c.<n>                   to connection n (MSG:<cid>, INT)
//	sb.mm.gw.<gw>.r.<n>.<seq>.<secret>    answers to request seq of connection n
//
// A connection id (cid) is "<gw>-<n>" and a request id (Rid) is
// "<gw>-<n>-<seq>-<secret>", where gw is the gateway's id ([A-Za-z0-9]+),
// n and seq are decimal counters and secret is a random token
// ([A-Za-z0-9]+, at most 64 bytes) the requester's gateway checks, so any
// gateway can route to a connection or a request by its id alone, while
// nobody who was not handed a Rid can answer its request. Parsing accepts
// only ids these formats produce, so every subject built from a parsed id
// lies under its gateway's sb.mm.gw.<gw>. and holds no wildcard.
const (
	mmToken     = "mm"
	mmPub       = "pub"
	mmReq       = "req"
	mmGateway   = "gw"
	mmConn      = "c"
	mmReply     = "r"
	mmIDSep     = "-"
	mmTrustSep  = "."
	maxGatewayN = 64
	maxSecretN  = 64
)

// MiddlemanQueue is the queue group of every middleman REQ subscription.
const MiddlemanQueue = "sb-mm-responders"

// MiddlemanTrustBucket is the KV bucket of EPUB/ESUB/EREQ enablements.
const MiddlemanTrustBucket = "sb_mm_trust"

// ErrBadID is returned when a connection or request id is malformed.
var ErrBadID = errors.New("subjects: malformed middleman id")

// MiddlemanPub is the subject PUBs of key travel on.
func MiddlemanPub(key string) (string, error) {
	tok, err := Encode(key)
	if err != nil {
		return "", err
	}
	return bounded(join(Prefix, mmToken, mmPub, tok))
}

// MiddlemanPubAll is the wildcard over every PUB subject (super keys).
func MiddlemanPubAll() string { return join(Prefix, mmToken, mmPub, "*") }

// ParseMiddlemanPub returns the key of a subject built by [MiddlemanPub].
func ParseMiddlemanPub(subject string) (string, error) {
	rest, ok := strings.CutPrefix(subject, join(Prefix, mmToken, mmPub)+".")
	if !ok || strings.Contains(rest, ".") {
		return "", fmt.Errorf("%w: not a middleman pub subject %q", ErrBadToken, subject)
	}
	return Decode(rest)
}

// MiddlemanReq is the subject REQs of key travel on.
func MiddlemanReq(key string) (string, error) {
	tok, err := Encode(key)
	if err != nil {
		return "", err
	}
	return bounded(join(Prefix, mmToken, mmReq, tok))
}

// MiddlemanGatewayAll is the subject one gateway subscribes to for all of
// its control traffic.
func MiddlemanGatewayAll(gw string) (string, error) {
	if !validGateway(gw) {
		return "", badID("gateway id", gw)
	}
	return join(Prefix, mmToken, mmGateway, gw, ">"), nil
}

// MiddlemanCID formats the connection id of connection n of gateway gw.
func MiddlemanCID(gw string, n uint64) string {
	return gw + mmIDSep + strconv.FormatUint(n, 10)
}

// ParseMiddlemanCID splits a connection id into gateway id and number.
func ParseMiddlemanCID(cid string) (gw string, n uint64, err error) {
	gw, num, ok := strings.Cut(cid, mmIDSep)
	if !ok || !validGateway(gw) {
		return "", 0, badID("cid", cid)
	}
	n, err = parseCounter(num)
	if err != nil {
		return "", 0, badID("cid", cid)
	}
	return gw, n, nil
}

// MiddlemanRequest names one request of a connection awaiting its answer
// (a REQ, or a gateway's question to another gateway): the gateway and
// connection that wait, the request's number and its secret.
type MiddlemanRequest struct {
	Gateway string
	Conn    uint64
	Seq     uint64
	Secret  string
}

// RID formats the request id "<gw>-<n>-<seq>-<secret>".
func (r MiddlemanRequest) RID() string {
	return MiddlemanCID(r.Gateway, r.Conn) + mmIDSep + strconv.FormatUint(r.Seq, 10) + mmIDSep + r.Secret
}

// Reply is the subject answers to r arrive on,
// sb.mm.gw.<gw>.r.<n>.<seq>.<secret>.
func (r MiddlemanRequest) Reply() (string, error) {
	if !validGateway(r.Gateway) || !validSecret(r.Secret) {
		return "", badID("request", r.RID())
	}
	return join(Prefix, mmToken, mmGateway, r.Gateway, mmReply,
		strconv.FormatUint(r.Conn, 10), strconv.FormatUint(r.Seq, 10), r.Secret), nil
}

// ParseMiddlemanRID parses a request id made by [MiddlemanRequest.RID].
func ParseMiddlemanRID(rid string) (MiddlemanRequest, error) {
	parts := strings.SplitN(rid, mmIDSep, 5)
	if len(parts) != 4 || !validGateway(parts[0]) || !validSecret(parts[3]) {
		return MiddlemanRequest{}, badID("rid", rid)
	}
	r := MiddlemanRequest{Gateway: parts[0], Secret: parts[3]}
	var err error
	if r.Conn, err = parseCounter(parts[1]); err != nil {
		return MiddlemanRequest{}, badID("rid", rid)
	}
	if r.Seq, err = parseCounter(parts[2]); err != nil {
		return MiddlemanRequest{}, badID("rid", rid)
	}
	return r, nil
}

// MiddlemanConn is the control subject of connection n of gateway gw.
func MiddlemanConn(gw string, n uint64) (string, error) {
	if !validGateway(gw) {
		return "", badID("gateway id", gw)
	}
	return join(Prefix, mmToken, mmGateway, gw, mmConn, strconv.FormatUint(n, 10)), nil
}

// MiddlemanControl is a parsed control subject of one gateway.
type MiddlemanControl struct {
	// Reply is true for sb.mm.gw.<gw>.r.<n>.<seq>.<secret>, false for
	// .c.<n>.
	Reply bool
	// Conn is the connection number n.
	Conn uint64
	// Seq is the request number (Reply only).
	Seq uint64
	// Secret is the request's secret (Reply only).
	Secret string
}

// ParseMiddlemanControl parses a subject received on
// [MiddlemanGatewayAll](gw).
func ParseMiddlemanControl(gw, subject string) (MiddlemanControl, error) {
	rest, ok := strings.CutPrefix(subject, join(Prefix, mmToken, mmGateway, gw)+".")
	if !ok {
		return MiddlemanControl{}, badID("control subject", subject)
	}
	parts := strings.SplitN(rest, ".", 5)
	var c MiddlemanControl
	var err error
	switch {
	case len(parts) == 2 && parts[0] == mmConn:
		c.Conn, err = parseCounter(parts[1])
	case len(parts) == 4 && parts[0] == mmReply && validSecret(parts[3]):
		c.Reply, c.Secret = true, parts[3]
		if c.Conn, err = parseCounter(parts[1]); err == nil {
			c.Seq, err = parseCounter(parts[2])
		}
	default:
		err = ErrBadID
	}
	if err != nil {
		return MiddlemanControl{}, badID("control subject", subject)
	}
	return c, nil
}

// MiddlemanTrustKey is the KV key of an enablement (cmd is EPUB, ESUB or
// EREQ) of a middleman key.
func MiddlemanTrustKey(cmd, key string) (string, error) {
	if !validGateway(cmd) {
		return "", fmt.Errorf("%w: command %q", ErrBadToken, cmd)
	}
	tok, err := Encode(key)
	if err != nil {
		return "", err
	}
	return bounded(cmd + mmTrustSep + tok)
}

// ParseMiddlemanTrustKey reverses [MiddlemanTrustKey].
func ParseMiddlemanTrustKey(k string) (cmd, key string, err error) {
	cmd, tok, ok := strings.Cut(k, mmTrustSep)
	if !ok || !validGateway(cmd) {
		return "", "", fmt.Errorf("%w: trust key %q", ErrBadToken, k)
	}
	key, err = Decode(tok)
	return cmd, key, err
}

// validGateway reports whether s is a non-empty ASCII alphanumeric id.
func validGateway(s string) bool { return alnum(s, maxGatewayN) }

// validSecret reports whether s can be the secret of a request id.
func validSecret(s string) bool { return alnum(s, maxSecretN) }

// alnum reports whether s is 1..max ASCII letters and digits.
func alnum(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// badID is ErrBadID naming what was malformed; a long id is cut, as ids
// come from clients and other gateways.
func badID(what, id string) error {
	const show = 100
	if len(id) > show {
		id = id[:show] + "..."
	}
	return fmt.Errorf("%w: %s %q", ErrBadID, what, id)
}

// parseCounter parses a canonical decimal uint64 (no sign, no leading
// zeros), so that every counter has exactly one spelling.
func parseCounter(s string) (uint64, error) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, ErrBadID
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, ErrBadID
		}
	}
	return strconv.ParseUint(s, 10, 64)
}
