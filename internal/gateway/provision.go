package gateway

import (
	"context"
	"fmt"
	"strings"

	"github.com/switchboard/switchboard/internal/jsutil"
)

// provision waits until JetStream answers, then provisions every service
// at once. Streams and buckets report
// to g.resources, services to g.starting, so /readyz can name what is
// still under way; every retry is logged at WARN.
func (g *Gateway) provision(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, provisionTimeout)
	defer cancel()
	ctx = jsutil.WithProgress(ctx, g.resources)
	g.setPhase("waiting for JetStream")
	if err := jsutil.WaitJetStream(ctx, g.js); err != nil {
		return err
	}
	g.setPhase("provisioning")
	if err := agreePartitions(ctx, g.js, g.cfg.JetStream.Replicas, g.cfg.JetStream.Partitions); err != nil {
		return err
	}
	steps := make([]func(context.Context) error, 0, len(g.services))
	for _, s := range g.services {
		steps = append(steps, func(ctx context.Context) error {
			defer g.starting.Begin(s.name)()
			if err := s.Provision(ctx); err != nil {
				return fmt.Errorf("provision %s: %w", s.name, err)
			}
			return nil
		})
	}
	return jsutil.Parallel(ctx, steps...)
}

// notReadyReason says what start-up is doing: "provisioning stream
// SB_MEGAPHONE, bucket SB_MP_READERS" while streams and buckets are being
// created, "provisioning middleman" while a service does the rest of its
// set-up, "connecting to NATS" and "waiting for JetStream" before.
func (g *Gateway) notReadyReason() string {
	phase := *g.phase.Load()
	if phase != "provisioning" {
		return phase
	}
	pending := g.resources.Pending()
	if len(pending) == 0 {
		pending = g.starting.Pending()
	}
	if len(pending) == 0 {
		return phase
	}
	return phase + " " + strings.Join(pending, ", ")
}
