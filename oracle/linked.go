package main

// Katib keeps a few of the functions this oracle needs unexported. Rather than
// copying them, the oracle links to Katib's own compiled functions by symbol
// name (go:linkname "pull" of a non-standard-library package, which the Go
// linker allows). The signatures below must match Katib v0.19.0 exactly; a
// mismatch would be a build or run-time failure, not a silent difference.

import (
	"database/sql"
	"database/sql/driver"
	"fmt"
	"sort"
	"strings"
	"time"
	_ "unsafe" // go:linkname

	sqlmock "github.com/DATA-DOG/go-sqlmock"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	configv1beta1 "github.com/kubeflow/katib/pkg/apis/config/v1beta1"
	commonv1beta1 "github.com/kubeflow/katib/pkg/apis/controller/common/v1beta1"
	experimentsv1beta1 "github.com/kubeflow/katib/pkg/apis/controller/experiments/v1beta1"
	trialsv1beta1 "github.com/kubeflow/katib/pkg/apis/controller/trials/v1beta1"
	apiv1beta1 "github.com/kubeflow/katib/pkg/apis/manager/v1beta1"
	_ "github.com/kubeflow/katib/pkg/controller.v1beta1/trial"
	_ "github.com/kubeflow/katib/pkg/db/v1beta1/mysql"
	filemc "github.com/kubeflow/katib/pkg/metricscollector/v1beta1/file-metricscollector"
	podwebhook "github.com/kubeflow/katib/pkg/webhook/v1beta1/pod"
)

// pkg/controller.v1beta1/trial/trial_controller_util.go: min / max / latest per metric.
//
//go:linkname trialGetMetrics github.com/kubeflow/katib/pkg/controller.v1beta1/trial.getMetrics
func trialGetMetrics(metricLogs []*apiv1beta1.MetricLog, strategies []commonv1beta1.MetricStrategy) (*commonv1beta1.Observation, error)

// pkg/webhook/v1beta1/pod/utils.go: where the collector reads, and the `sh -c` wrapping.
//
//go:linkname getMountPath github.com/kubeflow/katib/pkg/webhook/v1beta1/pod.getMountPath
func getMountPath(mc commonv1beta1.MetricsCollectorSpec) (string, commonv1beta1.FileSystemKind)

//go:linkname needWrapWorkerContainer github.com/kubeflow/katib/pkg/webhook/v1beta1/pod.needWrapWorkerContainer
func needWrapWorkerContainer(mc commonv1beta1.MetricsCollectorSpec) bool

//go:linkname wrapWorkerContainer github.com/kubeflow/katib/pkg/webhook/v1beta1/pod.wrapWorkerContainer
func wrapWorkerContainer(trial *trialsv1beta1.Trial, pod *corev1.Pod, namespace, metricsFile string, pathKind commonv1beta1.FileSystemKind) error

// pkg/webhook/v1beta1/pod/inject_webhook.go: the sidecar's flags (filters joined by ";").
//
//go:linkname getMetricsCollectorArgs github.com/kubeflow/katib/pkg/webhook/v1beta1/pod.(*SidecarInjector).getMetricsCollectorArgs
func getMetricsCollectorArgs(s *podwebhook.SidecarInjector, trial *trialsv1beta1.Trial, metricNames string, mc commonv1beta1.MetricsCollectorSpec, metricsCollectorConfigData configv1beta1.MetricsCollectorConfig, esRules []string) ([]string, error)

// pkg/db/v1beta1/mysql/mysql.go: katib-db-manager's MySQL backend. dbConn is
// `struct{ db *sql.DB }` there; mysqlConn has the same layout.
type mysqlConn struct{ db *sql.DB }

//go:linkname mysqlRegisterObservationLog github.com/kubeflow/katib/pkg/db/v1beta1/mysql.(*dbConn).RegisterObservationLog
func mysqlRegisterObservationLog(d *mysqlConn, trialName string, observationLog *apiv1beta1.ObservationLog) error

//go:linkname mysqlGetObservationLog github.com/kubeflow/katib/pkg/db/v1beta1/mysql.(*dbConn).GetObservationLog
func mysqlGetObservationLog(d *mysqlConn, trialName string, metricName string, startTime string, endTime string) (*apiv1beta1.ObservationLog, error)

func collectObservationLog(path string, metrics, filters []string, format commonv1beta1.FileFormat) (*apiv1beta1.ObservationLog, error) {
	return filemc.CollectObservationLog(path, metrics, filters, format)
}

