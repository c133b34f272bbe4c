package k8s

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Expect is what one overlay must hold beyond the rules every overlay
// shares.
type Expect struct {
	// StreamReplicas is the replicas of every JetStream stream, as the
	// coordinator and every worker get it (-stream-replicas), and the
	// size of the NATS StatefulSet.
	StreamReplicas int
	// SecretsFromCluster says the overlay renders no Secret: the ones it
	// references are created in the cluster, never kept in the repository.
	SecretsFromCluster bool
	// KeysFromSecrets says the coordinator must load its certificate
	// signing key and its audit keys from Secrets and never create them.
	KeysFromSecrets bool
}

// Problem is one finding: the object, the field's path and what is wrong.
type Problem struct {
	Object string
	Field  string
	Msg    string
}

func (p Problem) Error() string { return p.Object + ": " + p.Field + ": " + p.Msg }

// Check returns every problem in objs, the rendered objects of one
// overlay; none means the overlay holds every property below.
//
// For every Deployment and StatefulSet: a selector that matches its pod
// template, exactly one PodDisruptionBudget that selects its pods and
// allows a disruption, non-root pods with the runtime's seccomp profile,
// and in every container a tagged image, no privilege escalation, a
// read-only root file system, every capability dropped, CPU and memory
// requests and limits, and (but init containers) liveness and readiness
// probes on declared ports; every ConfigMap, Secret and claim it uses
// exists (Secrets only when the overlay renders them), and every path a
// Lethe service writes is on a writable volume. Lethe's own containers
// (images lethe/*) serve /healthz and /readyz on the port of
// LETHE_HTTP_ADDR, get want.StreamReplicas, and connect to NATS as
// themselves: LETHE_NATS_NKEY_SEED_FILE names their own seed
// (<identity>.nk) on a read-only Secret volume that holds it alone.
// Services select pods and target their named ports; ConfigMaps hold no
// credentials; literal env values are not credentials. NATS runs
// want.StreamReplicas nodes with a route to each, its store on a claim
// template, and a configuration that includes auth.conf (Lethe's
// per-service permissions), whose public keys come from a Secret; the
// coordinator's sentinels are the redis-sentinel StatefulSet's pods.
func Check(objs []Object, want Expect) []error {
	ix := newIndex(objs)
	c := &checker{ix: ix, want: want}
	c.namespaces()
	for _, w := range ix.workloads {
		c.workload(w)
	}
	for _, o := range objs {
		switch v := o.Obj.(type) {
		case *corev1.Service:
			c.service(o, v)
		case *corev1.ConfigMap:
			c.configMap(o, v)
		case *corev1.Secret:
			if want.SecretsFromCluster {
				c.add(o, "kind", "this overlay takes its credentials from the cluster: render no Secret (remove it from the overlay)")
			}
		}
	}
	c.pdbsSelectSomething()
	c.sentinels()
	return c.problems
}

// SecretsReferenced lists the names of the Secrets the workloads in objs
// use (env, envFrom and volumes), sorted.
func SecretsReferenced(objs []Object) []string {
	ix := newIndex(objs)
	var names []string
	for _, w := range ix.workloads {
		for _, r := range w.refs() {
			if r.kind == "Secret" && !slices.Contains(names, r.name) {
				names = append(names, r.name)
			}
		}
	}
	slices.Sort(names)
	return names
}

// workload is a Deployment or a StatefulSet, seen through what they share.
type workload struct {
	obj      Object
	replicas int32
	selector *metav1.LabelSelector
	tpl      *corev1.PodTemplateSpec
	claims   []corev1.PersistentVolumeClaim // StatefulSet volumeClaimTemplates
	service  string                         // StatefulSet serviceName
}

type index struct {
	objs       []Object
	workloads  []workload
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	claims     map[string]bool
	pdbs       []Object
}

func newIndex(objs []Object) *index {
	ix := &index{objs: objs, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}, claims: map[string]bool{}}
	for _, o := range objs {
		switch v := o.Obj.(type) {
		case *appsv1.Deployment:
			ix.workloads = append(ix.workloads, workload{obj: o, replicas: replicas(v.Spec.Replicas), selector: v.Spec.Selector, tpl: &v.Spec.Template})
		case *appsv1.StatefulSet:
			ix.workloads = append(ix.workloads, workload{obj: o, replicas: replicas(v.Spec.Replicas), selector: v.Spec.Selector, tpl: &v.Spec.Template,
				claims: v.Spec.VolumeClaimTemplates, service: v.Spec.ServiceName})
		case *corev1.ConfigMap:
			ix.configMaps[v.Name] = v
		case *corev1.Secret:
			ix.secrets[v.Name] = v
		case *corev1.PersistentVolumeClaim:
			ix.claims[v.Name] = true
		case *policyv1.PodDisruptionBudget:
			ix.pdbs = append(ix.pdbs, o)
		}
	}
	return ix
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1 // the API's default
	}
	return *r
}

type checker struct {
	ix       *index
	want     Expect
	problems []error
}

func (c *checker) add(o Object, field, format string, args ...any) {
	c.problems = append(c.problems, Problem{Object: o.String(), Field: field, Msg: fmt.Sprintf(format, args...)})
}

