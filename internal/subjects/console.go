package subjects

import "strings"

// Console subjects and discovery names.
//
//	sb.console.status   every gateway publishes its status here periodically
//	                    (and once more, marked as leaving, when it stops);
//	                    every console subscribes to it to list the cluster
const consoleToken = "console"

// ConsoleStatus is the subject gateways publish their console status on.
func ConsoleStatus() string { return join(Prefix, consoleToken, "status") }

// Micro discovery subjects of nats micro services: a request on one of
// them is answered by every service instance the requester may see.
const (
	MicroInfo  = "$SRV.INFO"
	MicroStats = "$SRV.STATS"
)

// IsSwitchboardStream reports whether the JetStream stream name belongs to
// Switchboard: its own streams (SB_...) and the streams backing its KV
// buckets (KV_SB_... and KV_sb_...).
func IsSwitchboardStream(name string) bool {
	return strings.HasPrefix(name, "SB_") || strings.HasPrefix(name, kvStreamPfx+"SB_") || strings.HasPrefix(name, kvStreamPfx+"sb_")
}
