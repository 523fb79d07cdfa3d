// Package activities holds opsflow's side effects: one struct per external
// system, its methods are the activities.
package activities

// Application error types for non-retryable business failures. They are
// wire values checked by workflows: never rename one.
const (
	ErrTypeInvalidInput   = "InvalidInput"
	ErrTypeHostKeyChanged = "HostKeyChanged"
	// ErrTypeForbidden: who asked (a schedule's creator) may not do it.
	ErrTypeForbidden = "Forbidden"
	// ErrTypeLocalTransportOff: the worker does not run the local transport.
	ErrTypeLocalTransportOff = "LocalTransportOff"
)
