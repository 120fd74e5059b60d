package duration

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"1weeks", Week},
		{"2weeks", 2 * Week},
		{"15mins", 15 * time.Minute},
		{"5secs", 5 * time.Second},
		{"2hrs", 2 * time.Hour},
		{"100ms", 100 * time.Millisecond},
		{"1days", Day},
		{"3days", 3 * Day},
		{"10us", 10 * time.Microsecond},
		{"5ns", 5},
		{"0ns", 0},
		{"0secs", 0},
		{"1.5secs", 1500 * time.Millisecond},
		{"0.5days", 12 * time.Hour},
		{".5mins", 30 * time.Second},
		{"0.3secs", 300 * time.Millisecond},
		{" 60secs\n", time.Minute},
		{"-5secs", -5 * time.Second},
		// Go syntax, accepted because operators type it.
		{"5s", 5 * time.Second},
		{"1h30m", 90 * time.Minute},
		{"250ms", 250 * time.Millisecond},
		{"0", 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("Parse(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{
		"", "secs", "5", "5 secs", "5sec", "5minutes", "1.2.3secs", "abc",
		"99999999999weeks", "1e3secs", "--5secs", "5secs5",
	} {
		t.Run(in, func(t *testing.T) {
			d, err := Parse(in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want an error", in, d)
			}
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrSyntax", in, err)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0ns"},
		{5, "5ns"},
		{10 * time.Microsecond, "10us"},
		{1500, "1500ns"},
		{100 * time.Millisecond, "100ms"},
		{1500 * time.Microsecond, "1500us"},
		{5 * time.Second, "5secs"},
		{1500 * time.Millisecond, "1500ms"},
		{90 * time.Second, "90secs"},
		{15 * time.Minute, "15mins"},
		{90 * time.Minute, "90mins"},
		{2 * time.Hour, "2hrs"},
		{36 * time.Hour, "36hrs"},
		{Day, "1days"},
		{10 * Day, "10days"},
		{Week, "1weeks"},
		{2 * Week, "2weeks"},
		{Week + time.Hour, "1.00595238095238weeks"},
		{time.Second + 1, "1.000000001secs"},
		{-5 * time.Second, "-5secs"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := Format(tt.in); got != tt.want {
				t.Fatalf("Format(%d) = %q, want %q", int64(tt.in), got, tt.want)
			}
		})
	}
}

func TestFormatExtremes(t *testing.T) {
	for _, d := range []time.Duration{math.MaxInt64, math.MinInt64} {
		if s := Format(d); s == "" {
			t.Fatalf("Format(%d) is empty", int64(d))
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, d := range []time.Duration{
		0, 1, 999, time.Microsecond, 1500 * time.Microsecond, time.Second,
		75 * time.Second, 15 * time.Minute, 25 * time.Hour, 6 * Day, Week, 52 * Week,
		-3 * time.Hour,
	} {
		s := Format(d)
		got, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(Format(%v) = %q): %v", d, s, err)
		}
		if got != d {
			t.Fatalf("Parse(Format(%v) = %q) = %v", d, s, got)
		}
	}
}
