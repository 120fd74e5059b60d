package agent

import (
	"io"
	"log/slog"
	"testing"
)

func TestExecutorPhaseTransitions(t *testing.T) {
	a := &Agent{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	tests := []struct {
		from, to executorPhase
		ok       bool
	}{
		{phaseLaunching, phaseRegistering, true},
		{phaseLaunching, phaseRunning, true}, // subscribed before Launch returned
		{phaseLaunching, phaseKilling, true},
		{phaseRegistering, phaseRunning, true},
		{phaseRegistering, phaseKilling, true},
		{phaseRunning, phaseKilling, true},
		{phaseRunning, phaseTerminated, true},
		{phaseKilling, phaseTerminated, true},
		{phaseKilling, phaseRunning, false}, // a late SUBSCRIBE does not revive it
		{phaseRunning, phaseRegistering, false},
		{phaseTerminated, phaseTerminated, false}, // a second termination is no-op
		{phaseTerminated, phaseKilling, false},
	}
	for _, tt := range tests {
		t.Run(tt.from.String()+"->"+tt.to.String(), func(t *testing.T) {
			es := newExecutorState(nil, "fw", "c", tt.from)
			if got := a.setPhaseLocked(es, tt.to); got != tt.ok {
				t.Fatalf("setPhase = %v, want %v", got, tt.ok)
			}
			want := tt.from
			if tt.ok {
				want = tt.to
			}
			if es.phase != want {
				t.Fatalf("phase %v, want %v", es.phase, want)
			}
			// Killing and terminated end the executor's context (its
			// launch); nothing else does.
			ended := es.ctx.Err() != nil
			if ended != (es.phase >= phaseKilling) {
				t.Fatalf("in %v the executor's context ended=%v", es.phase, ended)
			}
		})
	}
}