// namespaces: every namespaced object in one namespace, which the overlay
// creates with the restricted Pod Security Standard enforced.
func (c *checker) namespaces() {
	var nsObj *corev1.Namespace
	for _, o := range c.ix.objs {
		if ns, ok := o.Obj.(*corev1.Namespace); ok {
			nsObj = ns
		}
	}
	if nsObj == nil {
		c.problems = append(c.problems, Problem{Object: "overlay", Field: "resources", Msg: "no Namespace object: add one with pod-security.kubernetes.io/enforce: restricted"})
		return
	}
	if nsObj.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		c.add(Object{Kind: "Namespace", Name: nsObj.Name}, "metadata.labels[pod-security.kubernetes.io/enforce]", "want restricted, got %q", nsObj.Labels["pod-security.kubernetes.io/enforce"])
	}
	for _, o := range c.ix.objs {
		if o.Kind != "Namespace" && o.Namespace != nsObj.Name {
			c.add(o, "metadata.namespace", "want %q (the overlay's namespace), got %q", nsObj.Name, o.Namespace)
		}
	}
}

func (c *checker) workload(w workload) {
	o, spec := w.obj, &w.tpl.Spec
	sel, err := metav1.LabelSelectorAsSelector(w.selector)
	switch {
	case err != nil || w.selector == nil:
		c.add(o, "spec.selector", "missing or invalid: %v", err)
	case !sel.Matches(labels.Set(w.tpl.Labels)):
		c.add(o, "spec.selector", "does not match the pod template's labels %v", w.tpl.Labels)
	}
	c.pdbFor(w)
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		c.add(o, "spec.template.spec.automountServiceAccountToken", "want false: no Lethe pod talks to the Kubernetes API")
	}
	for _, v := range spec.Volumes {
		c.volumeRef(o, w, v)
	}
	for i := range spec.InitContainers {
		c.container(w, &spec.InitContainers[i], "initContainers", false)
	}
	for i := range spec.Containers {
		c.container(w, &spec.Containers[i], "containers", true)
	}
	if w.obj.Name == "nats" {
		c.nats(w)
	}
}

// pdbFor: exactly one PodDisruptionBudget selects the workload's pods,
// and it lets a node drain take one of them.
func (c *checker) pdbFor(w workload) {
	var found []*policyv1.PodDisruptionBudget
	for _, p := range c.ix.pdbs {
		pdb := p.Obj.(*policyv1.PodDisruptionBudget)
		if sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err == nil && !sel.Empty() && sel.Matches(labels.Set(w.tpl.Labels)) {
			found = append(found, pdb)
		}
	}
	switch {
	case len(found) == 0:
		c.add(w.obj, "PodDisruptionBudget", "none selects its pods (labels %v): add one with maxUnavailable: 1", w.tpl.Labels)
		return
	case len(found) > 1:
		c.add(w.obj, "PodDisruptionBudget", "%d select its pods; the eviction API refuses pods with more than one", len(found))
		return
	}
	pdb := found[0]
	obj := Object{Kind: "PodDisruptionBudget", Namespace: pdb.Namespace, Name: pdb.Name}
	if mu := pdb.Spec.MaxUnavailable; mu != nil {
		if v, err := intstr.GetScaledValueFromIntOrPercent(mu, int(w.replicas), true); err != nil || v < 1 {
			c.add(obj, "spec.maxUnavailable", "%s allows no disruption of %s: node drains would hang", mu.String(), w.obj)
		}
	}
	if ma := pdb.Spec.MinAvailable; ma != nil {
		if v, err := intstr.GetScaledValueFromIntOrPercent(ma, int(w.replicas), true); err != nil || v >= int(w.replicas) {
			c.add(obj, "spec.minAvailable", "%s with %d replicas of %s allows no disruption: node drains would hang", ma.String(), w.replicas, w.obj)
		}
	}
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		c.add(obj, "spec", "neither maxUnavailable nor minAvailable is set")
	}
}

func (c *checker) pdbsSelectSomething() {
	for _, p := range c.ix.pdbs {
		pdb := p.Obj.(*policyv1.PodDisruptionBudget)
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() {
			c.add(p, "spec.selector", "missing or empty: an empty selector matches every pod of the namespace")
			continue
		}
		if !slices.ContainsFunc(c.ix.workloads, func(w workload) bool { return sel.Matches(labels.Set(w.tpl.Labels)) }) {
			c.add(p, "spec.selector", "selects no workload's pods")
		}
	}
}

// volumeRef: the ConfigMap, Secret or claim behind a volume exists.
func (c *checker) volumeRef(o Object, w workload, v corev1.Volume) {
	field := "spec.template.spec.volumes[" + v.Name + "]"
	switch {
	case v.ConfigMap != nil:
		if c.ix.configMaps[v.ConfigMap.Name] == nil {
			c.add(o, field+".configMap.name", "no ConfigMap %q in the overlay", v.ConfigMap.Name)
		}
	case v.Secret != nil:
		c.secretRef(o, field+".secret.secretName", v.Secret.SecretName, "")
	case v.PersistentVolumeClaim != nil:
		if !c.ix.claims[v.PersistentVolumeClaim.ClaimName] {
			c.add(o, field+".persistentVolumeClaim.claimName", "no PersistentVolumeClaim %q in the overlay", v.PersistentVolumeClaim.ClaimName)
		}
	case v.Projected != nil:
		for i, src := range v.Projected.Sources {
			sf := fmt.Sprintf("%s.projected.sources[%d]", field, i)
			switch {
			case src.ConfigMap != nil:
				if c.ix.configMaps[src.ConfigMap.Name] == nil {
					c.add(o, sf+".configMap.name", "no ConfigMap %q in the overlay", src.ConfigMap.Name)
				}
			case src.Secret != nil:
				c.secretRef(o, sf+".secret.name", src.Secret.Name, "")
				for _, it := range src.Secret.Items {
					c.secretRef(o, sf+".secret.items["+it.Key+"]", src.Secret.Name, it.Key)
				}
			default:
				c.add(o, sf, "only configMap and secret sources are expected")
			}
		}
	case v.EmptyDir != nil:
	default:
		c.add(o, field, "only configMap, secret, projected, persistentVolumeClaim and emptyDir volumes are expected")
	}
}

