package validate

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/neofast/neoauthz/internal/daemon"
)

const k8sDir = "../kubernetes"

// newObject returns an empty object of the kind a manifest declares.
func newObject(apiVersion, kind string) (any, bool) {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		return &corev1.Namespace{}, true
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1/Secret":
		return &corev1.Secret{}, true
	case "v1/Service":
		return &corev1.Service{}, true
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, true
	case "apps/v1/DaemonSet":
		return &appsv1.DaemonSet{}, true
	case "batch/v1/Job":
		return &batchv1.Job{}, true
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	}
	return nil, false
}

// decodeStrict decodes one YAML document into obj; a field obj's type does not have fails.
func decodeStrict(doc []byte, obj any) error {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data")
	}
	return nil
}

// manifests decodes every document of every manifest file.
func manifests(t *testing.T) (objs []any, files []string) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	require.NoError(t, err)
	for _, path := range paths {
		if filepath.Base(path) == "kustomization.yaml" {
			continue
		}
		files = append(files, filepath.Base(path))
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		for i, doc := range strings.Split(string(raw), "\n---\n") {
			var head struct{ APIVersion, Kind string }
			require.NoError(t, yaml.Unmarshal([]byte(doc), &head), "%s doc %d", path, i)
			obj, ok := newObject(head.APIVersion, head.Kind)
			require.True(t, ok, "%s doc %d: unexpected %s %s", path, i, head.APIVersion, head.Kind)
			require.NoError(t, decodeStrict([]byte(doc), obj), "%s doc %d (%s) decodes strictly", path, i, head.Kind)
			objs = append(objs, obj)
		}
	}
	return objs, files
}

func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	err := decodeStrict([]byte("apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 3\n"), &appsv1.Deployment{})
	assert.ErrorContains(t, err, "unknown field")
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	var k struct{ Resources []string }
	raw, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &k))
	_, files := manifests(t)
	assert.ElementsMatch(t, files, k.Resources)
}

type workload struct {
	name string
	pod  corev1.PodSpec
	kind string
}

func TestKubernetesManifests(t *testing.T) {
	objs, _ := manifests(t)
	configKeys := map[string][]string{}
	var workloads []workload
	pdbs := map[string]bool{}
	services := []*corev1.Service{}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.ConfigMap:
			for k := range o.Data {
				configKeys[o.Name] = append(configKeys[o.Name], k)
			}
		case *corev1.Secret:
			for k := range o.StringData {
				configKeys[o.Name] = append(configKeys[o.Name], k)
			}
		case *appsv1.Deployment:
			workloads = append(workloads, workload{o.Name, o.Spec.Template.Spec, "Deployment"})
			if pdbs[o.Name] = false; o.Spec.Replicas == nil {
				t.Errorf("%s: replicas is explicit", o.Name)
			}
		case *appsv1.DaemonSet:
			workloads = append(workloads, workload{o.Name, o.Spec.Template.Spec, "DaemonSet"})
		case *batchv1.Job:
			workloads = append(workloads, workload{o.Name, o.Spec.Template.Spec, "Job"})
		case *policyv1.PodDisruptionBudget:
			pdbs[o.Spec.Selector.MatchLabels["app.kubernetes.io/name"]] = true
		case *corev1.Service:
			services = append(services, o)
		}
	}
	for name, covered := range pdbs {
		assert.True(t, covered, "Deployment %s has a PodDisruptionBudget", name)
	}
	pdpEnvs, adminEnvs := pdpEnv(t), adminEnv(t)
	seen := map[string]bool{}
	for _, w := range workloads {
		t.Run(w.name, func(t *testing.T) {
			sc := w.pod.SecurityContext
			require.NotNil(t, sc)
			assert.True(t, sc.RunAsNonRoot != nil && *sc.RunAsNonRoot, "pods run as non-root")
			volumes := map[string]corev1.Volume{}
			for _, v := range w.pod.Volumes {
				volumes[v.Name] = v
			}
			for _, c := range w.pod.Containers {
				assert.NotEmpty(t, c.Resources.Requests, "%s: resource requests", c.Name)
				for _, m := range c.VolumeMounts {
					assert.Contains(t, volumes, m.Name, "%s mounts a volume of the pod", c.Name)
				}
				var envs map[string]bool
				switch {
				case strings.HasPrefix(c.Image, "neoauthz-pdp"):
					envs = pdpEnvs
					seen["pdp/"+w.kind] = true
					checkArgs(t, w.name+"/"+c.Name, c.Args, pdpKnows)
					checkPdpPorts(t, w.kind, c)
					checkPdpMemory(t, c)
				case strings.HasPrefix(c.Image, "neoauthz-admin"):
					envs = adminEnvs
					seen["admin/"+w.kind] = true
					require.NotEmpty(t, c.Args)
					cmd := c.Args[0]
					if cmd == "migrate" {
						cmd = strings.Join(c.Args[:2], " ")
					}
					flags := adminCommandFlags(t, cmd)
					checkArgs(t, w.name+"/"+c.Name, c.Args, func(n string) bool { return flags[n] })
					if cmd == "serve" {
						checkProbe(t, c, c.ReadinessProbe, "readiness", "/health")
					}
				default:
					continue
				}
				assert.NotNil(t, c.SecurityContext, "%s: container security context", c.Name)
				for _, e := range c.Env {
					assert.True(t, envs[e.Name], "%s: %s is not an environment variable of the binary", c.Name, e.Name)
				}
				for _, from := range c.EnvFrom {
					ref := ""
					if from.ConfigMapRef != nil {
						ref = from.ConfigMapRef.Name
					} else if from.SecretRef != nil {
						ref = from.SecretRef.Name
					}
					require.Contains(t, configKeys, ref, "%s: envFrom %s exists", c.Name, ref)
					for _, k := range configKeys[ref] {
						assert.True(t, envs[k], "%s: %s (from %s) is not an environment variable of the binary", c.Name, k, ref)
					}
				}
			}
		})
	}
	for _, want := range []string{"pdp/Deployment", "pdp/DaemonSet", "admin/Deployment", "admin/Job"} {
		assert.True(t, seen[want], "a %s", want)
	}
	// Services select pods that exist and target ports those pods name.
	for _, s := range services {
		var match *workload
		for i := range workloads {
			if workloads[i].name == s.Spec.Selector["app.kubernetes.io/name"] {
				match = &workloads[i]
			}
		}
		require.NotNil(t, match, "Service %s selects a workload of these manifests", s.Name)
		for _, p := range s.Spec.Ports {
			assert.True(t, podHasPort(match.pod, p.TargetPort.String()), "Service %s targets port %s", s.Name, p.TargetPort.String())
		}
	}
}

