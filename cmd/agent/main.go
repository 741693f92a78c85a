// Command agent is the relay's remote side. `agent upstream` serves named
// upstreams to the cluster as NATS responders; `agent client` relays every
// request of a local HTTP listener to one upstream.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchboard/switchboard/internal/agent"
	"github.com/switchboard/switchboard/internal/buildinfo"
	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/logging"
)

const usage = `usage: agent <command> [flags]

commands:
  upstream   serve upstreams: --nats URL --name NAME --target http://host:port
             (or repeated --upstream NAME=URL)
  client     local relay: --nats URL --listen ADDR --upstream NAME
  version    print the version

Run 'agent <command> --help' for the flags of a command. Every flag also
reads SWITCHBOARD_AGENT_<KEY> from the environment and <key> from --config.
`

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "version":
		fmt.Println("switchboard agent", buildinfo.Version())
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stderr, usage)
		return 0
	case "upstream":
		var cfg agent.AgentUpstream
		if code, ok := load(agent.UpstreamLoader(), args[1:], &cfg, cfg.Validate, stderr); !ok {
			return code
		}
		err = agent.RunUpstream(ctx, &cfg, logging.New(os.Stderr, cfg.Log.Level, cfg.Log.Format))
	case "client":
		var cfg agent.AgentClient
		if code, ok := load(agent.ClientLoader(), args[1:], &cfg, cfg.Validate, stderr); !ok {
			return code
		}
		err = agent.RunClient(ctx, &cfg, logging.New(os.Stderr, cfg.Log.Level, cfg.Log.Format))
	default:
		fmt.Fprintf(stderr, "agent: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "agent:", err)
		return 1
	}
	return 0
}

// load parses and validates a subcommand's config; ok is false when the
// command should exit with code.
func load(l *config.Loader, args []string, out any, validate func() error, stderr io.Writer) (int, bool) {
	l.Output = stderr
	rest, err := l.Load(args, out)
	if errors.Is(err, config.ErrHelp) {
		return 0, false
	}
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("unexpected argument %q", rest[0])
	}
	if err == nil {
		err = validate()
	}
	if err != nil {
		fmt.Fprintln(stderr, "agent:", err)
		return 2, false
	}
	return 0, true
}