func (c *checker) secretRef(o Object, field, name, key string) {
	if c.want.SecretsFromCluster {
		return // created in the cluster; SecretsReferenced lists them
	}
	s := c.ix.secrets[name]
	switch {
	case s == nil:
		c.add(o, field, "no Secret %q in the overlay", name)
	case key != "":
		if _, ok := s.Data[key]; !ok {
			if _, ok := s.StringData[key]; !ok {
				c.add(o, field, "Secret %q has no key %q", name, key)
			}
		}
	}
}

// credentialName matches names of settings that hold credentials.
var credentialName = regexp.MustCompile(`(?i)(password|passwd|secret|token|api_?key|dsn|credential|private)`)

// credentialValue matches values that are credentials whatever their name:
// a URL with a password, a Stripe key, a PEM private key.
var credentialValue = regexp.MustCompile(`[a-z][a-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@|\b[sr]k_(live|test)_[A-Za-z0-9]+|-----BEGIN [A-Z ]*PRIVATE KEY-----`)

func (c *checker) configMap(o Object, cm *corev1.ConfigMap) {
	for k, v := range cm.Data {
		if credentialName.MatchString(k) && !looksLikePath(v) {
			c.add(o, "data["+k+"]", "looks like a credential by its name: keep it in a Secret")
		}
		if credentialValue.MatchString(v) {
			c.add(o, "data["+k+"]", "holds a credential (a URL with a password, an API key or a private key): keep it in a Secret")
		}
	}
	for k := range cm.BinaryData {
		c.add(o, "binaryData["+k+"]", "binary data in a ConfigMap: keys and certificates belong in Secrets")
	}
}

func looksLikePath(v string) bool { return strings.HasPrefix(v, "/") && !strings.ContainsAny(v, " \n") }

func (c *checker) service(o Object, s *corev1.Service) {
	if len(s.Spec.Selector) == 0 {
		c.add(o, "spec.selector", "empty: the Service would need endpoints managed by hand")
		return
	}
	var ports []corev1.ContainerPort
	matched := false
	for _, w := range c.ix.workloads {
		if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(w.tpl.Labels)) {
			matched = true
			for _, ct := range w.tpl.Spec.Containers {
				ports = append(ports, ct.Ports...)
			}
		}
	}
	if !matched {
		c.add(o, "spec.selector", "%v selects no workload's pods", s.Spec.Selector)
		return
	}
	for _, p := range s.Spec.Ports {
		if !hasPort(ports, p.TargetPort) {
			c.add(o, "spec.ports["+p.Name+"].targetPort", "%s is not a port of the selected containers", p.TargetPort.String())
		}
	}
}

func hasPort(ports []corev1.ContainerPort, p intstr.IntOrString) bool {
	return slices.ContainsFunc(ports, func(cp corev1.ContainerPort) bool {
		if p.Type == intstr.String {
			return cp.Name == p.StrVal
		}
		return cp.ContainerPort == p.IntVal
	})
}

// container checks one container of workload w; main says it is not an
// init container (those need no probes).
func (c *checker) container(w workload, ct *corev1.Container, list string, main bool) {
	o, pod := w.obj, &w.tpl.Spec
	field := "spec.template.spec." + list + "[" + ct.Name + "]"
	if !tagged(ct.Image) {
		c.add(o, field+".image", "%q: name a version tag (not latest) or a digest", ct.Image)
	}
	c.security(o, field, pod, ct)
	c.resources(o, field, ct)
	if main {
		c.probes(o, field, ct)
	}
	env := c.env(o, field, ct)
	for _, m := range ct.VolumeMounts {
		if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) &&
			!slices.ContainsFunc(w.claims, func(p corev1.PersistentVolumeClaim) bool { return p.Name == m.Name }) {
			c.add(o, field+".volumeMounts["+m.Name+"]", "no volume or volume claim template of that name")
		}
	}
	if strings.HasPrefix(ct.Image, "lethe/") {
		c.lethe(w, field, ct, env)
	}
}

// tagged: an image reference with a tag other than latest, or a digest.
func tagged(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	last := image[strings.LastIndex(image, "/")+1:]
	i := strings.LastIndex(last, ":")
	return i >= 0 && i < len(last)-1 && last[i+1:] != "latest"
}

