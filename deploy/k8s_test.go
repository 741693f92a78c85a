package deploy

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// k8sObjects loads every resource kustomization.yaml lists, by "Kind/name".
func k8sObjects(t *testing.T, kust map[string]any) map[string]map[string]any {
	t.Helper()
	objs := map[string]map[string]any{}
	for _, r := range list(kust, "resources") {
		for _, doc := range yamlDocs(t, fmt.Sprint(r)) {
			kind, name := str(doc, "kind"), str(doc, "metadata", "name")
			if kind == "" || name == "" || str(doc, "apiVersion") == "" {
				t.Errorf("%s: a document without apiVersion, kind or metadata.name", r)
				continue
			}
			if objs[kind+"/"+name] != nil {
				t.Errorf("%s/%s defined twice", kind, name)
			}
			objs[kind+"/"+name] = doc
		}
	}
	return objs
}

func containers(obj map[string]any) []any { return list(obj, "spec", "template", "spec", "containers") }

// envNames maps a container's env names to their value or secret key.
func envNames(c any) map[string]string {
	out := map[string]string{}
	for _, e := range list(c, "env") {
		v := str(e, "value")
		if k := str(e, "valueFrom", "secretKeyRef", "key"); k != "" {
			v = "secret:" + k
		}
		out[str(e, "name")] = v
	}
	return out
}

// probe returns a container probe's HTTP path and port.
func probe(c any, kind string) (string, any) {
	return str(c, kind, "httpGet", "path"), get(c, kind, "httpGet", "port")
}

// TestKustomization checks deploy/kustomization.yaml and deploy/k8s: the
// ConfigMaps are generated from the shared config files, secrets and config
// maps referenced exist, NATS is a 3-replica JetStream StatefulSet whose
// environment covers every variable nats.conf reads, and the gateway has
// readiness on /readyz, liveness on /healthz, a PodDisruptionBudget, an HPA
// and a termination grace that covers preStop + shutdown.grace.
func TestKustomization(t *testing.T) {
	kust := yamlDocs(t, "kustomization.yaml")[0]
	generated := map[string]bool{}
	for _, g := range list(kust, "configMapGenerator") {
		generated[str(g, "name")] = true
		for _, f := range list(g, "files") {
			path := fmt.Sprint(f)
			if _, p, ok := strings.Cut(path, "="); ok {
				path = p
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("configMapGenerator %s: %v", str(g, "name"), err)
			}
		}
	}
	for _, want := range []string{"nats-config", "gateway-config", "agent-config"} {
		if !generated[want] {
			t.Errorf("configMapGenerator lacks %s", want)
		}
	}
	sg := list(kust, "secretGenerator")
	if len(sg) != 1 || str(sg[0], "name") != "switchboard-secrets" || fmt.Sprint(list(sg[0], "envs")) != "[.env]" {
		t.Errorf("secretGenerator must build switchboard-secrets from .env (the compose file's secrets)")
	}
	images := map[string]bool{}
	for _, i := range list(kust, "images") {
		images[str(i, "name")] = true
	}
	objs := k8sObjects(t, kust)
	secrets := envExample(t)
	for key, obj := range objs {
		for _, v := range list(obj, "spec", "template", "spec", "volumes") {
			if cm := str(v, "configMap", "name"); cm != "" && !generated[cm] {
				t.Errorf("%s mounts ConfigMap %s, which is not generated", key, cm)
			}
		}
		for _, c := range containers(obj) {
			for _, e := range list(c, "env") {
				ref := get(e, "valueFrom", "secretKeyRef")
				if ref == nil {
					continue
				}
				if _, ok := secrets[str(ref, "key")]; !ok || str(ref, "name") != "switchboard-secrets" {
					t.Errorf("%s: secret %s/%s is not in env.example", key, str(ref, "name"), str(ref, "key"))
				}
			}
			img := str(c, "image")
			if strings.HasPrefix(img, "switchboard/") && !images[img] {
				t.Errorf("%s: image %s is not in the kustomize images list", key, img)
			}
		}
	}
	checkNATSStatefulSet(t, objs)
	checkGateway(t, objs)
	agent := objs["Deployment/agent-demo"]
	if agent == nil || len(containers(agent)) != 1 {
		t.Fatal("no Deployment/agent-demo")
	}
	if _, ok := agentUpstreams[envNames(containers(agent)[0])["SWITCHBOARD_AGENT_NATS_USER"]]; !ok {
		t.Error("agent-demo does not use an agent user of accounts.conf")
	}
}

func checkNATSStatefulSet(t *testing.T, objs map[string]map[string]any) {
	t.Helper()
	ss := objs["StatefulSet/nats"]
	if ss == nil || len(containers(ss)) != 1 {
		t.Fatal("no StatefulSet/nats with one container")
	}
	if num(ss, "spec", "replicas") != 3 || str(ss, "spec", "podManagementPolicy") != "Parallel" {
		t.Errorf("StatefulSet/nats: want 3 replicas started in parallel")
	}
	if len(list(ss, "spec", "volumeClaimTemplates")) != 1 {
		t.Error("StatefulSet/nats: JetStream needs a volumeClaimTemplate")
	}
	c := containers(ss)[0]
	env := envNames(c)
	for _, v := range natsConfVars(t) {
		if _, ok := env[v]; !ok {
			t.Errorf("StatefulSet/nats: nats.conf reads $%s, not set", v)
		}
	}
	for i := range 3 {
		if !strings.Contains(env["NATS_ROUTES"], fmt.Sprintf("@nats-%d.nats:6222", i)) {
			t.Errorf("NATS_ROUTES lacks nats-%d", i)
		}
	}
	if p, _ := probe(c, "readinessProbe"); !strings.HasPrefix(p, "/healthz") {
		t.Errorf("StatefulSet/nats: readiness probe %q", p)
	}
	if objs["Service/nats"] == nil || str(objs["Service/nats"], "spec", "clusterIP") != "None" {
		t.Error("no headless Service/nats for the routes")
	}
	if objs["PodDisruptionBudget/nats"] == nil {
		t.Error("no PodDisruptionBudget/nats")
	}
}

