package api

import (
	"testing"
	"time"
)

func TestParseLogLine(t *testing.T) {
	prev := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		line, level, msg string
		at               time.Time
		fields           map[string]string
	}{
		{`time=2026-12-07T11:19:32.862Z level=INFO msg="process started" cmd=/bin/bash pty=false tag=""`,
			"info", "process started", time.Date(2026, 12, 7, 11, 19, 32, 862e6, time.UTC),
			map[string]string{"cmd": "/bin/bash", "pty": "false", "tag": ""}},
		{`time="2026-12-07T11:19:32Z" level=warning msg="config.json has \"both\""`,
			"warn", `config.json has "both"`, time.Date(2026, 12, 7, 11, 19, 32, 0, time.UTC), map[string]string{}},
		{`time=2026-12-07T11:19:33Z level=ERROR msg="request failed" err="a b"`,
			"error", "request failed", time.Date(2026, 12, 7, 11, 19, 33, 0, time.UTC), map[string]string{"err": "a b"}},
		{`--- sbx: starting box abc at 2026-12-07T11:19:32.466123008Z`,
			"info", "starting box abc", time.Date(2026, 12, 7, 11, 19, 32, 466123008, time.UTC), map[string]string{}},
		{`panic: something odd`, "info", "panic: something odd", prev, map[string]string{}},
		{`a=1 b="unterminated`, "info", `a=1 b="unterminated`, prev, map[string]string{}},
		{`level=DEBUG msg=x`, "debug", "x", prev, map[string]string{}},
	} {
		e := parseLogLine(tc.line, prev)
		if e.Level != tc.level || e.Message != tc.msg || !e.Timestamp.Equal(tc.at) || len(e.Fields) != len(tc.fields) {
			t.Errorf("%q: %+v; want level %s, message %q at %v, fields %v", tc.line, e, tc.level, tc.msg, tc.at, tc.fields)
			continue
		}
		for k, v := range tc.fields {
			if e.Fields[k] != v {
				t.Errorf("%q: field %s = %q, want %q", tc.line, k, e.Fields[k], v)
			}
		}
	}
}