func (c *checker) security(o Object, field string, pod *corev1.PodSpec, ct *corev1.Container) {
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	sc := ct.SecurityContext
	if sc == nil {
		c.add(o, field+".securityContext", "missing: set allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities.drop: [ALL]")
		return
	}
	nonRoot := psc.RunAsNonRoot
	if sc.RunAsNonRoot != nil {
		nonRoot = sc.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		c.add(o, field+".securityContext.runAsNonRoot", "want true (here or in the pod's securityContext)")
	}
	user := psc.RunAsUser
	if sc.RunAsUser != nil {
		user = sc.RunAsUser
	}
	if user != nil && *user == 0 {
		c.add(o, field+".securityContext.runAsUser", "0 is root")
	}
	seccomp := psc.SeccompProfile
	if sc.SeccompProfile != nil {
		seccomp = sc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		c.add(o, field+".securityContext.seccompProfile.type", "want RuntimeDefault (here or in the pod's securityContext)")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		c.add(o, field+".securityContext.allowPrivilegeEscalation", "want false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		c.add(o, field+".securityContext.privileged", "want false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		c.add(o, field+".securityContext.readOnlyRootFilesystem", "want true; mount an emptyDir where the process writes")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		c.add(o, field+".securityContext.capabilities.drop", "want [ALL]")
	} else if len(sc.Capabilities.Add) > 0 {
		c.add(o, field+".securityContext.capabilities.add", "%v: no capability is needed", sc.Capabilities.Add)
	}
}

func (c *checker) resources(o Object, field string, ct *corev1.Container) {
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := ct.Resources.Requests[r]
		lim, hasLim := ct.Resources.Limits[r]
		if !hasReq {
			c.add(o, field+".resources.requests."+string(r), "missing")
		}
		if !hasLim {
			c.add(o, field+".resources.limits."+string(r), "missing")
		}
		if hasReq && hasLim && req.Cmp(lim) > 0 {
			c.add(o, field+".resources.requests."+string(r), "%s is above the limit %s", req.String(), lim.String())
		}
	}
}

func (c *checker) probes(o Object, field string, ct *corev1.Container) {
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		need  bool
	}{{"livenessProbe", ct.LivenessProbe, true}, {"readinessProbe", ct.ReadinessProbe, true}, {"startupProbe", ct.StartupProbe, false}} {
		if p.probe == nil {
			if p.need {
				c.add(o, field+"."+p.name, "missing")
			}
			continue
		}
		var port *intstr.IntOrString
		switch {
		case p.probe.HTTPGet != nil:
			port = &p.probe.HTTPGet.Port
		case p.probe.TCPSocket != nil:
			port = &p.probe.TCPSocket.Port
		case p.probe.Exec != nil && len(p.probe.Exec.Command) > 0:
		default:
			c.add(o, field+"."+p.name, "has no httpGet, tcpSocket or exec handler")
		}
		if port != nil && !hasPort(ct.Ports, *port) {
			c.add(o, field+"."+p.name+".port", "%s is not a port of the container", port.String())
		}
	}
}

