package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/sbxdev/sbx/wire"
)

// BuildBuiltinTemplate builds one of the templates the server makes itself
// ("base", "code-interpreter-v1") unless it is built already, calling
// progress (which may be nil) with each line of the build's progress as it
// comes. A name that is not built in is an *[APIError] with status 404.
// Cancelling ctx stops following; the build goes on on the server.
func (c *Client) BuildBuiltinTemplate(ctx context.Context, name string, progress func(line string)) error {
	if name == "" {
		return errNoID
	}
	resp, err := c.openStream(ctx, "build template "+name, http.MethodPost, "/sbx/v1/templates/builtin/"+escape(name), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var l wire.BuiltinBuildLine
		if err := dec.Decode(&l); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("sbx: build template %s: the stream ended before the build: %w", name, err)
		}
		if l.Kind == "end" {
			if l.Status != "ready" {
				return fmt.Errorf("sbx: build template %s: %s", name, l.Error)
			}
			return nil
		}
		if progress != nil {
			progress(l.Message)
		}
	}
}
