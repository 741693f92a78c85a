// Package console is the gateway's built-in web console: a page served at
// /ui/ (plain HTML, CSS and JavaScript embedded in the binary; no build
// step, no CDN) and the JSON it reads under /admin/api/.
//
// What the page shows, and where it comes from:
//
//   - Cluster: every gateway publishes a small [Status] on
//     subjects.ConsoleStatus every Config.Interval, and once more marked
//     leaving when it stops. Every console subscribes to that subject and
//     keeps the gateways it heard from in the last 3 intervals, so each
//     gateway's console lists all of them and a stopped one disappears
//     within a few seconds. A status is hostile input: its size, its
//     strings and the number of gateways kept are bounded.
//   - NATS / JetStream: this gateway's connection (state, RTT, server) and
//     Switchboard's streams and buckets (messages, bytes, replicas,
//     leader).
//   - Relay: the agents' nats micro services ($SRV.INFO and $SRV.STATS of
//     the relay service names), grouped by upstream.
//   - Traffic: request and error rates per protocol for the last five
//     minutes: each status carries the gateway's HTTP request totals, and
//     each console sums their growth between two readings.
//   - Megaphone channels, from the broker's admin listing.
//
// What the page lets a user do (pipes, Megaphone, middleman) goes through
// the gateway's public routes, like any client.
//
// Access: every /admin/api/ route needs "Authorization: Bearer <token>"
// when a token is configured. Without one, the console answers only
// clients on the gateway's own host (a loopback peer that sent no
// forwarding header); everyone else gets 403. No secret (token, keys,
// producer addresses, credentials) is ever part of an answer.
package console