// env resolves the container's environment as the kubelet would (envFrom,
// then env): literal values and ConfigMap values are returned; values
// from Secrets and the downward API map to "" (known, not read).
func (c *checker) env(o Object, field string, ct *corev1.Container) map[string]string {
	env := map[string]string{}
	for i, f := range ct.EnvFrom {
		switch {
		case f.ConfigMapRef != nil:
			cm := c.ix.configMaps[f.ConfigMapRef.Name]
			if cm == nil {
				c.add(o, fmt.Sprintf("%s.envFrom[%d].configMapRef.name", field, i), "no ConfigMap %q in the overlay", f.ConfigMapRef.Name)
				continue
			}
			for k, v := range cm.Data {
				env[f.Prefix+k] = v
			}
		case f.SecretRef != nil:
			c.secretRef(o, fmt.Sprintf("%s.envFrom[%d].secretRef.name", field, i), f.SecretRef.Name, "")
			if s := c.ix.secrets[f.SecretRef.Name]; s != nil {
				for k := range s.Data {
					env[f.Prefix+k] = ""
				}
			}
		}
	}
	for _, e := range ct.Env {
		ef := field + ".env[" + e.Name + "]"
		switch {
		case e.ValueFrom == nil:
			if credentialName.MatchString(e.Name) && e.Value != "" && !looksLikePath(e.Value) {
				c.add(o, ef+".value", "a credential as a literal value: take it from a Secret (valueFrom.secretKeyRef)")
			}
			env[e.Name] = expand(e.Value, env)
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm := c.ix.configMaps[ref.Name]
			if cm == nil {
				c.add(o, ef+".valueFrom.configMapKeyRef", "no ConfigMap %q in the overlay", ref.Name)
				continue
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				c.add(o, ef+".valueFrom.configMapKeyRef", "ConfigMap %q has no key %q", ref.Name, ref.Key)
			}
			env[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			c.secretRef(o, ef+".valueFrom.secretKeyRef", e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
			env[e.Name] = ""
		default:
			env[e.Name] = ""
		}
	}
	for k, v := range env {
		if credentialValue.MatchString(v) {
			c.add(o, field+".env["+k+"]", "holds a credential: take it from a Secret")
		}
	}
	return env
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(VAR) with its value in env, as the kubelet does in
// args and env values; an unknown reference stays as written.
func expand(s string, env map[string]string) string {
	return envRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// flag returns the value the container's command line gives flag name
// (-name=v, --name=v, -name v), with $(VAR) expanded.
func flag(ct *corev1.Container, name string, env map[string]string) (string, bool) {
	args := append(slices.Clone(ct.Command), ct.Args...)
	for i, a := range args {
		for _, p := range []string{"-" + name, "--" + name} {
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return expand(v, env), true
			}
			if a == p && i+1 < len(args) {
				return expand(args[i+1], env), true
			}
		}
	}
	return "", false
}

// lethe checks what a Lethe service needs: its probes on the port it
// listens on, its stream replicas, and writable places for what it
// writes.
func (c *checker) lethe(w workload, field string, ct *corev1.Container, env map[string]string) {
	o := w.obj
	_, port, err := splitHostPort(env["LETHE_HTTP_ADDR"])
	if err != nil {
		c.add(o, field+".env[LETHE_HTTP_ADDR]", "%q: want 0.0.0.0:<port> so that the kubelet reaches the probes", env["LETHE_HTTP_ADDR"])
	} else if !slices.ContainsFunc(ct.Ports, func(p corev1.ContainerPort) bool { return p.Name == "http" && p.ContainerPort == int32(port) }) {
		c.add(o, field+".ports", "want a port named http with containerPort %d (LETHE_HTTP_ADDR)", port)
	}
	for _, p := range []struct {
		name, path string
		probe      *corev1.Probe
	}{{"livenessProbe", "/healthz", ct.LivenessProbe}, {"readinessProbe", "/readyz", ct.ReadinessProbe}, {"startupProbe", "/healthz", ct.StartupProbe}} {
		if p.probe == nil {
			continue
		}
		if g := p.probe.HTTPGet; g == nil || g.Path != p.path || g.Port.String() != "http" {
			c.add(o, field+"."+p.name+".httpGet", "want GET %s on port http", p.path)
		}
	}
	replicas, ok := flag(ct, "stream-replicas", env)
	if !ok {
		replicas = "1" // the binaries' default
	}
	if replicas != strconv.Itoa(c.want.StreamReplicas) {
		c.add(o, field+".args", "-stream-replicas is %q, want %d: a worker that starts first creates the streams with its own", replicas, c.want.StreamReplicas)
	}
	for _, k := range []string{"LETHE_LOGS_ROOT", "LETHE_BACKUP_ROOT"} {
		if p, ok := env[k]; ok {
			c.writable(w, field, ct, k, p)
		}
	}
	c.natsSeed(w, field, ct, env)
	for _, k := range keyFiles {
		key, ok := env[k]
		switch {
		case !ok && strings.HasPrefix(ct.Image, "lethe/coordinator:"):
			c.add(o, field+".env["+k+"]", "not set: the default is a relative path on the read-only root file system")
			continue
		case !ok || key == "":
			continue
		case !strings.HasPrefix(key, "/"):
			c.add(o, field+".env["+k+"]", "%q: give an absolute path on a mounted volume", key)
		}
		create := env[k+"_CREATE"] != "false" // the coordinator's default is true
		switch {
		case c.want.KeysFromSecrets && create:
			c.add(o, field+".env["+k+"_CREATE]", "want \"false\": a missing key must stop start-up, not be replaced by a new one")
		case create && w.replicas > 1:
			c.add(o, field+".env["+k+"_CREATE]", "true with %d replicas: each would create its own key; give them one from a Secret", w.replicas)
		case create:
			c.writable(w, field, ct, k, path.Dir(key))
		}
		if c.want.KeysFromSecrets {
			if v := mountVolume(w, ct, path.Dir(key)); v == nil || v.Secret == nil {
				c.add(o, field+".volumeMounts", "%s %s is not in a Secret volume", k, key)
			}
		}
	}
}

// keyFiles are the coordinator's key settings, each with a _CREATE
// companion that creates the file when it is missing (development).
var keyFiles = []string{"LETHE_CERTIFICATE_KEY", "LETHE_AUDIT_KEY"}

// writable: dir is on a writable emptyDir or claim.
func (c *checker) writable(w workload, field string, ct *corev1.Container, setting, dir string) {
	m, v := mountOf(w, ct, dir)
	switch {
	case m == nil:
		c.add(w.obj, field+".volumeMounts", "%s %s is on the read-only root file system: mount an emptyDir or a claim there", setting, dir)
	case m.ReadOnly:
		c.add(w.obj, field+".volumeMounts["+m.Name+"].readOnly", "%s %s must be writable", setting, dir)
	case v != nil && v.EmptyDir == nil && v.PersistentVolumeClaim == nil:
		c.add(w.obj, field+".volumeMounts["+m.Name+"]", "%s %s: want an emptyDir or a claim", setting, dir)
	}
}

// mountOf returns the mount that holds dir (the longest mount path that
// is dir or above it) and its volume (nil for a claim template).
func mountOf(w workload, ct *corev1.Container, dir string) (*corev1.VolumeMount, *corev1.Volume) {
	var best *corev1.VolumeMount
	for i := range ct.VolumeMounts {
		m := &ct.VolumeMounts[i]
		mp := strings.TrimSuffix(m.MountPath, "/")
		if (dir == mp || strings.HasPrefix(dir, mp+"/")) && (best == nil || len(mp) > len(best.MountPath)) {
			best = m
		}
	}
	if best == nil {
		return nil, nil
	}
	for i := range w.tpl.Spec.Volumes {
		if w.tpl.Spec.Volumes[i].Name == best.Name {
			return best, &w.tpl.Spec.Volumes[i]
		}
	}
	return best, nil
}

func mountVolume(w workload, ct *corev1.Container, dir string) *corev1.Volume {
	_, v := mountOf(w, ct, dir)
	return v
}

func splitHostPort(addr string) (string, int, error) {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return "", 0, fmt.Errorf("no port in %q", addr)
	}
	port, err := strconv.Atoi(addr[i+1:])
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return addr[:i], port, nil
}

// confVar matches a $VARIABLE in a nats-server configuration file.
var confVar = regexp.MustCompile(`\$([A-Za-z_][A-Za-z0-9_]*)`)

// confQuoted matches a quoted string of a nats-server configuration
// file, where a $ is literal ("$JS.API.>").
var confQuoted = regexp.MustCompile(`"[^"]*"|'[^']*'`)

// confInclude matches an include directive and captures its path.
var confInclude = regexp.MustCompile(`(?m)^\s*include\s+["']?([^"'\s;]+)["']?`)

// confDefine matches the definition of a variable (or any key, which
// nats-server lets a $reference name too) at the start of a line.
var confDefine = regexp.MustCompile(`(?m)^\s*([A-Za-z_][A-Za-z0-9_]*)\s*[:=]`)

// confClustered matches a cluster block.
var confClustered = regexp.MustCompile(`(?m)^\s*cluster\s*\{`)

// natsAuthFile is the file of Lethe's per-service permissions
// (deploy/nats/auth.conf, rendered by lib/brokerauth), as nats-server
// configurations include it.
const natsAuthFile = "auth.conf"

// mountedFile is a file a container's volumes put in place.
type mountedFile struct {
	text   string
	known  bool // its content is rendered here, not created in the cluster
	secret bool
}

// mountedFiles maps the path of every file the ConfigMap, Secret and
// projected volumes mounted in ct put in place to its content. A Secret
// the overlay does not render, projected without items, may hold any
// file: it is listed as dir + "/*".
func (c *checker) mountedFiles(w workload, ct *corev1.Container) map[string]mountedFile {
	files := map[string]mountedFile{}
	for _, m := range ct.VolumeMounts {
		i := slices.IndexFunc(w.tpl.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 {
			continue
		}
		v := &w.tpl.Spec.Volumes[i]
		var cms []corev1.ConfigMapProjection
		var secrets []corev1.SecretProjection
		switch {
		case v.ConfigMap != nil:
			cms = append(cms, corev1.ConfigMapProjection{LocalObjectReference: v.ConfigMap.LocalObjectReference, Items: v.ConfigMap.Items})
		case v.Secret != nil:
			secrets = append(secrets, corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: v.Secret.SecretName}, Items: v.Secret.Items})
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.ConfigMap != nil {
					cms = append(cms, *src.ConfigMap)
				}
				if src.Secret != nil {
					secrets = append(secrets, *src.Secret)
				}
			}
		}
		dir := strings.TrimSuffix(m.MountPath, "/") + "/"
		for _, p := range cms {
			cm := c.ix.configMaps[p.Name]
			if cm == nil {
				continue // reported by volumeRef
			}
			for key, text := range cm.Data {
				if at, ok := projected(key, p.Items); ok {
					files[dir+at] = mountedFile{text: text, known: true}
				}
			}
		}
		for _, p := range secrets {
			s := c.ix.secrets[p.Name]
			switch {
			case s != nil:
				for key, data := range s.Data {
					if at, ok := projected(key, p.Items); ok {
						files[dir+at] = mountedFile{text: string(data), known: true, secret: true}
					}
				}
				for key, text := range s.StringData {
					if at, ok := projected(key, p.Items); ok {
						files[dir+at] = mountedFile{text: text, known: true, secret: true}
					}
				}
			case len(p.Items) > 0:
				for _, it := range p.Items {
					files[dir+it.Path] = mountedFile{secret: true}
				}
			default:
				files[dir+"*"] = mountedFile{secret: true}
			}
		}
	}
	return files
}

