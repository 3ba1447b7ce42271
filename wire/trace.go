package wire

import (
	"context"
	"errors"
	"strings"
)

// TraceContext is the W3C trace context a call carries to its handler:
// Parent is a traceparent value ("00-<trace id>-<span id>-<flags>"),
// State a tracestate value. wire carries both as opaque text of at most
// 255 bytes each (a longer tracestate is dropped, as W3C allows; a
// longer traceparent is not sent); what they mean is the Tracer's
// business.
type TraceContext struct {
	Parent string
	State  string
}

// Tracer makes the spans of calls, so that one trace follows a request
// from node to node (issue 17): ClientConfig.Tracer for the caller's side,
// ServerConfig.Tracer for the handler's. wire imports no tracing library;
// node plugs OpenTelemetry in. nil means calls carry no trace context.
type Tracer interface {
	// StartCall begins the caller's span of a call to method at addr. It
	// returns ctx carrying the span, the trace context to send (zero for
	// none) and the function that ends the span with the call's error.
	StartCall(ctx context.Context, addr, method string) (context.Context, TraceContext, func(error))
	// StartHandler begins the span of a handler serving method, as a
	// child of the caller's trace context tc (zero when the call carried
	// none). It returns the handler's context carrying the span and the
	// function that ends the span with the handler's error.
	StartHandler(ctx context.Context, method string, tc TraceContext) (context.Context, func(error))
}

// misreadTrace reports whether err is a server of an older version (which
// knows no trace field) answering a call that carried tc: it reads the
// traceparent's length byte as the method's, so it names the traceparent
// as an unknown method. Such a call ran nothing and is sent again without
// the trace context.
func misreadTrace(err error, tc TraceContext) bool {
	if err == nil || tc.Parent == "" { // before re, which escapes: no allocation on a call's path
		return false
	}
	var re *RemoteError
	return errors.As(err, &re) && re.Code == CodeUnknownMethod && strings.Contains(re.Message, tc.Parent)
}

// startCall begins the caller's span of a call when a Tracer is set.
func (c *Client) startCall(ctx context.Context, addr, method string) (context.Context, TraceContext, func(error)) {
	if t := c.cfg.Tracer; t != nil {
		return t.StartCall(ctx, addr, method)
	}
	return ctx, TraceContext{}, nil
}

// classError is the error a handler's span ends with for the class its
// call was counted in (-1: none).
func classError(class int) error {
	if class < 0 {
		return nil
	}
	if class < len(classNames) {
		return errors.New("wire: " + classNames[class])
	}
	return errors.New("wire: call failed")
}
