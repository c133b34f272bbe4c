package k8s

import (
	"encoding/json"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Object is one rendered Kubernetes object, decoded into its API type
// (*appsv1.Deployment, *corev1.ConfigMap, ...).
type Object struct {
	Kind      string
	Namespace string
	Name      string
	Obj       runtime.Object
}

// String names the object as the checks' messages do: "Deployment ns/name".
func (o Object) String() string { return o.Kind + " " + o.Namespace + "/" + o.Name }

// Decoder decodes objects strictly: a field the API type does not have
// (misspelt, wrongly cased, misplaced), a duplicate field or a value of the
// wrong type is an error, never silently dropped as kubectl's client-side
// defaults would. Only the kinds Lethe's manifests use are known; any other
// kind is an error too, so that a new kind is added here deliberately.
type Decoder struct {
	d runtime.Decoder
}

// NewDecoder returns a Decoder for the core, apps and policy API groups.
func NewDecoder() (*Decoder, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("register kubernetes api types: %w", err)
		}
	}
	return &Decoder{d: serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()}, nil
}

// Decode decodes one object, given as YAML or JSON. Its error names the
// object (kind, namespace/name) and, for a strict-decoding failure, the
// offending field's path.
func (d *Decoder) Decode(data []byte) (Object, error) {
	var head struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	obj, gvk, err := d.d.Decode(data, nil, nil)
	if gvk != nil {
		head.Kind = gvk.Kind
	}
	// The name for the message, read leniently: the strict decode above
	// may have failed on a field elsewhere in the object.
	if jerr := json.Unmarshal(data, &head); jerr != nil {
		if y, yerr := yaml.YAMLToJSON(data); yerr == nil {
			_ = json.Unmarshal(y, &head)
		}
	}
	o := Object{Kind: head.Kind, Namespace: head.Metadata.Namespace, Name: head.Metadata.Name, Obj: obj}
	if err != nil {
		return o, fmt.Errorf("%s: %w", o, err)
	}
	return o, nil
}

// Render builds the kustomization in dir as `kubectl apply -k dir` would
// (files outside the kustomization root refused, no plugins) and decodes
// every resulting object strictly. It returns the first object that does
// not decode together with every other problem, joined.
func Render(dir string) ([]Object, error) {
	dec, err := NewDecoder()
	if err != nil {
		return nil, err
	}
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var (
		objs []Object
		errs []error
	)
	for _, res := range resMap.Resources() {
		data, err := res.MarshalJSON()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: encode as JSON: %w", res.GetKind(), res.GetName(), err))
			continue
		}
		o, err := dec.Decode(data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		objs = append(objs, o)
	}
	return objs, errors.Join(errs...)
}