// projected returns the path key has in a volume with items, and whether
// the volume holds it at all.
func projected(key string, items []corev1.KeyToPath) (string, bool) {
	if len(items) == 0 {
		return key, true
	}
	for _, it := range items {
		if it.Key == key {
			return it.Path, true
		}
	}
	return "", false
}

func lookup(files map[string]mountedFile, p string) (mountedFile, bool) {
	if f, ok := files[p]; ok {
		return f, true
	}
	f, ok := files[path.Dir(p)+"/*"]
	return f, ok
}

// nats: as many nodes as stream replicas, a route to each, the JetStream
// store on a claim template, every variable of the configuration set, and
// Lethe's permissions included: the configuration file (--config) reaches
// auth.conf through its includes, and the public keys auth.conf includes
// come from a Secret.
func (c *checker) nats(w workload) {
	o := w.obj
	if int(w.replicas) != c.want.StreamReplicas {
		c.add(o, "spec.replicas", "%d NATS nodes, want %d (the stream replicas)", w.replicas, c.want.StreamReplicas)
	}
	if len(w.tpl.Spec.Containers) == 0 {
		return
	}
	ct := &w.tpl.Spec.Containers[0]
	field := "spec.template.spec.containers[" + ct.Name + "]"
	env := c.env(o, field, ct)
	files := c.mountedFiles(w, ct)
	entry, ok := flag(ct, "config", env)
	if !ok {
		entry, ok = flag(ct, "c", env)
	}
	if f, found := files[entry]; !ok || !found || f.secret {
		c.add(o, field+".args", "--config %q is not a file of a mounted ConfigMap", entry)
		entry = ""
	}
	// Follow the includes from the entry file, in order.
	var (
		reached  []string
		authConf string
		// opaque: files whose includes put a file here whose content is
		// not rendered (a Secret from the cluster): their variables may be
		// defined there.
		opaque = map[string]bool{}
	)
	var visit func(p string)
	visit = func(p string) {
		if slices.Contains(reached, p) {
			return
		}
		reached = append(reached, p)
		f := files[p]
		if path.Base(p) == natsAuthFile {
			authConf = p
		}
		for _, m := range confInclude.FindAllStringSubmatch(f.text, -1) {
			inc := m[1]
			if !path.IsAbs(inc) {
				inc = path.Join(path.Dir(p), inc)
			}
			g, ok := lookup(files, inc)
			switch {
			case !ok:
				c.add(o, field+".volumeMounts", "%s includes %q, which no mounted ConfigMap or Secret puts at %s", p, m[1], inc)
			case p == authConf && !g.secret:
				c.add(o, field+".volumeMounts", "%s includes %s from a ConfigMap: the identities' keys come from a Secret made with their seeds (lethe-nats-auth keys)", p, inc)
			case !g.known:
				opaque[p] = true
			default:
				visit(inc)
			}
		}
	}
	if entry != "" {
		visit(entry)
	}
	switch {
	case entry == "":
	case authConf == "":
		c.add(o, field+".args", "the configuration %s does not include %s (deploy/nats/auth.conf): every client would connect anonymously with every permission", entry, natsAuthFile)
	case !strings.Contains(files[authConf].text, "authorization {"):
		c.add(o, field+".volumeMounts", "%s has no authorization block: copy deploy/nats/auth.conf", authConf)
	}
	var conf, defined strings.Builder
	for _, p := range reached {
		conf.WriteString(files[p].text + "\n")
		for _, m := range confDefine.FindAllStringSubmatch(files[p].text, -1) {
			defined.WriteString(" " + m[1] + " ")
		}
	}
	for _, p := range reached {
		if opaque[p] {
			continue
		}
		for _, line := range strings.Split(files[p].text, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			for _, m := range confVar.FindAllStringSubmatch(confQuoted.ReplaceAllString(line, ""), -1) {
				if _, ok := env[m[1]]; !ok && !strings.Contains(defined.String(), " "+m[1]+" ") {
					c.add(o, field+".env", "%s uses $%s, which neither the configuration nor the container's environment sets", p, m[1])
				}
			}
		}
	}
	clustered := confClustered.MatchString(conf.String())
	switch {
	case w.replicas > 1 && !clustered:
		c.add(o, "spec.replicas", "%d nodes but the configuration has no cluster block", w.replicas)
	case clustered:
		for i := range int(w.replicas) {
			route := fmt.Sprintf("nats://%s-%d.%s:", o.Name, i, w.service)
			if !strings.Contains(env["NATS_ROUTES"], route) {
				c.add(o, field+".env[NATS_ROUTES]", "no route to node %d (%s...)", i, route)
			}
		}
		if n := strings.Count(env["NATS_ROUTES"], "nats://"); n != int(w.replicas) {
			c.add(o, field+".env[NATS_ROUTES]", "%d routes for %d nodes", n, w.replicas)
		}
	}
	for _, k := range []string{"NATS_STORE_DIR", "NATS_SYNC_INTERVAL"} {
		if v, ok := env[k]; ok && !(len(v) >= 2 && strings.HasPrefix(v, `"`) && strings.HasSuffix(v, `"`)) {
			c.add(o, field+".env["+k+"]", "%q: nats-server parses the value as configuration; quote it (%q), or 2m would be the number 2,000,000", v, `"`+v+`"`)
		}
	}
	store := strings.Trim(env["NATS_STORE_DIR"], `"`)
	if m, v := mountOf(w, ct, store); m == nil || v != nil || !slices.ContainsFunc(w.claims, func(p corev1.PersistentVolumeClaim) bool { return p.Name == m.Name }) {
		c.add(o, field+".volumeMounts", "the JetStream store %q is not on a volume claim template", store)
	}
}

