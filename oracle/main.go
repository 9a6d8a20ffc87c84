// katib-oracle answers questions about Katib v1beta1 semantics by calling
// Katib v0.19.0's own Go packages (a module dependency, not a copy).
//
// Protocol: one JSON object per line on stdin, one JSON answer per line on
// stdout, in order. Every request has "op"; every answer has "ok" (false with
// "error" when the request itself was malformed) plus the op's fields. A Go
// panic inside Katib's code is caught and answered as {"ok": true, "panic": "..."}
// because a panic is Katib's behaviour too (the sidecar crashes).
//
// Ops:
//
//	validate  {experiment, old?, namespace?}   mutating defaults (SetDefault), then the
//	          validating webhook's ValidateExperiment -> {errors: [{field, type, detail}]}
//	          (decode_error when the JSON does not decode into Katib's Experiment type)
//	defaults  {experiment}                      SetDefault -> {experiment}
//	render    {experiment, trial_name, namespace, assignments: [{name, value}]}
//	          manifest generator's GetRunSpecWithHyperParameters, then the pod webhook's
//	          worker wrapping for StdOut/File collectors -> {run_spec, command, args} or {render_error}
//	collect   {text, metrics, filters, format}
//	          the pod webhook's collector args (-f: filters joined by ";"), the sidecar's split,
//	          file-metricscollector's CollectObservationLog, the MySQL DB round trip
//	          (RegisterObservationLog / GetObservationLog over a fake SQL connection) and the
//	          trial controller's getMetrics -> {logs, db_logs, observation}
//	regex     {pattern}                         Go regexp.Compile -> {valid, error, groups}
//	status    {experiment, trials, suggestion_done?}
//	          status_util's UpdateExperimentStatus (optimal trial + end conditions), and
//	          UpdateExperimentStatusCondition(..., getSuggestionDone) when suggestion_done is
//	          given -> {current_optimal_trial, conditions, counts}
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	configv1beta1 "github.com/kubeflow/katib/pkg/apis/config/v1beta1"
	commonv1beta1 "github.com/kubeflow/katib/pkg/apis/controller/common/v1beta1"
	experimentsv1beta1 "github.com/kubeflow/katib/pkg/apis/controller/experiments/v1beta1"
	trialsv1beta1 "github.com/kubeflow/katib/pkg/apis/controller/trials/v1beta1"
	"github.com/kubeflow/katib/pkg/controller.v1beta1/consts"
	"github.com/kubeflow/katib/pkg/controller.v1beta1/experiment/manifest"
	experimentutil "github.com/kubeflow/katib/pkg/controller.v1beta1/experiment/util"
	"github.com/kubeflow/katib/pkg/webhook/v1beta1/experiment/validator"
)

type request struct {
	Op             string                              `json:"op"`
	Experiment     json.RawMessage                     `json:"experiment"`
	Old            json.RawMessage                     `json:"old"`
	Namespace      string                              `json:"namespace"`
	TrialName      string                              `json:"trial_name"`
	Assignments    []commonv1beta1.ParameterAssignment `json:"assignments"`
	Text           string                              `json:"text"`
	Metrics        []string                            `json:"metrics"`
	Filters        []string                            `json:"filters"`
	Format         string                              `json:"format"`
	Pattern        string                              `json:"pattern"`
	Trials         []trialCase                         `json:"trials"`
	SuggestionDone *bool                               `json:"suggestion_done"`
	ConfigMaps     map[string]map[string]string        `json:"config_maps"`
}

type answer map[string]interface{}

type oracle struct {
	scheme      *runtime.Scheme
	katibConfig string
}

func main() {
	cfgPath := os.Getenv("KATIB_ORACLE_CONFIG")
	if len(os.Args) > 1 {
		cfgPath = os.Args[1]
	}
	if cfgPath == "" {
		fmt.Fprintln(os.Stderr, "usage: katib-oracle KATIB-CONFIG.yaml  (the katib-config.yaml a standalone install ships)")
		os.Exit(2)
	}
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "katib-oracle:", err)
		os.Exit(2)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, configv1beta1.AddToScheme,
		experimentsv1beta1.AddToScheme, trialsv1beta1.AddToScheme} {
		if err := add(scheme); err != nil {
			fmt.Fprintln(os.Stderr, "katib-oracle:", err)
			os.Exit(2)
		}
	}
	o := &oracle{scheme: scheme, katibConfig: string(cfg)}

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for in.Scan() {
		line := in.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		_ = enc.Encode(o.handle(line))
		_ = out.Flush()
	}
}

