package k8s

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
)

// overlays are the overlays CI builds, with what each must hold.
var overlays = []struct {
	name string
	want Expect
}{
	{"dev", Expect{StreamReplicas: 1}},
	{"prod", Expect{StreamReplicas: 3, SecretsFromCluster: true, KeysFromSecrets: true}},
}

// prodSecrets are the Secrets the prod overlay expects in the cluster;
// docs/operations.md and overlays/prod/kustomization.yaml list them for
// whoever creates them.
var prodSecrets = []string{"lethe-api-tokens", "lethe-audit-key", "lethe-backups", "lethe-billing", "lethe-certificate-key", "lethe-contacts",
	"lethe-nats-coordinator", "lethe-nats-nkeys", "lethe-nats-worker-backups", "lethe-nats-worker-billing", "lethe-nats-worker-contacts", "lethe-nats-worker-logs",
	"lethe-redis"}

func render(t *testing.T, overlay string) []Object {
	t.Helper()
	objs, err := Render(filepath.Join("overlays", overlay))
	if err != nil {
		t.Fatalf("overlay %s: %v", overlay, err)
	}
	return objs
}

func summary(objs []Object) string {
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.Kind]++
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		parts = append(parts, fmt.Sprintf("%d %s", kinds[k], k))
	}
	return fmt.Sprintf("%d objects (%s)", len(objs), strings.Join(parts, ", "))
}

func TestOverlaysBuildDecodeStrictlyAndPassEveryCheck(t *testing.T) {
	for _, tt := range overlays {
		t.Run(tt.name, func(t *testing.T) {
			objs := render(t, tt.name)
			t.Logf("kustomize build overlays/%s: %s, each decoded strictly into its k8s.io/api type", tt.name, summary(objs))
			problems := Check(objs, tt.want)
			for _, p := range problems {
				t.Error(p)
			}
			if len(problems) == 0 {
				var workloads []string
				for _, o := range objs {
					switch v := o.Obj.(type) {
					case *appsv1.Deployment:
						workloads = append(workloads, fmt.Sprintf("%s×%d", o.Name, replicas(v.Spec.Replicas)))
					case *appsv1.StatefulSet:
						workloads = append(workloads, fmt.Sprintf("%s×%d", o.Name, replicas(v.Spec.Replicas)))
					}
				}
				t.Logf("overlays/%s: every check passed; stream replicas %d; workloads %s", tt.name, tt.want.StreamReplicas, strings.Join(workloads, " "))
			}
		})
	}
}

func TestProdTakesTheDocumentedSecretsFromTheCluster(t *testing.T) {
	got := SecretsReferenced(render(t, "prod"))
	if !slices.Equal(got, prodSecrets) {
		t.Errorf("the prod overlay uses the Secrets %v; the documented list is %v: update prodSecrets, docs/operations.md and overlays/prod/kustomization.yaml together", got, prodSecrets)
	}
	for _, doc := range []string{"../../docs/operations.md", "overlays/prod/kustomization.yaml"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatalf("read %s: %v", doc, err)
		}
		for _, s := range prodSecrets {
			if !bytes.Contains(b, []byte(s)) {
				t.Errorf("%s does not name the Secret %s that the prod overlay needs", doc, s)
			}
		}
	}
}

// The base runs deploy/nats/cluster/nats-server.conf, the file the
// cluster script and the failover tests run; kustomize cannot read it
// from outside its root, so the base holds a copy that must stay equal.
func TestNATSConfigIsTheClusterConfig(t *testing.T) {
	want, err := os.ReadFile("../nats/cluster/nats-server.conf")
	if err != nil {
		t.Fatalf("read the cluster configuration: %v", err)
	}
	got, err := os.ReadFile("base/nats/nats-server.conf")
	if err != nil {
		t.Fatalf("read the base's copy: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Error("deploy/k8s/base/nats/nats-server.conf differs from deploy/nats/cluster/nats-server.conf: " +
			"copy it (cp deploy/nats/cluster/nats-server.conf deploy/k8s/base/nats/) and check the env in deploy/k8s/base/kustomization.yaml (nats-env)")
	}
}