// natsSeed: a Lethe service connects to NATS as its own identity
// (deploy/nats/auth.conf refuses anonymous clients), with its seed
// mounted read-only from a Secret that holds that seed alone; a worker
// with credentials waits for the coordinator's topology, which its key
// may not create.
func (c *checker) natsSeed(w workload, field string, ct *corev1.Container, env map[string]string) {
	o := w.obj
	const k = "LETHE_NATS_NKEY_SEED_FILE"
	seed := env[k]
	ident := natsIdentity(ct.Image)
	switch {
	case seed == "":
		c.add(o, field+".env["+k+"]", "not set: the broker refuses anonymous clients; mount the service's seed from its Secret and name the file here")
		return
	case !path.IsAbs(seed):
		c.add(o, field+".env["+k+"]", "%q: give an absolute path on a mounted Secret", seed)
		return
	case ident != "" && path.Base(seed) != ident+".nk":
		c.add(o, field+".env["+k+"]", "%q is not the seed of %s (%s.nk): each service connects as itself", seed, ident, ident)
	}
	m, v := mountOf(w, ct, seed)
	switch {
	case m == nil || v == nil || v.Secret == nil:
		c.add(o, field+".volumeMounts", "%s %s is not in a Secret volume: mount the service's own Secret there", k, seed)
		return
	case !m.ReadOnly:
		c.add(o, field+".volumeMounts["+m.Name+"].readOnly", "want true: the seed is the service's NATS identity")
	}
	// The Secret's key that the volume puts at the seed's path.
	key, ok := strings.TrimPrefix(seed, strings.TrimSuffix(m.MountPath, "/")+"/"), true
	if items := v.Secret.Items; len(items) > 0 {
		i := slices.IndexFunc(items, func(it corev1.KeyToPath) bool { return it.Path == key })
		if ok = i >= 0; ok {
			key = items[i].Key
		}
	}
	vf := "spec.template.spec.volumes[" + v.Name + "].secret"
	if !ok {
		c.add(o, vf+".items", "no item puts %s at %s", k, seed)
		return
	}
	c.secretRef(o, vf+".secretName", v.Secret.SecretName, key)
	if s := c.ix.secrets[v.Secret.SecretName]; s != nil && len(v.Secret.Items) == 0 && len(s.Data)+len(s.StringData) > 1 {
		c.add(o, vf+".secretName", "Secret %q holds %d keys: give the pod its own seed alone (one Secret per identity)", v.Secret.SecretName, len(s.Data)+len(s.StringData))
	}
	if strings.HasPrefix(ident, "worker-") && env["LETHE_AWAIT_TOPOLOGY"] == "false" {
		c.add(o, field+".env[LETHE_AWAIT_TOPOLOGY]", "false with NATS credentials: a worker's key may not create the streams; let it wait for the coordinator")
	}
}

