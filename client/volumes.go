package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/sbxdev/sbx/wire"
)

// Volume is a volume: a directory with a size quota that lives until
// destroyed, that sandboxes mount ([CreateOptions.Volumes]) and whose files
// [Client.Volume] reads and writes with no sandbox running. Its JSON is
// what `sbx volume ls --json` prints.
type Volume struct {
	ID   string `json:"volumeID"`
	Name string `json:"name"`
	// SizeMB is the volume's quota in MiB.
	SizeMB int64 `json:"sizeMB,omitempty"`
	// Token authorises the volume's content routes; [Client.Volume] uses
	// it. Empty in listings.
	Token string `json:"token,omitempty"`
}

// VolumeEntry is a file or directory in a volume (E2B's VolumeEntryStat).
type VolumeEntry = wire.VolumeEntryStat

// VolumeOwner is the owner and mode a volume write gives what it creates;
// nil fields take the server's defaults (the sandboxes' default user;
// 0644 for files, 0755 for directories).
type VolumeOwner struct {
	UID, GID, Mode *uint32
}

func volumeOf(v wire.VolumeAndToken) *Volume {
	return &Volume{ID: v.VolumeID, Name: v.Name, SizeMB: v.SizeMB, Token: v.Token}
}

// CreateVolume creates a volume named name with a quota of sizeMB MiB (0:
// the server's default).
func (c *Client) CreateVolume(ctx context.Context, name string, sizeMB int64) (*Volume, error) {
	body := wire.NewVolume{Name: name}
	if sizeMB != 0 {
		body.SizeMB = &sizeMB
	}
	var v wire.VolumeAndToken
	if _, err := c.do(ctx, http.MethodPost, "/volumes", nil, body, &v); err != nil {
		return nil, err
	}
	return volumeOf(v), nil
}

// ListVolumes returns every volume, oldest first (without tokens).
func (c *Client) ListVolumes(ctx context.Context) ([]Volume, error) {
	var list []wire.Volume
	if _, err := c.do(ctx, http.MethodGet, "/volumes", nil, nil, &list); err != nil {
		return nil, err
	}
	out := make([]Volume, 0, len(list))
	for _, v := range list {
		out = append(out, Volume{ID: v.VolumeID, Name: v.Name, SizeMB: v.SizeMB})
	}
	return out, nil
}

// GetVolume returns volume id, with its token.
func (c *Client) GetVolume(ctx context.Context, id string) (*Volume, error) {
	if id == "" {
		return nil, errNoID
	}
	var v wire.VolumeAndToken
	if _, err := c.do(ctx, http.MethodGet, "/volumes/"+escape(id), nil, nil, &v); err != nil {
		return nil, err
	}
	return volumeOf(v), nil
}

// FindVolume returns the volume named name, or an error matching
// [ErrNotFound].
func (c *Client) FindVolume(ctx context.Context, name string) (*Volume, error) {
	list, err := c.ListVolumes(ctx)
	if err != nil {
		return nil, err
	}
	for _, v := range list {
		if v.Name == name {
			return c.GetVolume(ctx, v.ID)
		}
	}
	return nil, &APIError{StatusCode: http.StatusNotFound, Message: fmt.Sprintf("volume %q not found", name)}
}

// DestroyVolume destroys volume id and its files. A volume that a sandbox
// not yet killed mounts is refused with an error matching [ErrConflict].
func (c *Client) DestroyVolume(ctx context.Context, id string) error {
	if id == "" {
		return errNoID
	}
	_, err := c.do(ctx, http.MethodDelete, "/volumes/"+escape(id), nil, nil, nil)
	return err
}

// VolumeFiles reads and writes one volume's files through the
// volume-content API, authorised by the volume's token (no API key, no
// sandbox). Get one with [Client.Volume].
type VolumeFiles struct {
	c     *Client
	id    string
	token string
}

// Volume returns the files of volume v (which must carry its token, as
// [Client.CreateVolume] and [Client.GetVolume] return it).
func (c *Client) Volume(v *Volume) *VolumeFiles {
	return &VolumeFiles{c: c, id: v.ID, token: v.Token}
}