func checkGateway(t *testing.T, objs map[string]map[string]any) {
	t.Helper()
	d := objs["Deployment/gateway"]
	if d == nil || len(containers(d)) != 1 {
		t.Fatal("no Deployment/gateway with one container")
	}
	c := containers(d)[0]
	if p, port := probe(c, "readinessProbe"); p != "/readyz" || port == nil {
		t.Errorf("gateway readiness probe %q", p)
	}
	if p, port := probe(c, "livenessProbe"); p != "/healthz" || port == nil {
		t.Errorf("gateway liveness probe %q", p)
	}
	if fmt.Sprint(get(list(c, "ports")[0], "containerPort")) != "8080" {
		t.Error("gateway container port must be 8080 (listen in cluster.yaml)")
	}
	env := envNames(c)
	for i := range 3 {
		if !strings.Contains(env["SWITCHBOARD_NATS_URL"], fmt.Sprintf("nats://nats-%d.nats:4222", i)) {
			t.Errorf("gateway SWITCHBOARD_NATS_URL lacks nats-%d", i)
		}
	}
	if env["SWITCHBOARD_NATS_USER"] != "gateway" || env["SWITCHBOARD_NATS_PASSWORD"] != "secret:SB_GATEWAY_PASSWORD" {
		t.Error("gateway must authenticate as gateway with SB_GATEWAY_PASSWORD")
	}
	preStop := time.Duration(num(c, "lifecycle", "preStop", "sleep", "seconds")) * time.Second
	grace := time.Duration(num(d, "spec", "template", "spec", "terminationGracePeriodSeconds")) * time.Second
	if preStop <= 0 || grace < preStop+shutdownGrace(t)+5*time.Second {
		t.Errorf("gateway: terminationGracePeriodSeconds %s < preStop %s + shutdown.grace %s + 5s", grace, preStop, shutdownGrace(t))
	}
	labels, _ := get(d, "spec", "template", "metadata", "labels").(map[string]any)
	matches := func(kind string, sel any) {
		m, _ := sel.(map[string]any)
		if len(m) == 0 {
			t.Errorf("%s/gateway has no selector", kind)
		}
		for k, v := range m {
			if labels[k] != v {
				t.Errorf("%s/gateway selector %s=%v does not match the pods", kind, k, v)
			}
		}
	}
	svc, pdb, hpa := objs["Service/gateway"], objs["PodDisruptionBudget/gateway"], objs["HorizontalPodAutoscaler/gateway"]
	if svc == nil || pdb == nil || hpa == nil {
		t.Fatal("gateway needs a Service, a PodDisruptionBudget and a HorizontalPodAutoscaler")
	}
	matches("Service", get(svc, "spec", "selector"))
	matches("PodDisruptionBudget", get(pdb, "spec", "selector", "matchLabels"))
	if a := str(svc, "spec", "sessionAffinity"); a != "" && a != "None" {
		t.Errorf("Service/gateway sessionAffinity %q: no stickiness", a)
	}
	if str(hpa, "spec", "scaleTargetRef", "kind") != "Deployment" || str(hpa, "spec", "scaleTargetRef", "name") != "gateway" {
		t.Error("HPA does not target Deployment/gateway")
	}
	if num(hpa, "spec", "minReplicas") < 2 {
		t.Error("HPA minReplicas < 2: one gateway is no cluster")
	}
	ing := objs["Ingress/gateway"]
	ann, _ := get(ing, "metadata", "annotations").(map[string]any)
	want := map[string]any{"nginx.ingress.kubernetes.io/proxy-buffering": "off", "nginx.ingress.kubernetes.io/proxy-request-buffering": "off"}
	for k, v := range want {
		if ann[k] != v {
			t.Errorf("Ingress/gateway: %s = %v, want %v", k, ann[k], v)
		}
	}
	checkIngressNoDelay(t, ann)
	gw := loadGateway(t, "gateway/cluster.yaml")
	longest := max(gw.Megaphone.PollDuration, gw.Relay.ResponseTimeout, gw.Pipe.Timeout)
	for _, k := range []string{"proxy-read-timeout", "proxy-send-timeout"} {
		secs, err := strconv.Atoi(fmt.Sprint(ann["nginx.ingress.kubernetes.io/"+k]))
		if err != nil || time.Duration(secs)*time.Second <= longest {
			t.Errorf("Ingress/gateway: %s = %v s, must exceed the longest gateway wait %s", k, ann["nginx.ingress.kubernetes.io/"+k], longest)
		}
	}
}

// checkIngressNoDelay refuses Ingress annotations that would hold streamed
// responses back (the ingress-nginx counterparts of removing HAProxy's
// `option http-no-delay`): a snippet turning buffering back on, Nagle's
// algorithm, compression or postponed output.
func checkIngressNoDelay(t *testing.T, ann map[string]any) {
	t.Helper()
	for k, v := range ann {
		val := strings.Join(strings.Fields(strings.ToLower(fmt.Sprint(v))), " ")
		for _, bad := range []string{"proxy_buffering on", "tcp_nodelay off", "gzip on", "brotli on", "postpone_output"} {
			if strings.Contains(val, bad) {
				t.Errorf("Ingress/gateway: annotation %s contains %q: streamed events would be held back", k, bad)
			}
		}
	}
}