// natsIdentity returns the broker identity (lib/brokerauth) of a Lethe
// image: coordinator, or worker-<category> for lethe/<category>-worker;
// "" for any other.
func natsIdentity(image string) string {
	name, _, _ := strings.Cut(strings.TrimPrefix(image, "lethe/"), ":")
	name, _, _ = strings.Cut(name, "@")
	if name == "coordinator" {
		return name
	}
	if cat, ok := strings.CutSuffix(name, "-worker"); ok {
		return "worker-" + cat
	}
	return ""
}

// sentinels: the coordinator's LETHE_REDIS_SENTINELS names each pod of
// the redis-sentinel StatefulSet, its master name is the sentinels', and
// REDIS_REPLICAS (read by the start scripts) is the redis StatefulSet's
// size.
func (c *checker) sentinels() {
	var coord, sentinel, redis *workload
	for i := range c.ix.workloads {
		w := &c.ix.workloads[i]
		switch {
		case w.obj.Name == "redis-sentinel":
			sentinel = w
		case w.obj.Name == "redis":
			redis = w
		case slices.ContainsFunc(w.tpl.Spec.Containers, func(ct corev1.Container) bool { return strings.HasPrefix(ct.Image, "lethe/coordinator:") }):
			coord = w
		}
	}
	if coord == nil || sentinel == nil || redis == nil {
		c.problems = append(c.problems, Problem{Object: "overlay", Field: "resources", Msg: "want the coordinator Deployment and the redis and redis-sentinel StatefulSets"})
		return
	}
	quiet := &checker{ix: c.ix, want: c.want} // env problems are reported by the workload checks
	cenv := quiet.env(coord.obj, "", &coord.tpl.Spec.Containers[0])
	senv := quiet.env(sentinel.obj, "", &sentinel.tpl.Spec.Containers[0])
	renv := quiet.env(redis.obj, "", &redis.tpl.Spec.Containers[0])
	var want []string
	for i := range int(sentinel.replicas) {
		want = append(want, fmt.Sprintf("%s-%d.%s:26379", sentinel.obj.Name, i, sentinel.service))
	}
	field := "spec.template.spec.containers[" + coord.tpl.Spec.Containers[0].Name + "].env"
	if got := cenv["LETHE_REDIS_SENTINELS"]; got != strings.Join(want, ",") {
		c.add(coord.obj, field+"[LETHE_REDIS_SENTINELS]", "%q, want %q (every pod of %s)", got, strings.Join(want, ","), sentinel.obj)
	}
	if got := cenv["LETHE_REDIS_MASTER_NAME"]; got == "" || got != senv["MASTER_NAME"] {
		c.add(coord.obj, field+"[LETHE_REDIS_MASTER_NAME]", "%q, want the sentinels' MASTER_NAME %q", got, senv["MASTER_NAME"])
	}
	if got := renv["REDIS_REPLICAS"]; got != strconv.Itoa(int(redis.replicas)) {
		c.add(redis.obj, "spec.template.spec.containers[redis].env[REDIS_REPLICAS]", "%q, want %d (spec.replicas)", got, redis.replicas)
	}
	if q, err := strconv.Atoi(senv["QUORUM"]); err != nil || q < 1 || q > int(sentinel.replicas) || q <= int(sentinel.replicas)/2 && sentinel.replicas > 1 {
		c.add(sentinel.obj, "spec.template.spec.containers[sentinel].env[QUORUM]", "%q: want a majority of the %d sentinels", senv["QUORUM"], sentinel.replicas)
	}
}

// refs lists the ConfigMaps and Secrets a workload uses.
func (w workload) refs() []ref {
	var out []ref
	for _, v := range w.tpl.Spec.Volumes {
		if v.ConfigMap != nil {
			out = append(out, ref{"ConfigMap", v.ConfigMap.Name})
		}
		if v.Secret != nil {
			out = append(out, ref{"Secret", v.Secret.SecretName})
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.ConfigMap != nil {
					out = append(out, ref{"ConfigMap", src.ConfigMap.Name})
				}
				if src.Secret != nil {
					out = append(out, ref{"Secret", src.Secret.Name})
				}
			}
		}
	}
	for _, ct := range slices.Concat(w.tpl.Spec.InitContainers, w.tpl.Spec.Containers) {
		for _, f := range ct.EnvFrom {
			if f.ConfigMapRef != nil {
				out = append(out, ref{"ConfigMap", f.ConfigMapRef.Name})
			}
			if f.SecretRef != nil {
				out = append(out, ref{"Secret", f.SecretRef.Name})
			}
		}
		for _, e := range ct.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				out = append(out, ref{"Secret", e.ValueFrom.SecretKeyRef.Name})
			}
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
				out = append(out, ref{"ConfigMap", e.ValueFrom.ConfigMapKeyRef.Name})
			}
		}
	}
	return out
}

type ref struct{ kind, name string }

// Compile-time check that a Problem is an error.
var _ error = Problem{}