func podHasPort(pod corev1.PodSpec, port string) bool {
	for _, c := range pod.Containers {
		for _, p := range c.Ports {
			if p.Name == port || strconv.Itoa(int(p.ContainerPort)) == port {
				return true
			}
		}
	}
	return false
}

// argValue returns the value of --name in args, or the flag's default.
func argValue(args []string, name string) string {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return pdpFlags().Lookup(name).DefValue
}

func portOf(t *testing.T, addr string) (host string, port int32) {
	h, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return h, int32(n)
}

// checkPdpMemory: a pdp container has a memory request and a limit (its -memory-limit=auto
// derives the Go runtime's soft limit from it), and its in-process cache budget is at most a
// quarter of the limit: the rest is the verified-token cache, the process's own memory and
// the garbage collector's headroom (docs/scale.md).
func checkPdpMemory(t *testing.T, c corev1.Container) {
	t.Helper()
	req, okReq := c.Resources.Requests[corev1.ResourceMemory]
	limit, okLimit := c.Resources.Limits[corev1.ResourceMemory]
	require.True(t, okReq && okLimit, "%s: the pdp has a memory request and limit", c.Name)
	assert.LessOrEqual(t, req.Value(), limit.Value(), "%s: memory request within the limit", c.Name)
	budget := int64(daemon.DefaultCacheMaxBytes)
	for _, e := range c.Env {
		if e.Name == "NEOAUTHZ_CACHE_MAX_BYTES" {
			var err error
			budget, err = daemon.ParseBytes(e.Value)
			require.NoError(t, err, "%s: NEOAUTHZ_CACHE_MAX_BYTES", c.Name)
		}
	}
	assert.LessOrEqual(t, budget, limit.Value()/4, "%s: a cache budget of %d bytes in a %s container", c.Name, budget, limit.String())
}

// checkPdpPorts: the container's ports are the addresses the pdp listens on, and its probes
// ask what the pdp serves there (gRPC health on the gRPC port, /health on the HTTP port).
func checkPdpPorts(t *testing.T, kind string, c corev1.Container) {
	grpcHost, grpcPort := portOf(t, argValue(c.Args, "grpc-addr"))
	_, httpPort := portOf(t, argValue(c.Args, "http-addr"))
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	assert.Equal(t, httpPort, ports["http"], "%s: the http port is --http-addr", c.Name)
	if grpcHost == "" || grpcHost == "0.0.0.0" {
		assert.Equal(t, grpcPort, ports["grpc"], "%s: the grpc port is --grpc-addr", c.Name)
	} else {
		assert.NotContains(t, ports, "grpc", "%s: gRPC on loopback is not a pod port", c.Name)
	}
	require.NotNil(t, c.ReadinessProbe, "%s: readiness probe", c.Name)
	require.NotNil(t, c.LivenessProbe, "%s: liveness probe", c.Name)
	if g := c.ReadinessProbe.GRPC; g != nil {
		assert.Equal(t, grpcPort, g.Port, "%s: gRPC health on --grpc-addr", c.Name)
		assert.True(t, grpcHost == "" || grpcHost == "0.0.0.0", "%s: the kubelet cannot reach a loopback gRPC address", c.Name)
	} else {
		checkProbe(t, c, c.ReadinessProbe, "readiness", "/health")
	}
	checkProbe(t, c, c.LivenessProbe, "liveness", "/metrics", "/health")
	if kind == "Deployment" && grpcHost == "" {
		assert.NotNil(t, c.ReadinessProbe.GRPC, "%s: the shared pool is ready when gRPC health says SERVING", c.Name)
	}
}

// checkProbe: an HTTP probe asks one of paths on a port the container has; a TCP probe
// names such a port.
func checkProbe(t *testing.T, c corev1.Container, p *corev1.Probe, what string, paths ...string) {
	require.NotNil(t, p, "%s: %s probe", c.Name, what)
	hasPort := func(port string) bool { return podHasPort(corev1.PodSpec{Containers: []corev1.Container{c}}, port) }
	switch {
	case p.HTTPGet != nil:
		assert.True(t, slices.Contains(paths, p.HTTPGet.Path), "%s: %s probe path %s", c.Name, what, p.HTTPGet.Path)
		assert.True(t, hasPort(p.HTTPGet.Port.String()), "%s: %s probe port %s", c.Name, what, p.HTTPGet.Port.String())
	case p.TCPSocket != nil:
		assert.True(t, hasPort(p.TCPSocket.Port.String()), "%s: %s probe port %s", c.Name, what, p.TCPSocket.Port.String())
	default:
		t.Errorf("%s: %s probe is neither HTTP nor TCP", c.Name, what)
	}
}
