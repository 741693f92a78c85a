// Package deploy holds Switchboard's deployment files: the 3-node NATS
// cluster config (nats/), gateway and agent configs (gateway/, agent/), the
// load balancer (lb/), the local cluster script (local/), the container
// images and compose file (docker/, docker-compose.yml) and the Kubernetes
// manifests (k8s/, kustomization.yaml). It has no code; its tests load every
// file through the real parsers and check that the files agree with each
// other and with the gateway's configuration keys.
package deploy
