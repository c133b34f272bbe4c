// Package k8s renders Lethe's Kubernetes manifests (the kustomize overlays
// under deploy/k8s/overlays) in-process, decodes every object strictly into
// the Kubernetes API types, and checks the properties a platform team
// relies on: probes, resource limits, non-root read-only containers, a
// disruption budget per workload, credentials only in Secrets, tagged
// images, a coordinator, workers and NATS cluster that agree on the
// stream replicas, and per-service NATS keys (each service its own seed
// from its own Secret, the broker's permissions included). CI runs its
// tests, so a misspelt field or a missing probe fails the build instead
// of the rollout. It lives in its own module so that the Kubernetes and
// kustomize dependencies stay out of the services' modules.
package k8s
