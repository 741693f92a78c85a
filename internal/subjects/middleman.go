package subjects

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Middleman subjects and names.
//
//	sb.mm.pub.<key>               PUB of key (one core subject per key)
//	sb.mm.pub.*                   every PUB (super keys)
//	sb.mm.req.<key>               REQ of key, served in queue group MiddlemanQueue
//	sb.mm.gw.<gw>.>               one gateway's control traffic:
//	sb.mm.gw.<gw>.c.<n>           to connection n (MSG:<cid>, INT)
//	sb.mm.gw.<gw>.r.<n>.<seq>     answers to request seq of connection n
//
// A connection id (cid) is "<gw>-<n>" and a request id (Rid) is
// "<gw>-<n>-<seq>", where gw is the gateway's id ([A-Za-z0-9]+) and n, seq
// are decimal counters, so any gateway can route to a connection or a
// request by its id alone.
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
	return join(Prefix, mmToken, mmPub, tok), nil
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
	return join(Prefix, mmToken, mmReq, tok), nil
}

// MiddlemanGatewayAll is the subject one gateway subscribes to for all of
// its control traffic.
func MiddlemanGatewayAll(gw string) (string, error) {
	if !validGateway(gw) {
		return "", fmt.Errorf("%w: gateway id %q", ErrBadID, gw)
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
		return "", 0, fmt.Errorf("%w: cid %q", ErrBadID, cid)
	}
	n, err = parseCounter(num)
	if err != nil {
		return "", 0, fmt.Errorf("%w: cid %q", ErrBadID, cid)
	}
	return gw, n, nil
}

// MiddlemanRID formats the request id of request seq of connection n.
func MiddlemanRID(gw string, n, seq uint64) string {
	return MiddlemanCID(gw, n) + mmIDSep + strconv.FormatUint(seq, 10)
}

// ParseMiddlemanRID splits a request id.
func ParseMiddlemanRID(rid string) (gw string, n, seq uint64, err error) {
	i := strings.LastIndex(rid, mmIDSep)
	if i < 0 {
		return "", 0, 0, fmt.Errorf("%w: rid %q", ErrBadID, rid)
	}
	gw, n, err = ParseMiddlemanCID(rid[:i])
	if err != nil {
		return "", 0, 0, fmt.Errorf("%w: rid %q", ErrBadID, rid)
	}
	seq, err = parseCounter(rid[i+1:])
	if err != nil {
		return "", 0, 0, fmt.Errorf("%w: rid %q", ErrBadID, rid)
	}
	return gw, n, seq, nil
}

// MiddlemanConn is the control subject of connection n of gateway gw.
func MiddlemanConn(gw string, n uint64) (string, error) {
	if !validGateway(gw) {
		return "", fmt.Errorf("%w: gateway id %q", ErrBadID, gw)
	}
	return join(Prefix, mmToken, mmGateway, gw, mmConn, strconv.FormatUint(n, 10)), nil
}

// MiddlemanReply is the subject answers to request seq of connection n of
// gateway gw arrive on.
func MiddlemanReply(gw string, n, seq uint64) (string, error) {
	if !validGateway(gw) {
		return "", fmt.Errorf("%w: gateway id %q", ErrBadID, gw)
	}
	return join(Prefix, mmToken, mmGateway, gw, mmReply, strconv.FormatUint(n, 10), strconv.FormatUint(seq, 10)), nil
}

// MiddlemanControl is a parsed control subject of one gateway.
type MiddlemanControl struct {
	// Reply is true for sb.mm.gw.<gw>.r.<n>.<seq>, false for .c.<n>.
	Reply bool
	// Conn is the connection number n.
	Conn uint64
	// Seq is the request number (Reply only).
	Seq uint64
}

// ParseMiddlemanControl parses a subject received on
// [MiddlemanGatewayAll](gw).
func ParseMiddlemanControl(gw, subject string) (MiddlemanControl, error) {
	bad := fmt.Errorf("%w: control subject %q", ErrBadID, subject)
	rest, ok := strings.CutPrefix(subject, join(Prefix, mmToken, mmGateway, gw)+".")
	if !ok {
		return MiddlemanControl{}, bad
	}
	parts := strings.Split(rest, ".")
	var c MiddlemanControl
	var err error
	switch {
	case len(parts) == 2 && parts[0] == mmConn:
		c.Conn, err = parseCounter(parts[1])
	case len(parts) == 3 && parts[0] == mmReply:
		c.Reply = true
		if c.Conn, err = parseCounter(parts[1]); err == nil {
			c.Seq, err = parseCounter(parts[2])
		}
	default:
		return MiddlemanControl{}, bad
	}
	if err != nil {
		return MiddlemanControl{}, bad
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
	return cmd + mmTrustSep + tok, nil
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
func validGateway(s string) bool {
	if s == "" || len(s) > maxGatewayN {
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