func (o *oracle) handle(line []byte) (ans answer) {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return answer{"ok": false, "error": "bad request: " + err.Error()}
	}
	defer func() {
		if r := recover(); r != nil {
			ans = answer{"ok": true, "op": req.Op, "panic": fmt.Sprint(r), "stack": string(debug.Stack())}
		}
	}()
	var res answer
	switch req.Op {
	case "ping":
		res = answer{"katib": "v0.19.0"}
	case "validate":
		res = o.validate(&req)
	case "defaults":
		res = o.defaults(&req)
	case "render":
		res = o.render(&req)
	case "collect":
		res = o.collect(&req)
	case "regex":
		res = regex(&req)
	case "status":
		res = o.status(&req)
	default:
		return answer{"ok": false, "error": fmt.Sprintf("unknown op %q", req.Op)}
	}
	if _, failed := res["error"]; failed {
		res["ok"] = false
	} else {
		res["ok"] = true
	}
	res["op"] = req.Op
	return res
}

// fakeClient is a controller-runtime fake client holding the katib-config ConfigMap
// (namespace kubeflow) and any trial-template ConfigMaps the case brings.
func (o *oracle) fakeClient(extra map[string]map[string]string) client.Client {
	objs := []client.Object{&corev1.ConfigMap{}}
	objs[0].(*corev1.ConfigMap).Name = consts.KatibConfigMapName
	objs[0].(*corev1.ConfigMap).Namespace = consts.DefaultKatibNamespace
	objs[0].(*corev1.ConfigMap).Data = map[string]string{consts.LabelKatibConfigTag: o.katibConfig}
	for key, data := range extra { // "namespace/name"
		ns, name, _ := strings.Cut(key, "/")
		cm := &corev1.ConfigMap{Data: data}
		cm.Name, cm.Namespace = name, ns
		objs = append(objs, cm)
	}
	return fake.NewClientBuilder().WithScheme(o.scheme).WithObjects(objs...).Build()
}

func decodeExperiment(raw json.RawMessage) (*experimentsv1beta1.Experiment, error) {
	exp := &experimentsv1beta1.Experiment{}
	if err := json.Unmarshal(raw, exp); err != nil {
		return nil, err
	}
	return exp, nil
}

func (o *oracle) validate(req *request) answer {
	exp, err := decodeExperiment(req.Experiment)
	if err != nil {
		return answer{"decode_error": err.Error()}
	}
	if req.Namespace != "" && exp.Namespace == "" {
		exp.Namespace = req.Namespace
	}
	exp.SetDefault() // the mutating webhook runs before the validating one
	var old *experimentsv1beta1.Experiment
	if len(req.Old) > 0 && string(req.Old) != "null" {
		if old, err = decodeExperiment(req.Old); err != nil {
			return answer{"error": "old: " + err.Error()}
		}
	}
	v := validator.New(manifest.New(o.fakeClient(req.ConfigMaps)))
	errs := v.ValidateExperiment(exp, old)
	list := make([]answer, 0, len(errs))
	for _, e := range errs {
		list = append(list, answer{"field": e.Field, "type": string(e.Type), "detail": e.Detail})
	}
	return answer{"errors": list}
}

func (o *oracle) defaults(req *request) answer {
	exp, err := decodeExperiment(req.Experiment)
	if err != nil {
		return answer{"decode_error": err.Error()}
	}
	exp.SetDefault()
	return answer{"experiment": exp}
}

func regex(req *request) answer {
	re, err := regexp.Compile(req.Pattern)
	if err != nil {
		return answer{"valid": false, "compile_error": err.Error()}
	}
	return answer{"valid": true, "groups": re.NumSubexp()}
}

func (o *oracle) render(req *request) answer {
	exp, err := decodeExperiment(req.Experiment)
	if err != nil {
		return answer{"decode_error": err.Error()}
	}
	exp.SetDefault()
	ns := req.Namespace
	if ns == "" {
		ns = exp.Namespace
	}
	gen := manifest.New(o.fakeClient(req.ConfigMaps))
	runSpec, err := gen.GetRunSpecWithHyperParameters(exp, req.TrialName, ns, req.Assignments)
	if err != nil {
		return answer{"render_error": err.Error()}
	}
	res := answer{"run_spec": runSpec.Object}
	command, args, werr := wrapPrimary(exp, req.TrialName, ns, runSpec.Object)
	if werr != "" {
		res["wrap_error"] = werr
	} else if command != nil {
		res["command"], res["args"] = command, args
	}
	return res
}