// send sends a content request; body, when not nil, is sent as is with
// contentType. The caller closes the answer's body.
func (f *VolumeFiles) send(ctx context.Context, method, route string, query url.Values, body io.Reader, contentType string, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, f.c.endpoint("/volumecontent/"+escape(f.id)+"/"+route, query), body)
	if err != nil {
		return nil, fmt.Errorf("sbx: volume %s: %w", route, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
		if size >= 0 {
			req.ContentLength = size
		}
	}
	req.Header.Set("Authorization", "Bearer "+f.token)
	if f.c.userAgent != "" {
		req.Header.Set("User-Agent", f.c.userAgent)
	}
	resp, err := f.c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sbx: volume %s: %w", route, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, decodeAPIError(resp)
	}
	return resp, nil
}

func (f *VolumeFiles) entry(ctx context.Context, method, route string, query url.Values, body io.Reader, contentType string, size int64) (*VolumeEntry, error) {
	resp, err := f.send(ctx, method, route, query, body, contentType, size)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var e VolumeEntry
	if err := jsonDecode(resp.Body, &e); err != nil {
		return nil, fmt.Errorf("sbx: volume %s: decode response: %w", route, err)
	}
	return &e, nil
}

func (o VolumeOwner) query(q url.Values) url.Values {
	for name, v := range map[string]*uint32{"uid": o.UID, "gid": o.GID, "mode": o.Mode} {
		if v != nil {
			q.Set(name, strconv.FormatUint(uint64(*v), 10))
		}
	}
	return q
}

// Stat describes path p (a symlink itself, not what it points to).
func (f *VolumeFiles) Stat(ctx context.Context, p string) (*VolumeEntry, error) {
	return f.entry(ctx, http.MethodGet, "path", url.Values{"path": {p}}, nil, "", -1)
}

// List lists directory p, depth levels deep (0 or 1: its entries only).
func (f *VolumeFiles) List(ctx context.Context, p string, depth int) ([]VolumeEntry, error) {
	q := url.Values{"path": {p}}
	if depth > 1 {
		q.Set("depth", strconv.Itoa(depth))
	}
	resp, err := f.send(ctx, http.MethodGet, "dir", q, nil, "", -1)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []VolumeEntry
	if err := jsonDecode(resp.Body, &out); err != nil {
		return nil, fmt.Errorf("sbx: volume list: decode response: %w", err)
	}
	return out, nil
}

// MakeDir makes directory p; with parents its missing parents too (and an
// existing directory is no error).
func (f *VolumeFiles) MakeDir(ctx context.Context, p string, parents bool, o VolumeOwner) (*VolumeEntry, error) {
	q := o.query(url.Values{"path": {p}})
	if parents {
		q.Set("force", "true")
	}
	return f.entry(ctx, http.MethodPost, "dir", q, nil, "", -1)
}

// Write writes r to file p, replacing it if it exists and making its
// missing parent directories; size is r's length, or -1 when unknown. A
// write past the volume's quota fails with an *APIError of status 413
// (matching [ErrInvalidArgument]).
func (f *VolumeFiles) Write(ctx context.Context, p string, r io.Reader, size int64, o VolumeOwner) (*VolumeEntry, error) {
	return f.entry(ctx, http.MethodPut, "file", o.query(url.Values{"path": {p}}), r, "application/octet-stream", size)
}

// Read opens file p; the caller closes it.
func (f *VolumeFiles) Read(ctx context.Context, p string) (io.ReadCloser, error) {
	resp, err := f.send(ctx, http.MethodGet, "file", url.Values{"path": {p}}, nil, "", -1)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Remove removes path p, a directory with everything in it.
func (f *VolumeFiles) Remove(ctx context.Context, p string) error {
	resp, err := f.send(ctx, http.MethodDelete, "path", url.Values{"path": {p}}, nil, "", -1)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// SetMetadata sets the owner and mode of path p; nil fields are kept.
func (f *VolumeFiles) SetMetadata(ctx context.Context, p string, o VolumeOwner) (*VolumeEntry, error) {
	b, err := jsonEncode(wire.VolumeMetadata{UID: o.UID, GID: o.GID, Mode: o.Mode})
	if err != nil {
		return nil, err
	}
	return f.entry(ctx, http.MethodPatch, "path", url.Values{"path": {p}}, b, "application/json", int64(b.Len()))
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

func jsonEncode(v any) (*bytes.Buffer, error) {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		return nil, fmt.Errorf("sbx: encode request: %w", err)
	}
	return &b, nil
}