// NATS includes deploy/nats/auth.conf, which lib/brokerauth renders (and
// checks fresh); the base holds a copy for the same reason as above.
func TestNATSAuthIsTheBrokerAuthConf(t *testing.T) {
	want, err := os.ReadFile("../nats/auth.conf")
	if err != nil {
		t.Fatalf("read the broker's permissions: %v", err)
	}
	got, err := os.ReadFile("base/nats/auth.conf")
	if err != nil {
		t.Fatalf("read the base's copy: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Error("deploy/k8s/base/nats/auth.conf differs from deploy/nats/auth.conf: copy it (cp deploy/nats/auth.conf deploy/k8s/base/nats/)")
	}
}

// natsServer is the nats-server the project pins (scripts install it).
const natsServer = "../../.lethe/bin/nats-server"

// Each overlay's NATS configuration, written out as the pod sees it (the
// ConfigMap's files, the public keys, the node's environment), passes
// nats-server's own check (-t). prod's public keys are a Secret of the
// cluster: the dev keys stand in for them.
func TestNATSConfigurationPassesNATSServerTest(t *testing.T) {
	bin, err := filepath.Abs(natsServer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no pinned nats-server at %s to test the configuration with (it is installed with the project's tools): %v", natsServer, err)
	}
	devKeys, err := os.ReadFile("overlays/dev/nats/nkeys.conf")
	if err != nil {
		t.Fatalf("read the dev public keys: %v", err)
	}
	for _, tt := range overlays {
		t.Run(tt.name, func(t *testing.T) {
			objs := render(t, tt.name)
			c := &checker{ix: newIndex(objs), want: tt.want}
			i := slices.IndexFunc(c.ix.workloads, func(w workload) bool { return w.obj.Name == "nats" })
			if i < 0 {
				t.Fatal("no nats StatefulSet")
			}
			w := c.ix.workloads[i]
			ct := &w.tpl.Spec.Containers[0]
			entry, ok := flag(ct, "config", nil)
			if !ok {
				t.Fatal("the nats container has no --config")
			}
			dir := t.TempDir()
			for p, f := range c.mountedFiles(w, ct) {
				if path.Dir(p) != path.Dir(entry) {
					continue
				}
				text := f.text
				if !f.known && path.Base(p) == "nkeys.conf" {
					text = string(devKeys)
				}
				if err := os.WriteFile(filepath.Join(dir, path.Base(p)), []byte(text), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(bin, "-t", "-c", filepath.Join(dir, path.Base(entry)))
			cmd.Env = []string{"NATS_SERVER_NAME=nats-0"}
			for k, v := range c.env(w.obj, "", ct) {
				if v != "" {
					cmd.Env = append(cmd.Env, k+"="+v)
				}
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("nats-server -t -c %s: %v\n%s", entry, err, out)
			}
			t.Logf("nats-server -t, overlays/%s: %s", tt.name, bytes.TrimSpace(out))
		})
	}
}

// The start scripts of Redis and the sentinels run in the redis image's
// POSIX shell; parse them with sh -n so that a syntax error fails here,
// not in a crash-looping pod.
func TestRedisScriptsParse(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH to parse the scripts with")
	}
	scripts, err := filepath.Glob("base/redis/*.sh")
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no scripts under base/redis (%v)", err)
	}
	for _, s := range scripts {
		if out, err := exec.Command(sh, "-n", s).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", s, err, out)
		}
	}
}

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: typo
  namespace: lethe
spec:
  selector:
    matchLabels: {app: typo}
  template:
    metadata:
      labels: {app: typo}
    spec:
      containers:
        - name: typo
          image: lethe/coordinator:1
          securityContext:
            %s
`

func TestStrictDecodingRejectsWhatKubectlWouldDropSilently(t *testing.T) {
	dec, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		give string
		want string // in the error
	}{
		{"unknown field", fmt.Sprintf(deployment, "readOnlyRootFS: true"), `unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFS"`},
		{"wrong case", fmt.Sprintf(deployment, "readonlyRootFilesystem: true"), `unknown field "spec.template.spec.containers[0].securityContext.readonlyRootFilesystem"`},
		{"duplicate field", fmt.Sprintf(deployment, "runAsNonRoot: true\n            runAsNonRoot: false"), `already set`},
		{"wrong type", fmt.Sprintf(deployment, "runAsNonRoot: \"yes\""), `runAsNonRoot`},
		{"unknown kind", "apiVersion: v1\nkind: Secrett\nmetadata: {name: x}\n", `Secrett`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dec.Decode([]byte(tt.give))
			if err == nil {
				t.Fatalf("decoded without error; want one mentioning %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		o, err := dec.Decode([]byte(fmt.Sprintf(deployment, "readOnlyRootFilesystem: true")))
		if err != nil {
			t.Fatalf("valid object: %v", err)
		}
		d, ok := o.Obj.(*appsv1.Deployment)
		if !ok || !*d.Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem || o.String() != "Deployment lethe/typo" {
			t.Errorf("decoded %s as %#v", o, o.Obj)
		}
	})
}

// Each mutation breaks one property of the rendered dev overlay; Check
// must name the object and the field.
func TestCheckNamesTheObjectAndFieldOfEachBrokenProperty(t *testing.T) {
	base := render(t, "dev")
	want := overlays[0].want
	if problems := Check(base, want); len(problems) > 0 {
		t.Fatalf("the dev overlay must pass before it is broken: %v", problems)
	}
	container := func(objs []Object, name string) *corev1.Container {
		for _, o := range objs {
			if d, ok := o.Obj.(*appsv1.Deployment); ok && o.Name == name {
				return &d.Spec.Template.Spec.Containers[0]
			}
		}
		t.Fatalf("no Deployment %s", name)
		return nil
	}
	configMap := func(objs []Object, prefix string) *corev1.ConfigMap {
		for _, o := range objs {
			if cm, ok := o.Obj.(*corev1.ConfigMap); ok && strings.HasPrefix(o.Name, prefix) {
				return cm
			}
		}
		t.Fatalf("no ConfigMap %s*", prefix)
		return nil
	}
	f := false
	tests := []struct {
		name   string
		mutate func([]Object) []Object
		want   string
	}{
		{"readiness probe removed", func(objs []Object) []Object {
			container(objs, "coordinator").ReadinessProbe = nil
			return objs
		}, "Deployment lethe-dev/coordinator: spec.template.spec.containers[coordinator].readinessProbe: missing"},
		{"readiness on the wrong path", func(objs []Object) []Object {
			container(objs, "logs-worker").ReadinessProbe.HTTPGet.Path = "/healthz"
			return objs
		}, "Deployment lethe-dev/logs-worker: spec.template.spec.containers[logs-worker].readinessProbe.httpGet: want GET /readyz on port http"},
		{"writable root file system", func(objs []Object) []Object {
			container(objs, "billing-worker").SecurityContext.ReadOnlyRootFilesystem = &f
			return objs
		}, "Deployment lethe-dev/billing-worker: spec.template.spec.containers[billing-worker].securityContext.readOnlyRootFilesystem: want true"},
		{"memory limit removed", func(objs []Object) []Object {
			delete(container(objs, "contacts-worker").Resources.Limits, corev1.ResourceMemory)
			return objs
		}, "Deployment lethe-dev/contacts-worker: spec.template.spec.containers[contacts-worker].resources.limits.memory: missing"},
		{"image not tagged", func(objs []Object) []Object {
			container(objs, "backups-worker").Image = "lethe/backups-worker:latest"
			return objs
		}, `Deployment lethe-dev/backups-worker: spec.template.spec.containers[backups-worker].image: "lethe/backups-worker:latest": name a version tag`},
		{"disruption budget removed", func(objs []Object) []Object {
			return slices.DeleteFunc(objs, func(o Object) bool { return o.Kind == "PodDisruptionBudget" && o.Name == "logs-worker" })
		}, "Deployment lethe-dev/logs-worker: PodDisruptionBudget: none selects its pods"},
		{"budget that blocks drains", func(objs []Object) []Object {
			for _, o := range objs {
				if p, ok := o.Obj.(*policyv1.PodDisruptionBudget); ok && o.Name == "coordinator" {
					zero := p.Spec.MaxUnavailable
					zero.IntVal = 0
				}
			}
			return objs
		}, "PodDisruptionBudget lethe-dev/coordinator: spec.maxUnavailable: 0 allows no disruption"},
		{"password in a ConfigMap", func(objs []Object) []Object {
			configMap(objs, "coordinator-").Data["LETHE_REDIS_URL"] = "redis://:hunter2@redis:6379/0"
			return objs
		}, "data[LETHE_REDIS_URL]: holds a credential"},
		{"credential as a literal env value", func(objs []Object) []Object {
			c := container(objs, "billing-worker")
			for i := range c.Env {
				if c.Env[i].Name == "LETHE_STRIPE_API_KEY" {
					c.Env[i] = corev1.EnvVar{Name: "LETHE_STRIPE_API_KEY", Value: "sk_test_inline"}
				}
			}
			return objs
		}, "spec.template.spec.containers[billing-worker].env[LETHE_STRIPE_API_KEY].value: a credential as a literal value"},
		{"stream replicas above the nodes", func(objs []Object) []Object {
			configMap(objs, "lethe-common-").Data["LETHE_STREAM_REPLICAS"] = "3"
			return objs
		}, "Deployment lethe-dev/coordinator: spec.template.spec.containers[coordinator].args: -stream-replicas is \"3\", want 1"},
		{"logs root on the root file system", func(objs []Object) []Object {
			c := container(objs, "logs-worker")
			c.VolumeMounts = nil
			return objs
		}, "Deployment lethe-dev/logs-worker: spec.template.spec.containers[logs-worker].volumeMounts: LETHE_LOGS_ROOT /var/lib/lethe/logs is on the read-only root file system"},
		{"capabilities kept", func(objs []Object) []Object {
			container(objs, "coordinator").SecurityContext.Capabilities = nil
			return objs
		}, "securityContext.capabilities.drop: want [ALL]"},
		{"missing secret", func(objs []Object) []Object {
			return slices.DeleteFunc(objs, func(o Object) bool { return o.Kind == "Secret" && strings.HasPrefix(o.Name, "lethe-billing") })
		}, "spec.template.spec.containers[billing-worker].env[LETHE_BILLING_DSN].valueFrom.secretKeyRef: no Secret"},
		{"sentinel list out of date", func(objs []Object) []Object {
			for _, o := range objs {
				if s, ok := o.Obj.(*appsv1.StatefulSet); ok && o.Name == "redis-sentinel" {
					three := int32(3)
					s.Spec.Replicas = &three
				}
			}
			return objs
		}, "env[LETHE_REDIS_SENTINELS]"},
		{"audit key left to its relative default", func(objs []Object) []Object {
			delete(configMap(objs, "coordinator-").Data, "LETHE_AUDIT_KEY")
			return objs
		}, "spec.template.spec.containers[coordinator].env[LETHE_AUDIT_KEY]: not set"},
		{"keys created by several replicas", func(objs []Object) []Object {
			for _, o := range objs {
				if d, ok := o.Obj.(*appsv1.Deployment); ok && o.Name == "coordinator" {
					two := int32(2)
					d.Spec.Replicas = &two
				}
			}
			return objs
		}, "env[LETHE_CERTIFICATE_KEY_CREATE]: true with 2 replicas: each would create its own key"},
		{"nats seed file not set", func(objs []Object) []Object {
			delete(configMap(objs, "logs-worker-").Data, "LETHE_NATS_NKEY_SEED_FILE")
			return objs
		}, "Deployment lethe-dev/logs-worker: spec.template.spec.containers[logs-worker].env[LETHE_NATS_NKEY_SEED_FILE]: not set"},
		{"another service's seed", func(objs []Object) []Object {
			configMap(objs, "billing-worker-").Data["LETHE_NATS_NKEY_SEED_FILE"] = "/etc/lethe/nats/coordinator.nk"
			return objs
		}, `env[LETHE_NATS_NKEY_SEED_FILE]: "/etc/lethe/nats/coordinator.nk" is not the seed of worker-billing`},
		{"nats seed on a writable emptyDir", func(objs []Object) []Object {
			for _, o := range objs {
				if d, ok := o.Obj.(*appsv1.Deployment); ok && o.Name == "coordinator" {
					for i, v := range d.Spec.Template.Spec.Volumes {
						if v.Name == "nats-seed" {
							d.Spec.Template.Spec.Volumes[i].VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
						}
					}
				}
			}
			return objs
		}, "Deployment lethe-dev/coordinator: spec.template.spec.containers[coordinator].volumeMounts: LETHE_NATS_NKEY_SEED_FILE /etc/lethe/nats/coordinator.nk is not in a Secret volume"},
		{"seed Secret missing", func(objs []Object) []Object {
			return slices.DeleteFunc(objs, func(o Object) bool {
				return o.Kind == "Secret" && strings.HasPrefix(o.Name, "lethe-nats-worker-contacts")
			})
		}, `Deployment lethe-dev/contacts-worker: spec.template.spec.volumes[nats-seed].secret.secretName: no Secret "lethe-nats-worker-contacts`},
		{"nats without the permissions", func(objs []Object) []Object {
			cm := configMap(objs, "nats-config-")
			cm.Data["nats.conf"] = strings.ReplaceAll(cm.Data["nats.conf"], `include "auth.conf"`, "")
			return objs
		}, "StatefulSet lethe-dev/nats: spec.template.spec.containers[nats].args: the configuration /etc/nats/nats.conf does not include auth.conf"},
		{"nats public keys missing one identity", func(objs []Object) []Object {
			for _, o := range objs {
				if s, ok := o.Obj.(*corev1.Secret); ok && strings.HasPrefix(o.Name, "lethe-nats-nkeys") {
					var kept []string
					for _, l := range strings.Split(string(s.Data["nkeys.conf"]), "\n") {
						if !strings.HasPrefix(l, "LETHE_NKEY_WORKER_LOGS") {
							kept = append(kept, l)
						}
					}
					s.Data["nkeys.conf"] = []byte(strings.Join(kept, "\n"))
				}
			}
			return objs
		}, "StatefulSet lethe-dev/nats: spec.template.spec.containers[nats].env: /etc/nats/auth.conf uses $LETHE_NKEY_WORKER_LOGS, which neither"},
		{"nats node count", func(objs []Object) []Object {
			for _, o := range objs {
				if s, ok := o.Obj.(*appsv1.StatefulSet); ok && o.Name == "nats" {
					three := int32(3)
					s.Spec.Replicas = &three
				}
			}
			return objs
		}, "StatefulSet lethe-dev/nats: spec.replicas: 3 NATS nodes, want 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := tt.mutate(deepCopy(base))
			problems := Check(objs, want)
			var msgs []string
			for _, p := range problems {
				msgs = append(msgs, p.Error())
			}
			if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, tt.want) }) {
				t.Errorf("no problem mentions %q; got:\n  %s", tt.want, strings.Join(msgs, "\n  "))
			}
		})
	}
}

func deepCopy(objs []Object) []Object {
	out := make([]Object, len(objs))
	for i, o := range objs {
		o.Obj = o.Obj.DeepCopyObject()
		out[i] = o
	}
	return out
}