func (o *oracle) collect(req *request) answer {
	if len(req.Metrics) == 0 {
		return answer{"error": "metrics must name at least the objective"}
	}
	format := req.Format
	if format == "" {
		format = string(commonv1beta1.TextFormat)
	}
	// The filters travel from the Experiment to the sidecar as one "-f" flag.
	mc := commonv1beta1.MetricsCollectorSpec{Collector: &commonv1beta1.CollectorSpec{Kind: commonv1beta1.FileCollector},
		Source: &commonv1beta1.SourceSpec{FileSystemPath: &commonv1beta1.FileSystemPath{
			Path: "/var/log/katib/metrics.log", Kind: commonv1beta1.FileKind,
			Format: commonv1beta1.FileFormat(format)}}}
	if len(req.Filters) > 0 {
		mc.Source.Filter = &commonv1beta1.FilterSpec{MetricsFormat: req.Filters}
	}
	filters, err := sidecarFilters(mc, req.Metrics)
	if err != nil {
		return answer{"error": err.Error()}
	}
	dir, err := os.MkdirTemp("", "katib-oracle-")
	if err != nil {
		return answer{"error": err.Error()}
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "metrics.log")
	if err := os.WriteFile(path, []byte(req.Text), 0o600); err != nil {
		return answer{"error": err.Error()}
	}
	res := answer{"sidecar_filters": filters}
	obsLog, err := collectObservationLog(path, req.Metrics, filters, commonv1beta1.FileFormat(format))
	if err != nil {
		res["collect_error"] = err.Error()
		return res
	}
	res["logs"] = metricLogs(obsLog)
	dbLogs, err := dbRoundTrip(obsLog)
	if err != nil {
		res["db_error"] = err.Error()
		return res
	}
	res["db_logs"] = metricLogs(dbLogs)
	strategies := make([]commonv1beta1.MetricStrategy, 0, len(req.Metrics))
	for _, m := range req.Metrics {
		strategies = append(strategies, commonv1beta1.MetricStrategy{Name: m, Value: commonv1beta1.ExtractByLatest})
	}
	obs, err := trialGetMetrics(dbLogs.MetricLogs, strategies)
	if err != nil {
		res["observation_error"] = err.Error()
		return res
	}
	res["observation"] = obs.Metrics
	return res
}

type trialCase struct {
	Name        string                              `json:"name"`
	State       string                              `json:"state"`   // Succeeded | Failed | Killed | EarlyStopped | MetricsUnavailable | Running | Pending
	Metrics     []commonv1beta1.Metric              `json:"metrics"` // observation; null = none
	Assignments []commonv1beta1.ParameterAssignment `json:"assignments"`
}

func (o *oracle) status(req *request) answer {
	exp, err := decodeExperiment(req.Experiment)
	if err != nil {
		return answer{"decode_error": err.Error()}
	}
	exp.SetDefault()
	exp.MarkExperimentStatusCreated(experimentutil.ExperimentCreatedReason, "Experiment is created")
	exp.MarkExperimentStatusRunning(experimentutil.ExperimentRunningReason, "Experiment is running")
	list := &trialsv1beta1.TrialList{}
	for _, tc := range req.Trials {
		t := trialsv1beta1.Trial{}
		t.Name, t.Namespace = tc.Name, exp.Namespace
		t.Spec.Objective = exp.Spec.Objective
		t.Spec.ParameterAssignments = tc.Assignments
		if tc.Metrics != nil {
			t.Status.Observation = &commonv1beta1.Observation{Metrics: tc.Metrics}
		}
		t.Status.Conditions = []trialsv1beta1.TrialCondition{{Type: trialsv1beta1.TrialCreated, Status: corev1.ConditionTrue}}
		if tc.State != "" && tc.State != "Pending" {
			t.Status.Conditions = append(t.Status.Conditions,
				trialsv1beta1.TrialCondition{Type: trialsv1beta1.TrialConditionType(tc.State), Status: corev1.ConditionTrue})
		}
		list.Items = append(list.Items, t)
	}
	collector := experimentutil.NewExpsCollector(nil, prometheus.NewRegistry())
	if err := experimentutil.UpdateExperimentStatus(collector, exp, list); err != nil {
		return answer{"error": err.Error()}
	}
	if req.SuggestionDone != nil && !exp.IsCompleted() {
		experimentutil.UpdateExperimentStatusCondition(collector, exp, false, *req.SuggestionDone)
	}
	conds := make([]answer, 0, len(exp.Status.Conditions))
	for _, c := range exp.Status.Conditions {
		conds = append(conds, answer{"type": string(c.Type), "status": string(c.Status), "reason": c.Reason, "message": c.Message})
	}
	st := exp.Status
	return answer{
		"current_optimal_trial": st.CurrentOptimalTrial,
		"conditions":            conds,
		"completed":             exp.IsCompleted(),
		"counts": answer{"trials": st.Trials, "succeeded": st.TrialsSucceeded, "failed": st.TrialsFailed,
			"killed": st.TrialsKilled, "early_stopped": st.TrialsEarlyStopped,
			"metrics_unavailable": st.TrialMetricsUnavailable, "running": st.TrialsRunning, "pending": st.TrialsPending},
	}
}