// sidecarFilters: the filters the sidecar ends up with. The pod webhook builds its
// args with Katib's getMetricsCollectorArgs; the sidecar's main() (package main,
// not importable) splits "-f" on ";" when it is not empty: that one line is
// repeated here.
func sidecarFilters(mc commonv1beta1.MetricsCollectorSpec, metrics []string) ([]string, error) {
	trial := &trialsv1beta1.Trial{}
	trial.Name = "oracle-trial"
	trial.Spec.Objective = &commonv1beta1.ObjectiveSpec{Type: commonv1beta1.ObjectiveTypeMaximize}
	args, err := getMetricsCollectorArgs(nil, trial, strings.Join(metrics, ";"), mc, configv1beta1.MetricsCollectorConfig{}, nil)
	if err != nil {
		return nil, err
	}
	var filters []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-f" && len(args[i+1]) != 0 {
			filters = strings.Split(args[i+1], ";")
		}
	}
	return filters, nil
}

// wrapPrimary: the primary container's command and args after the pod webhook's
// wrapping, for a batch/v1 Job trial (nil when the collector does not wrap).
func wrapPrimary(exp *experimentsv1beta1.Experiment, trialName, namespace string, runSpec map[string]interface{}) ([]string, []string, string) {
	mc := *exp.Spec.MetricsCollectorSpec
	if !needWrapWorkerContainer(mc) {
		return nil, nil, ""
	}
	job := batchv1.Job{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(runSpec, &job); err != nil {
		return nil, nil, "not a batch Job: " + err.Error()
	}
	pod := &corev1.Pod{Spec: job.Spec.Template.Spec}
	trial := &trialsv1beta1.Trial{}
	trial.Name, trial.Namespace = trialName, namespace
	trial.Spec.PrimaryContainerName = exp.Spec.TrialTemplate.PrimaryContainerName
	trial.Spec.MetricsCollector = mc
	mountPath, pathKind := getMountPath(mc)
	if err := wrapWorkerContainer(trial, pod, namespace, mountPath, pathKind); err != nil {
		return nil, nil, err.Error()
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == trial.Spec.PrimaryContainerName {
			return c.Command, c.Args, ""
		}
	}
	return nil, nil, "primary container not found"
}

// capture records one INSERT argument (sqlmock calls Match for each).
type capture struct{ into *[]string }

func (c capture) Match(v driver.Value) bool {
	*c.into = append(*c.into, fmt.Sprint(v))
	return true
}

// dbRoundTrip stores the observation log with katib-db-manager's MySQL code and
// reads it back with the same code. The SQL server is a fake (sqlmock): it keeps
// the rows as Katib's INSERT wrote them and returns them ORDER BY time (a stable
// sort, so rows with equal times keep insertion order, as InnoDB usually does).
func dbRoundTrip(obsLog *apiv1beta1.ObservationLog) (*apiv1beta1.ObservationLog, error) {
	const trialName = "oracle-trial"
	db, mock, err := sqlmock.New(sqlmock.QueryMatcherOption(sqlmock.QueryMatcherFunc(func(string, string) error { return nil })))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	conn := &mysqlConn{db: db}
	n := 0
	for _, ml := range obsLog.MetricLogs {
		if ml.TimeStamp != "" {
			n++
		}
	}
	var values []string
	if n > 0 {
		args := make([]driver.Value, 4*n)
		for i := range args {
			args[i] = capture{&values}
		}
		mock.ExpectPrepare("INSERT").ExpectExec().WithArgs(args...).WillReturnResult(sqlmock.NewResult(0, int64(n)))
		if err := mysqlRegisterObservationLog(conn, trialName, obsLog); err != nil {
			return nil, err
		}
	}
	type row struct {
		t            time.Time
		ts, name, vv string
	}
	rows := []row{}
	for i := 0; i+3 < len(values); i += 4 {
		t, err := time.Parse("2006-01-02 15:04:05.999999", values[i+1])
		if err != nil {
			return nil, fmt.Errorf("the fake MySQL cannot read the time Katib wrote: %v", err)
		}
		rows = append(rows, row{t, values[i+1], values[i+2], values[i+3]})
	}
	sort.SliceStable(rows, func(a, b int) bool { return rows[a].t.Before(rows[b].t) })
	result := sqlmock.NewRows([]string{"time", "metric_name", "value"})
	for _, r := range rows {
		result.AddRow(r.ts, r.name, r.vv)
	}
	mock.ExpectQuery("SELECT").WillReturnRows(result)
	return mysqlGetObservationLog(conn, trialName, "", "", "")
}

func metricLogs(l *apiv1beta1.ObservationLog) []answer {
	out := make([]answer, 0, len(l.MetricLogs))
	for _, ml := range l.MetricLogs {
		out = append(out, answer{"timestamp": ml.TimeStamp, "name": ml.Metric.Name, "value": ml.Metric.Value})
	}
	return out
}
