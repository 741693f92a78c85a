package megaphone

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
)

const (
	// idLen is the length of a channel id, the middle part of a consumer
	// address.
	idLen = 50
	// eidLen is the length of an event id.
	eidLen = 23
	// consumerSuffix ends every consumer address.
	consumerSuffix = ".1"
	alphanumerics  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// randomAlnum returns n random ASCII alphanumerics from crypto/rand.
func randomAlnum(n int) string {
	return string(appendAlnum(make([]byte, 0, n), n))
}

// randomBlock is a block of crypto/rand bytes that random alphanumerics
// are drawn from, so that an event id costs a fraction of a crypto/rand
// call instead of one. A block is used by one caller at a time (see
// randomBlocks).
type randomBlock struct {
	b   [1024]byte
	off int
}

// randomBlocks holds partly used blocks; a block that comes back empty is
// refilled before use, so no byte is ever used twice.
var randomBlocks = sync.Pool{New: func() any { return &randomBlock{off: 1024} }}

// appendAlnum appends n random ASCII alphanumerics to out, drawn
// uniformly from crypto/rand bytes (channel ids and event ids alike).
func appendAlnum(out []byte, n int) []byte {
	rb := randomBlocks.Get().(*randomBlock)
	defer randomBlocks.Put(rb)
	want := len(out) + n
	for len(out) < want {
		if rb.off == len(rb.b) {
			_, _ = rand.Read(rb.b[:]) // never fails (Go >= 1.24)
			rb.off = 0
		}
		c := rb.b[rb.off]
		rb.off++
		// 248 = 4*62: rejecting the rest keeps the draw uniform.
		if c < 248 {
			out = append(out, alphanumerics[c%62])
		}
	}
	return out
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ConsumerAddress is agent.id.1.
func ConsumerAddress(agent, id string) string { return agent + "." + id + consumerSuffix }

// parseConsumer returns the agent and id of a consumer address; ok is
// false when addr does not have that exact shape.
func parseConsumer(addr string) (agent, id string, ok bool) {
	if !strings.HasSuffix(addr, consumerSuffix) {
		return "", "", false
	}
	agent, id, found := strings.Cut(strings.TrimSuffix(addr, consumerSuffix), ".")
	if !found || agent == "" || len(id) != idLen || !isAlnum(id) {
		return "", "", false
	}
	return agent, id, true
}

// tokenCodec seals channel ids into producer tokens with AES-256-GCM
// under the cluster-wide key. The agent name is the associated data, so a
// token is only valid under the agent it was issued for.
// Verified producer addresses are remembered (at most maxVerified, then
// forgotten all at once), so a busy writer's token is opened once, not
// on every write: the key never changes, so a token that verified once
// always does.
type tokenCodec struct {
	aead     cipher.AEAD
	verified *memo[string, string] // producer address -> channel id
}

// maxVerified bounds the verified producer addresses remembered (about
// 100 bytes each).
const maxVerified = 8192

var tokenEncoding = base64.RawURLEncoding // [A-Za-z0-9_-], never a dot

func newTokenCodec(key []byte) (*tokenCodec, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("megaphone: token key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("megaphone: token key: %w", err)
	}
	return &tokenCodec{aead: aead, verified: newMemo[string, string](maxVerified)}, nil
}

// ProducerAddress returns agent.token for channel id.
func (c *tokenCodec) ProducerAddress(agent, id string) string {
	nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+idLen+c.aead.Overhead())
	_, _ = rand.Read(nonce)
	sealed := c.aead.Seal(nonce, nonce, []byte(id), []byte(agent))
	return agent + "." + tokenEncoding.EncodeToString(sealed)
}

// open verifies a producer token and returns its channel id.
func (c *tokenCodec) open(agent, token string) (string, error) {
	raw, err := tokenEncoding.DecodeString(token)
	if err != nil || len(raw) < c.aead.NonceSize()+c.aead.Overhead() {
		return "", fmt.Errorf("%w: producer token is not valid", ErrBadAddress)
	}
	ns := c.aead.NonceSize()
	id, err := c.aead.Open(nil, raw[:ns], raw[ns:], []byte(agent))
	if err != nil || len(id) != idLen || !isAlnum(string(id)) {
		return "", fmt.Errorf("%w: producer token does not verify", ErrBadAddress)
	}
	return string(id), nil
}

// address is a parsed channel address.
type address struct {
	agent    string
	id       string
	consumer bool
}

// resolve parses a consumer or producer address. A string without a dot
// or a producer token that fails verification is ErrBadAddress.
func (c *tokenCodec) resolve(addr string) (address, error) {
	if agent, id, ok := parseConsumer(addr); ok {
		return address{agent: agent, id: id, consumer: true}, nil
	}
	agent, token, found := strings.Cut(addr, ".")
	if !found || agent == "" || token == "" {
		return address{}, fmt.Errorf("%w: %q is not agent.token", ErrBadAddress, addr)
	}
	if id, ok := c.verified.load(addr); ok {
		return address{agent: agent, id: id}, nil
	}
	id, err := c.open(agent, token)
	if err != nil {
		return address{}, err
	}
	c.verified.store(addr, id)
	return address{agent: agent, id: id}, nil
}
