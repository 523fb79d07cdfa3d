package app

import "testing"

// TestLocalTransportSetting: the local transport is off unless the worker
// process has OPSFLOW_LOCAL_TRANSPORT=1 (or true).
func TestLocalTransportSetting(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "yes": false, "1": true, "true": true} {
		t.Setenv("OPSFLOW_LOCAL_TRANSPORT", v)
		if got := ConfigFromEnv().LocalTransport; got != want {
			t.Errorf("OPSFLOW_LOCAL_TRANSPORT=%q: %v", v, got)
		}
	}
}
