package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/api/v1/validate"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/frameworks"
)

// Defaults of a job's fields, Chronos's.
const (
	DefaultCPUs    = 0.1
	DefaultMem     = 128
	DefaultDisk    = 256
	DefaultRetries = 2
	DefaultEpsilon = "PT60S"
	maxNameLen     = 200
	maxRetries     = 100
	// maxExecutorText bounds executorFlags and taskInfoData, which go
	// into every run's task.
	maxExecutorText = 64 << 10
)

// Job is a job definition in Chronos's JSON shape, with the counts and
// times Chronos keeps in it. A job has a Schedule or Parents, never both.
type Job struct {
	Name             string   `json:"name"`
	Description      string   `json:"description"`
	Command          string   `json:"command"`
	Shell            bool     `json:"shell"`
	Arguments        []string `json:"arguments"`
	Schedule         string   `json:"schedule,omitempty"`
	ScheduleTimeZone string   `json:"scheduleTimeZone"`
	Parents          []string `json:"parents,omitempty"`
	Epsilon          string   `json:"epsilon"`
	// Executor, when set, is the command of a custom executor the job's
	// runs go to (ExecutorFlags and the command in its task's data, as
	// "flags|command"); TaskInfoData, when set, is the task's data instead.
	Executor             string     `json:"executor"`
	ExecutorFlags        string     `json:"executorFlags"`
	TaskInfoData         string     `json:"taskInfoData"`
	Retries              int        `json:"retries"`
	Owner                string     `json:"owner"`
	OwnerName            string     `json:"ownerName"`
	Async                bool       `json:"async"`
	Concurrent           bool       `json:"concurrent"`
	SuccessCount         int64      `json:"successCount"`
	ErrorCount           int64      `json:"errorCount"`
	ErrorsSinceSuccess   int64      `json:"errorsSinceLastSuccess"`
	LastSuccess          string     `json:"lastSuccess"`
	LastError            string     `json:"lastError"`
	CPUs                 flexFloat  `json:"cpus"`
	Mem                  flexFloat  `json:"mem"`
	Disk                 flexFloat  `json:"disk"`
	Disabled             bool       `json:"disabled"`
	SoftError            bool       `json:"softError"`
	HighPriority         bool       `json:"highPriority"`
	RunAsUser            string     `json:"runAsUser"`
	Container            *Container `json:"container,omitempty"`
	EnvironmentVariables []EnvVar   `json:"environmentVariables"`
	URIs                 []string   `json:"uris"`
	Fetch                []Fetch    `json:"fetch"`
	Constraints          [][]string `json:"constraints"`
	DataProcessingJob    bool       `json:"dataProcessingJobType"`
	// DataJob is the name Chronos's documentation gives
	// dataProcessingJobType; taken on input only.
	DataJob bool `json:"dataJob,omitempty"`
	// NextCronRun is when a job with a cron schedule runs next (RFC 3339,
	// UTC): the scheduler keeps it, as it rewrites an ISO 8601 schedule's
	// start, so that a restart or a new leader neither repeats nor loses a
	// run. Empty for other jobs; what a client sends is not taken.
	NextCronRun string `json:"nextCronRun,omitempty"`
}

// Container is a job's container: DOCKER (or MESOS) with an image.
type Container struct {
	Type           string      `json:"type"`
	Image          string      `json:"image"`
	Network        string      `json:"network,omitempty"`
	ForcePullImage bool        `json:"forcePullImage,omitempty"`
	Volumes        []Volume    `json:"volumes,omitempty"`
	Parameters     []Parameter `json:"parameters,omitempty"`
}

// Volume is a host path mounted in a job's container.
type Volume struct {
	ContainerPath string `json:"containerPath"`
	HostPath      string `json:"hostPath,omitempty"`
	Mode          string `json:"mode,omitempty"`
}

// Parameter is a docker run option.
type Parameter struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// EnvVar is one environment variable of a job's task.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Fetch is one URI the fetcher downloads into the sandbox.
type Fetch struct {
	URI        string `json:"uri"`
	Cache      bool   `json:"cache"`
	Extract    bool   `json:"extract"`
	Executable bool   `json:"executable"`
}

// flexFloat is a number that Chronos's clients send as a JSON number or
// as a string ("cpus": "0.5" in its own docs).
type flexFloat float64

func (f *flexFloat) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		*f = flexFloat(v)
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = flexFloat(v)
	return nil
}

// JobDefaults are what a job that leaves out its resources or epsilon
// gets: --mesos_task_cpu, --mesos_task_mem, --mesos_task_disk and
// --task_epsilon. A CPUs, Mem or Epsilon left zero is Chronos's default;
// Disk too when all are zero (a zero disk is a valid default otherwise).
type JobDefaults struct {
	CPUs, Mem, Disk float64
	// Epsilon is an ISO 8601 duration (PT60S).
	Epsilon string
}

// orChronos is d with Chronos's defaults where it says nothing.
func (d JobDefaults) orChronos() JobDefaults {
	if d == (JobDefaults{}) {
		d.Disk = DefaultDisk
	}
	if d.CPUs <= 0 {
		d.CPUs = DefaultCPUs
	}
	if d.Mem <= 0 {
		d.Mem = DefaultMem
	}
	if d.Epsilon == "" {
		d.Epsilon = DefaultEpsilon
	}
	return d
}

// DecodeJob reads a job as a client sends it, filling Chronos's defaults
// for the fields it leaves out.
func DecodeJob(b []byte) (*Job, error) { return JobDefaults{}.Decode(b) }

