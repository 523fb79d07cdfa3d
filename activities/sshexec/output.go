package sshexec

import (
	"strings"
	"sync"
)

// OutputCap is how much of a host's output is stored; the total size is
// recorded and the cut reported.
const OutputCap = 256 << 10

// tailBytes is how much of the output's end the wrapper sends: the kept
// OutputCap, extra bytes of context for the masker, and one byte that
// tells a cut output from a whole one.
func tailBytes(extra int) int { return OutputCap + extra + 1 }

// EndOutput gives out the output's end as the wrapper sent it (WaitExec),
// masked before it is cut, and returns what the host's record keeps.
func EndOutput(out *OutputSink, last string, cut bool, secrets []string) string {
	if cut {
		last = maskTail(last, secrets, OutputCap)
	}
	out.Write(last)
	out.Finish()
	return out.Tail()
}

// maskTail masks secrets in the end of an output that was cut, then keeps
// its last keep bytes: buf holds enough bytes before those (the longest
// secret's length) that a secret crossing the cut is masked whole, and
// the part of it before the cut shows as *** at the start.
func maskTail(buf string, secrets []string, keep int) string {
	from := max(0, len(buf)-keep)
	covered := make([]bool, len(buf))
	for _, s := range secrets {
		for i := 0; ; {
			j := strings.Index(buf[i:], s)
			if j < 0 {
				break
			}
			for k := i + j; k < i+j+len(s); k++ {
				covered[k] = true
			}
			i += j + 1
		}
	}
	var b strings.Builder
	for i := from; i < len(buf); i++ {
		if !covered[i] {
			b.WriteByte(buf[i])
			continue
		}
		if i == from || !covered[i-1] {
			b.WriteString("***")
		}
	}
	return b.String()
}

// OutputSink collects a host's output as it is read: it stores it for live
// readers (each read's complete lines, scrubbed of secret values line by
// line) up to OutputCap, and keeps the last OutputCap bytes for the host's
// record.
type OutputSink struct {
	store   func(string)
	secrets []string

	mu      sync.Mutex
	read    int64  // bytes read from the host
	partial string // an incomplete last line, held until it completes
	holding bool   // store nothing now: keep pieces for TakeHeld
	held    []string
	kept    []byte
	total   int64
	stored  int64
}

// NewOutputSink returns a sink that hands store the output to keep for
// live readers, with every value of secrets replaced by ***.
func NewOutputSink(store func(string), secrets []string) *OutputSink {
	return &OutputSink{store: store, secrets: secrets}
}

// Size is how many bytes of the output were read from the host so far.
func (o *OutputSink) Size() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.read
}

// Total is the size of the output as masked, stored or not.
func (o *OutputSink) Total() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.total
}

// Write takes the next bytes of the output.
func (o *OutputSink) Write(data string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.read += int64(len(data))
	data = o.partial + data
	i := strings.LastIndexByte(data, '\n')
	o.partial = data[i+1:]
	o.add(data[:i+1])
}

// Finish takes the incomplete last line, at the end of the output.
func (o *OutputSink) Finish() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.add(o.partial)
	o.partial = ""
}

func (o *OutputSink) add(lines string) {
	if lines == "" {
		return
	}
	for _, s := range o.secrets {
		lines = strings.ReplaceAll(lines, s, "***")
	}
	o.total += int64(len(lines))
	o.kept = append(o.kept, lines...)
	if len(o.kept) > 2*OutputCap {
		o.kept = append(o.kept[:0], o.kept[len(o.kept)-OutputCap:]...)
	}
	if o.stored < OutputCap {
		if room := OutputCap - o.stored; int64(len(lines)) > room {
			lines = lines[:room]
		}
		o.stored += int64(len(lines))
		if o.holding {
			o.held = append(o.held, lines)
		} else {
			o.store(lines)
		}
	}
}

// Hold keeps the pieces from now on for TakeHeld instead of storing them.
func (o *OutputSink) Hold() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.holding = true
}

// TakeHeld returns the pieces kept since Hold, once.
func (o *OutputSink) TakeHeld() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.held
	o.held = nil
	return h
}

// Tail is the output's last OutputCap bytes, as masked.
func (o *OutputSink) Tail() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.kept) > OutputCap {
		return string(o.kept[len(o.kept)-OutputCap:])
	}
	return string(o.kept)
}
