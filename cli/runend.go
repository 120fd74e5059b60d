package cli

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
)

// What `mesolite run` shows and answers when its task ends: the task's own
// exit status, the end of its output, the URLs of its ports; and what it
// says before, when no agent could ever run the task.

// Exit statuses of run beyond the task's own (see runSynopsis).
const (
	exitTimeout     = 124 // --timeout passed, as timeout(1)
	exitInterrupted = 130 // 128 + SIGINT, as a shell reports Ctrl-C
	exitKilled      = 137 // 128 + SIGKILL, as docker run reports a killed container
)

var (
	exitedRe   = regexp.MustCompile(`exited with status (\d+)`)
	signaledRe = regexp.MustCompile(`terminated with signal ([a-z][a-z /-]*[a-z])`)
)

// exitCode is the exit status of a run whose task ended with st: 0 for
// TASK_FINISHED; the command's exit status or 128+signal where the
// executor's message gives it (the command and docker executors write
// "Command exited with status 3", "Command terminated with signal killed");
// 137 for a kill; 1 for any other end.
func exitCode(st *mesos.TaskStatus) int {
	switch st.GetState() {
	case mesos.TaskState_TASK_FINISHED:
		return exitOK
	case mesos.TaskState_TASK_KILLED:
		return exitKilled
	case mesos.TaskState_TASK_FAILED:
		msg := st.GetMessage()
		if m := exitedRe.FindStringSubmatch(msg); m != nil {
			if n, err := strconv.Atoi(m[1]); err == nil && n > 0 && n < 256 {
				return n
			}
		}
		if m := signaledRe.FindStringSubmatch(msg); m != nil {
			if sig := signalNumber(m[1]); sig > 0 {
				return 128 + sig
			}
		}
	}
	return exitFail
}

// signalNumber is the number of the signal Go names name ("killed",
// "terminated"), 0 if none is.
func signalNumber(name string) int {
	for i := 1; i < 65; i++ {
		if syscall.Signal(i).String() == name {
			return i
		}
	}
	return 0
}

// printOutput prints the last lines of the task's stdout and stderr (each
// task's, for a group) once it has ended, read through the agent's files
// API. A file that cannot be read (the sandbox is gone, the agent away) is
// left out without a word: the statuses said what happened.
func (r *runner) printOutput(ctx context.Context) {
	if r.outputLines <= 0 || r.agent == "" || r.task == nil {
		return
	}
	type source struct{ label, dir string }
	var sources []source
	if r.group != nil {
		dir := sandboxPath(r.client.FrameworkID(), r.groupExecutor)
		for _, t := range r.groupTasks {
			id := t.GetTaskId().GetValue()
			sources = append(sources, source{id + " ", dir + "/tasks/" + id})
		}
	} else {
		sources = append(sources, source{"", sandboxPath(r.client.FrameworkID(), r.tmpl.executorID())})
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, src := range sources {
		for _, name := range []string{"stdout", "stderr"} {
			file := src.dir + "/" + name
			from, err := tailOffset(rctx, r.agent, file, r.outputLines)
			if err != nil {
				continue
			}
			var out bytes.Buffer
			if _, err := copyFile(rctx, r.agent, file, from, &out); err != nil || out.Len() == 0 {
				continue
			}
			if from > 0 {
				r.printf("--- last %d lines of %s%s ---\n", r.outputLines, src.label, name)
			} else {
				r.printf("--- %s%s ---\n", src.label, name)
			}
			r.out.Write(out.Bytes())
			if !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
				r.printf("\n")
			}
		}
	}
}

// printPorts prints a URL for each host port the task was given: the
// Docker port mappings (container port -> agent port), and the ports of a
// task without mappings, which it listens on itself.
func (r *runner) printPorts(task *mesos.TaskInfo) {
	host := r.agent
	if h, _, err := net.SplitHostPort(r.agent); err == nil {
		host = h
	}
	container := task.GetContainer()
	if container == nil {
		container = task.GetExecutor().GetContainer()
	}
	if pms := container.GetDocker().GetPortMappings(); len(pms) > 0 {
		for _, pm := range pms {
			proto := cmp.Or(pm.GetProtocol(), "tcp")
			addr := net.JoinHostPort(host, strconv.Itoa(int(pm.GetHostPort())))
			if proto == "tcp" {
				addr = "http://" + addr
			}
			r.printf("  port %d/%s: %s\n", pm.GetContainerPort(), proto, addr)
		}
		return
	}
	for _, res := range task.GetResources() {
		if res.GetName() != "ports" {
			continue
		}
		for _, rg := range res.GetRanges().GetRange() {
			for p := rg.GetBegin(); p <= rg.GetEnd() && p-rg.GetBegin() < 100; p++ {
				r.printf("  port %d: http://%s\n", p, net.JoinHostPort(host, strconv.FormatUint(p, 10)))
			}
		}
	}
}

// fitCheckInterval spaces the run's questions about the cluster's agents
// while its offers do not fit; a variable for tests.
var fitCheckInterval = 2 * time.Second

// refuseAfter is how many checks in a row, fitCheckInterval apart, must
// find that no agent could fit the task before the run gives up: an agent
// that was registering when the run started gets its chance.
const refuseAfter = 2