// Decode reads a job as a client sends it, filling d (and Chronos's
// defaults where d says nothing) for the fields it leaves out.
func (d JobDefaults) Decode(b []byte) (*Job, error) {
	d = d.orChronos()
	j := &Job{Shell: true, Retries: DefaultRetries, CPUs: flexFloat(d.CPUs), Mem: flexFloat(d.Mem), Disk: flexFloat(d.Disk), Epsilon: d.Epsilon}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(j); err != nil {
		return nil, fmt.Errorf("the job is not valid JSON: %v: %w", err, errdefs.ErrInvalid)
	}
	if dec.More() {
		return nil, fmt.Errorf("the job is followed by more JSON: %w", errdefs.ErrInvalid)
	}
	if j.Epsilon == "" {
		j.Epsilon = d.Epsilon
	}
	j.DataProcessingJob, j.DataJob = j.DataProcessingJob || j.DataJob, false
	// Chronos lists empty lists as [], not null; clients index them.
	j.Arguments = nonNil(j.Arguments)
	j.EnvironmentVariables = nonNil(j.EnvironmentVariables)
	j.URIs = nonNil(j.URIs)
	j.Fetch = nonNil(j.Fetch)
	j.Constraints = nonNil(j.Constraints)
	return j, nil
}

// ValidName checks a job name: Chronos's ([\w\s.#_-]+): letters, digits,
// '-', '_', '.', '#' and spaces, at least one, not "." or ".." (a name is a
// path segment in the API and a store key), at most maxNameLen long.
// Chronos's \s also lets in tabs and line breaks; those are refused here:
// a name goes into log lines, mail subjects and chat messages.
func ValidName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("job name %.40q: must be 1 to %d characters: %w", name, maxNameLen, errdefs.ErrInvalid)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("job name %q is not allowed: %w", name, errdefs.ErrInvalid)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '#' || c == ' ') {
			return fmt.Errorf("job name %.40q: %q is not allowed; use letters, digits, spaces, '-', '_', '.' and '#': %w", name, c, errdefs.ErrInvalid)
		}
	}
	return nil
}

// Validate checks j on its own (that its parents exist is the store's
// check). scheduled says whether it came as a scheduled job (iso8601) or a
// dependent one (dependency). now resolves an empty schedule start.
func (j *Job) Validate(scheduled bool, now time.Time) error {
	if err := ValidName(j.Name); err != nil {
		return err
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("job %s: %s: %w", j.Name, fmt.Sprintf(format, a...), errdefs.ErrInvalid)
	}
	if strings.TrimSpace(j.Command) == "" && j.Container == nil && j.Executor == "" {
		return bad("no command")
	}
	if err := validate.Text("executorFlags", j.ExecutorFlags, maxExecutorText); err != nil {
		return fmt.Errorf("job %s: %w", j.Name, err)
	}
	if err := validate.Text("taskInfoData", j.TaskInfoData, maxExecutorText); err != nil {
		return fmt.Errorf("job %s: %w", j.Name, err)
	}
	switch {
	case scheduled && j.Schedule == "":
		return bad("a scheduled job needs a schedule (POST /scheduler/dependency for a job with parents)")
	case scheduled && len(j.Parents) > 0:
		return bad("a scheduled job has no parents (POST /scheduler/dependency for a dependent job)")
	case !scheduled && len(j.Parents) == 0:
		return bad("a dependent job needs parents (POST /scheduler/iso8601 for a scheduled job)")
	case !scheduled && j.Schedule != "":
		return bad("a dependent job has no schedule")
	}
	if j.Schedule != "" {
		if _, err := ParseSchedule(j.Schedule, j.ScheduleTimeZone, now); err != nil {
			return fmt.Errorf("job %s: %w", j.Name, err)
		}
	}
	for _, p := range j.Parents {
		if err := ValidName(p); err != nil {
			return fmt.Errorf("job %s: parent: %w", j.Name, err)
		}
		if p == j.Name {
			return bad("a job cannot be its own parent")
		}
	}
	if _, err := ParsePeriod(j.Epsilon); err != nil {
		return fmt.Errorf("job %s: epsilon: %w", j.Name, err)
	}
	if j.Retries < 0 || j.Retries > maxRetries {
		return bad("retries %d: must be 0 to %d", j.Retries, maxRetries)
	}
	if !(j.CPUs > 0 && j.Mem > 0 && j.Disk >= 0) || math.IsInf(float64(j.CPUs+j.Mem+j.Disk), 0) {
		return bad("cpus and mem must be positive, disk not negative, all finite")
	}
	if c := j.Container; c != nil {
		if t := strings.ToUpper(c.Type); t != "DOCKER" && t != "MESOS" && t != "" {
			return bad("container type %q: DOCKER or MESOS", c.Type)
		}
		if c.Image == "" {
			return bad("the container has no image")
		}
	}
	for _, e := range j.EnvironmentVariables {
		if e.Name == "" || strings.ContainsAny(e.Name, "=\x00") {
			return bad("environment variable name %q", e.Name)
		}
	}
	for _, c := range j.Constraints {
		if len(c) != 3 {
			return bad("constraint %q: [attribute, operator, value]", c)
		}
		if op := strings.ToUpper(c[1]); !slices.Contains([]string{"EQUALS", "LIKE", "UNLIKE"}, op) {
			return bad("constraint operator %q: EQUALS, LIKE or UNLIKE", c[1])
		}
		if _, err := parseConstraint(c); err != nil {
			return fmt.Errorf("job %s: %w", j.Name, err)
		}
	}
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// parseConstraint reads a Chronos constraint as the framework base's:
// EQUALS is Marathon's CLUSTER with a value.
func parseConstraint(c []string) (frameworks.Constraint, error) {
	parts := slices.Clone(c)
	if len(parts) > 1 && strings.EqualFold(parts[1], "EQUALS") {
		parts[1] = frameworks.Cluster
	}
	return frameworks.ParseConstraint(parts)
}
