package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/maintenance"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/validate"
	"google.golang.org/protobuf/proto"
)

const maintenanceSynopsis = `Usage: mesolite maintenance --master=HOST:PORT SUBCOMMAND [ARGS]

The operator API's maintenance and drain calls:

  status                      draining machines (with the frameworks' answers) and down machines
  schedule                    print the maintenance schedule
  schedule FILE               replace it with the Schedule in FILE (Mesos's JSON; - for stdin)
  down HOST[=IP] ...          take scheduled machines down: their agents are removed
  up HOST[=IP] ...            bring down machines up, out of the schedule
  drain AGENT_ID [--max_grace_period=D] [--mark_gone]
                              kill every task of an agent, then keep it drained

Changes need credentials when the master has --authenticate_http_readwrite.`

// Maintenance is `mesolite maintenance`.
func Maintenance(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("maintenance", maintenanceSynopsis, stdout, stderr)
	master := c.masterFlag()
	asJSON := c.Bool("json", false, "print status and schedule as Mesos's JSON")
	grace := c.Duration("max_grace_period", 0, "drain: at most this long for each task to stop (0: each task's own kill policy)")
	markGone := c.Bool("mark_gone", false, "drain: mark the agent gone once it is drained")
	pos, code, stop := c.parse(args)
	if stop {
		return code
	}
	if len(pos) == 0 {
		return c.usageError("want a subcommand: status, schedule, down, up or drain")
	}
	ctx = c.context(ctx)
	sub, rest := pos[0], pos[1:]
	call := func(call *masterpb.Call) (*masterpb.Response, bool) {
		body, err := operatorCall(ctx, *master, call)
		if err != nil {
			c.fail("%v", err)
			return nil, false
		}
		resp := &masterpb.Response{}
		if len(body) > 0 {
			if err := codec.JSON.Unmarshal(body, resp); err != nil {
				c.fail("%s: bad answer: %v", call.GetType(), err)
				return nil, false
			}
		}
		return resp, true
	}
	printJSON := func(m proto.Message) int {
		data, err := codec.JSON.Marshal(m)
		if err != nil {
			return c.fail("%v", err)
		}
		fmt.Fprintln(stdout, string(data))
		return exitOK
	}
	switch sub {
	case "status":
		resp, ok := call(&masterpb.Call{Type: masterpb.Call_GET_MAINTENANCE_STATUS.Enum()})
		if !ok {
			return exitFail
		}
		st := resp.GetGetMaintenanceStatus().GetStatus()
		if *asJSON {
			return printJSON(st)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		io.WriteString(tw, "MACHINE\tMODE\tANSWERS\n")
		for _, dm := range st.GetDrainingMachines() {
			var answers []string
			for _, s := range dm.GetStatuses() {
				answers = append(answers, s.GetFrameworkId().GetValue()+":"+s.GetStatus().String())
			}
			fmt.Fprintf(tw, "%s\tDRAINING\t%s\n", machineString(dm.GetId()), strings.Join(answers, ","))
		}
		for _, id := range st.GetDownMachines() {
			fmt.Fprintf(tw, "%s\tDOWN\t\n", machineString(id))
		}
		if err := tw.Flush(); err != nil {
			return c.fail("%v", err)
		}
		return exitOK
	case "schedule":
		if len(rest) == 0 {
			resp, ok := call(&masterpb.Call{Type: masterpb.Call_GET_MAINTENANCE_SCHEDULE.Enum()})
			if !ok {
				return exitFail
			}
			s := resp.GetGetMaintenanceSchedule().GetSchedule()
			if *asJSON {
				return printJSON(s)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			io.WriteString(tw, "WINDOW\tSTART\tDURATION\tMACHINES\n")
			for i, w := range s.GetWindows() {
				u := w.GetUnavailability()
				start := time.Unix(0, u.GetStart().GetNanoseconds()).UTC().Format(time.RFC3339)
				dur := "forever"
				if u.GetDuration() != nil {
					dur = time.Duration(u.GetDuration().GetNanoseconds()).String()
				}
				var ms []string
				for _, id := range w.GetMachineIds() {
					ms = append(ms, machineString(id))
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", i, start, dur, strings.Join(ms, ","))
			}
			if err := tw.Flush(); err != nil {
				return c.fail("%v", err)
			}
			return exitOK
		}
		var data []byte
		var err error
		if rest[0] == "-" {
			data, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
		} else {
			data, err = os.ReadFile(rest[0])
		}
		if err != nil {
			return c.fail("%v", err)
		}
		s := &maintenance.Schedule{}
		if err := codec.JSON.Unmarshal(data, s); err != nil {
			return c.usageError("%s is not a maintenance Schedule in JSON: %v", rest[0], err)
		}
		if _, ok := call(&masterpb.Call{Type: masterpb.Call_UPDATE_MAINTENANCE_SCHEDULE.Enum(),
			UpdateMaintenanceSchedule: &masterpb.Call_UpdateMaintenanceSchedule{Schedule: s}}); !ok {
			return exitFail
		}
		fmt.Fprintf(stdout, "schedule updated: %d window(s)\n", len(s.GetWindows()))
		return exitOK
	case "down", "up":
		if len(rest) == 0 {
			return c.usageError("%s: want machines, HOST or HOST=IP", sub)
		}
		var ids []*mesos.MachineID
		for _, m := range rest {
			host, ip, _ := strings.Cut(m, "=")
			id := &mesos.MachineID{}
			if host != "" {
				id.Hostname = proto.String(host)
			}
			if ip != "" {
				id.Ip = proto.String(ip)
			}
			ids = append(ids, id)
		}
		mc := &masterpb.Call{Type: masterpb.Call_START_MAINTENANCE.Enum(), StartMaintenance: &masterpb.Call_StartMaintenance{Machines: ids}}
		if sub == "up" {
			mc = &masterpb.Call{Type: masterpb.Call_STOP_MAINTENANCE.Enum(), StopMaintenance: &masterpb.Call_StopMaintenance{Machines: ids}}
		}
		if _, ok := call(mc); !ok {
			return exitFail
		}
		fmt.Fprintf(stdout, "%d machine(s) %s\n", len(ids), sub)
		return exitOK
	case "drain":
		if len(rest) != 1 {
			return c.usageError("drain: want one AGENT_ID")
		}
		if err := validate.ID("Agent ID", rest[0]); err != nil {
			return c.usageError("%v", err)
		}
		d := &masterpb.Call_DrainAgent{AgentId: &mesos.AgentID{Value: proto.String(rest[0])}, MarkGone: proto.Bool(*markGone)}
		if *grace > 0 {
			d.MaxGracePeriod = &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(*grace))}
		}
		if _, ok := call(&masterpb.Call{Type: masterpb.Call_DRAIN_AGENT.Enum(), DrainAgent: d}); !ok {
			return exitFail
		}
		fmt.Fprintf(stdout, "agent %s draining\n", rest[0])
		return exitOK
	default:
		return c.usageError("unknown subcommand %q", sub)
	}
}

func machineString(id *mesos.MachineID) string {
	switch {
	case id.GetHostname() != "" && id.GetIp() != "":
		return id.GetHostname() + "=" + id.GetIp()
	case id.GetHostname() != "":
		return id.GetHostname()
	}
	return id.GetIp()
}