// checkSatisfiable is asked when no offer of a round fitted the task, and
// again at each fit recheck: it compares what the task wants with each
// agent's total resources (the operator API's GET_AGENTS), and ends the run
// with the reason once no agent could ever fit it however long the run
// waited. Agents busy with other tasks are no reason: the run waits for
// them. No agents at all is none either: one may be starting.
func (r *runner) checkSatisfiable(ctx context.Context, recheck bool) (int, bool) {
	if r.task != nil || (!recheck && (r.fitRecheck != nil || time.Since(r.lastFitCheck) < fitCheckInterval)) {
		return 0, false
	}
	r.fitRecheck = nil
	r.lastFitCheck = time.Now()
	want, pickPorts, pinned := r.tmpl.want, r.tmpl.pickPorts, r.tmpl.agentID
	if r.group != nil {
		want, pickPorts, pinned = r.group.want(), 0, ""
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	agents, err := clusterAgents(cctx, r.client.Master())
	reason := ""
	if err == nil && len(agents) > 0 {
		reason = unsatisfiable(agents, want, pickPorts, pinned)
	}
	if reason == "" {
		r.unfit = 0
		return 0, false
	}
	if r.unfit++; r.unfit >= refuseAfter {
		return r.cmd.fail("no agent can run the task: %s", reason), true
	}
	r.fitRecheck = time.After(fitCheckInterval)
	return 0, false
}

// clusterAgent is an agent as the fit check sees it.
type clusterAgent struct {
	id, hostname string
	total        []*mesos.Resource
}

// clusterAgents asks the master for its agents and their total resources.
func clusterAgents(ctx context.Context, master string) ([]clusterAgent, error) {
	data, err := operatorCall(ctx, master, &masterpb.Call{Type: masterpb.Call_GET_AGENTS.Enum()})
	if err != nil {
		return nil, err
	}
	var resp masterpb.Response
	if err := codec.JSON.Unmarshal(data, &resp); err != nil {
		return nil, err
	}
	var out []clusterAgent
	for _, a := range resp.GetGetAgents().GetAgents() {
		out = append(out, clusterAgent{id: a.GetAgentInfo().GetId().GetValue(), hostname: a.GetAgentInfo().GetHostname(), total: a.GetTotalResources()})
	}
	return out, nil
}

// unsatisfiable says why no agent could fit want even empty, or "" when
// one could. The reason names a resource no agent has (with the name meant,
// for a typo), the largest amount of a scalar any agent has, or what each
// agent lacks.
func unsatisfiable(agents []clusterAgent, want []*mesos.Resource, pickPorts int, pinned string) string {
	if pinned != "" {
		agents = slices.DeleteFunc(slices.Clone(agents), func(a clusterAgent) bool { return a.id != pinned })
		if len(agents) == 0 {
			return "" // the pinned agent may come back
		}
	}
	var why []string
	for _, a := range agents {
		_, _, err := allocate(a.total, want, pickPorts)
		if err == nil {
			return ""
		}
		// The matcher speaks of offers; here it was given the agent's
		// total.
		msg := strings.TrimPrefix(err.Error(), errNoFit.Error()+": ")
		msg = strings.NewReplacer("not offered (offered ", "not among the agent's (", ", offered ", ", the agent has ").Replace(msg)
		why = append(why, cmp.Or(a.hostname, a.id)+": "+msg)
	}
	have := map[string]bool{}
	largest := map[string]float64{}
	for _, a := range agents {
		sums := map[string]float64{}
		for _, res := range a.total {
			have[res.GetName()] = true
			if res.GetType() == mesos.Value_SCALAR {
				sums[res.GetName()] += res.GetScalar().GetValue()
			}
		}
		for n, v := range sums {
			largest[n] = max(largest[n], v)
		}
	}
	asked := map[string]float64{}
	var names []string
	for _, res := range want {
		if !slices.Contains(names, res.GetName()) {
			names = append(names, res.GetName())
		}
		if res.GetType() == mesos.Value_SCALAR {
			asked[res.GetName()] += res.GetScalar().GetValue()
		}
	}
	for _, n := range names {
		if have[n] {
			continue
		}
		s := fmt.Sprintf("no agent has a resource '%s'", n)
		if near := nearestName(n, have); near != "" && !wellKnown[n] {
			s += fmt.Sprintf(" (did you mean %s?)", near)
		}
		return s
	}
	for _, n := range names {
		if v, ok := asked[n]; ok && largest[n] < v {
			return fmt.Sprintf("the largest agent offers %s %s, the task asks %s", fmtScalar(largest[n]), n, fmtScalar(v))
		}
	}
	return strings.Join(why, "; ")
}

func fmtScalar(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// wellKnown are Mesos's own resource names: one an agent lacks is no typo.
var wellKnown = map[string]bool{"cpus": true, "mem": true, "disk": true, "ports": true, "gpus": true}

// nearestName is the name of have closest to n (cpu -> cpus, memory ->
// mem), or "" when none is close.
func nearestName(n string, have map[string]bool) string {
	best, bestD := "", 3
	for h := range have {
		d := levenshtein(n, h)
		if strings.HasPrefix(h, n) || strings.HasPrefix(n, h) {
			d = min(d, 1)
		}
		if d < bestD || (d == bestD && h < best) {
			best, bestD = h, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
