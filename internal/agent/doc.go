// Package agent implements the agent binary's two roles of the HTTP relay:
// `upstream` serves named upstreams as NATS responders by calling their
// target URLs, and `client` is a local HTTP server whose every request is
// relayed to one upstream. The agent only connects out to NATS.
package agent
